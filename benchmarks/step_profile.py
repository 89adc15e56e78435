r"""Where the time goes on this machine: the reward-model step, the DPO step and decoding, each in
float32 and bfloat16, against the machine's own matmul peaks.

    python benchmarks/step_profile.py                          # all three, both precisions
    WARM_JAX_XLA_DEFAULTS=0 python benchmarks/step_profile.py  # without warm_jax's XLA defaults
    python benchmarks/step_profile.py --what=rm --dtype=bfloat16 --width=1024 --calls=5
    python benchmarks/step_profile.py --what=decode --batch=16 --new_tokens=128
    python benchmarks/step_profile.py --what=rm --dtype=bfloat16 --top=40   # + costliest ops

Each precision runs in its own process, under warm_jax's XLA defaults for it (`xla_flags`). Prints
the CPU model (family, model, AVX-512 / AMX), the measured float32 and bfloat16 (float32
accumulation) matmul peaks of jax on this machine, and for each program: its wall time per call
(median of --calls after a compile call), its model FLOP/s against the peak of its precision, and
a breakdown of the time XLA spent in its operations, from a jax profiler trace (per-operation
events of XLA:CPU's thunk executor) joined with the compiled program's HLO text:

- matmuls: operations whose (fused) computation holds a dot or a convolution, outside the attention
  core: the q/k/v/o projections, the MLP, the logits and their gradients;
- attention core: operations under the model's `attention_core` scope (scores, mask, softmax,
  weighted sum; their gradients), and `kv_cache` (cache updates while decoding);
- optimizer: operations under the `optimizer` scope (`train.state.make_optimizer`: clipping, AdamW);
- copies / layout: copy and transpose operations XLA inserts between layouts;
- element-wise and other: the rest (norms, activations, rotary positions, embedding gathers and
  their gradients, losses, sampling, the non-finite guard).

'forward' / 'backward' split each row by whether the operation comes from a gradient (a
`transpose(` in its name). Shares are of the summed operation time, which can exceed the wall time
when XLA runs operations concurrently, and falls short of it by the dispatch and host time (the
last line gives both). `--top N` then lists the N costliest operations, each with its category and
the jax op_name (source scope) XLA kept for it. The shape defaults to benchmarks/common.py's
(the peer benchmarks' shape).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import statistics
import tempfile
import time

import common  # noqa: F401  (sets warm_jax's XLA defaults before jax starts)

import jax  # noqa: E402
import numpy as np  # noqa: E402

CATEGORIES = ("matmuls", "attention core", "kv cache", "optimizer", "copies / layout",
              "element-wise and other")

_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*\S+.*?\s([a-z][\w\-]*)\(")


def hlo_ops(text: str) -> dict[str, tuple[str, bool, str]]:
  """{instruction name: (category, is_backward, jax op_name)} of a compiled module's HLO text."""
  comp_ops: dict[str, set] = collections.defaultdict(set)
  calls: dict[str, list] = collections.defaultdict(list)
  meta: dict[str, tuple[str, str, list]] = {}
  current = None
  for line in text.splitlines():
    head = re.match(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$", line)
    if head and "=" not in line.split("{")[0]:
      current = head.group(1)
      continue
    m = _INSTR.match(line)
    if not m or current is None:
      continue
    name, opcode = m.groups()
    comp_ops[current].add(opcode)
    called = re.findall(r"(?:calls|to_apply|body|condition)=%?([\w.\-]+)", line)
    calls[current].extend(called)
    op_name = re.search(r'op_name="([^"]*)"', line)
    meta[name] = (opcode, op_name.group(1) if op_name else "", called)

  def holds_dot(comp: str, seen=None) -> bool:
    seen = seen or set()
    if comp in seen:
      return False
    seen.add(comp)
    return bool(comp_ops[comp] & {"dot", "convolution"}) or any(
        holds_dot(c, seen) for c in calls[comp])

  out = {}
  for name, (opcode, op_name, called) in meta.items():
    backward = "transpose(" in op_name
    if "optimizer" in op_name:
      cat = "optimizer"
    elif "kv_cache" in op_name:
      cat = "kv cache"
    elif "attention_core" in op_name:
      cat = "attention core"
    elif opcode in ("dot", "convolution") or (opcode in ("fusion", "custom-call") and any(
        holds_dot(c) for c in called)):
      cat = "matmuls"
    elif opcode in ("copy", "transpose") or name.startswith(("copy", "transpose")):
      cat = "copies / layout"
    else:
      cat = "element-wise and other"
    out[name] = (cat, backward, op_name)
  return out


def traced_op_times(run, calls: int) -> tuple[dict[str, float], float]:
  """Runs `run()` `calls` times under the jax profiler: ({hlo op: summed seconds}, wall seconds)."""
  with tempfile.TemporaryDirectory() as d:
    t = time.perf_counter()
    with jax.profiler.trace(d, create_perfetto_trace=True):
      for _ in range(calls):
        run()
    wall = time.perf_counter() - t
    paths = glob.glob(os.path.join(d, "**", "perfetto_trace.json.gz"), recursive=True)
    if not paths:
      raise SystemExit("the jax profiler wrote no perfetto trace")
    with gzip.open(paths[0]) as f:
      trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  times: dict[str, float] = collections.defaultdict(float)
  for e in events:
    op = (e.get("args") or {}).get("hlo_op")
    if e.get("ph") == "X" and op:
      times[op] += e.get("dur", 0.0) / 1e6
  return times, wall


def top_lines(times: dict[str, float], ops: dict, calls: int, top: int) -> list[str]:
  """The `top` costliest operations: ms per call, category, direction and the jax op_name."""
  if top <= 0:
    return []
  lines = [f"Costliest operations (of {len(times)}):", "",
           "| operation | ms | where | jax op_name |", "|---|---:|---|---|"]
  for op, s in sorted(times.items(), key=lambda kv: -kv[1])[:top]:
    cat, backward, op_name = ops.get(op, ("?", False, ""))
    name = op_name if len(op_name) <= 90 else "..." + op_name[-87:]
    lines.append(f"| {op} | {s / calls * 1e3:.1f} | {cat}{' (bwd)' if backward else ''} | "
                 f"{name} |")
  return lines + [""]


def profile(label: str, jitted, args: tuple, run, calls: int, flops: float, peak: float,
            top: int = 0) -> str:
  """Times `run()` (one call of `jitted(*args)`, state threaded), then its traced breakdown
  (and its `top` costliest operations)."""
  text = jitted.lower(*args).compile().as_text()
  ops = hlo_ops(text)
  run()  # compile and warm up
  walls = []
  for _ in range(calls):
    t = time.perf_counter()
    run()
    walls.append(time.perf_counter() - t)
  wall = statistics.median(walls)
  times, _ = traced_op_times(run, calls)
  rows: dict[tuple[str, bool], float] = collections.defaultdict(float)
  unknown = 0.0
  for op, s in times.items():
    if op in ops:
      rows[ops[op][:2]] += s / calls
    else:
      unknown += s / calls
  total = sum(rows.values()) + unknown
  lines = [f"### {label}", "",
           f"{wall * 1e3:.1f} ms per call (median of {calls}); "
           + (f"{flops / 1e9:.2f} GFLOP per call, {flops / wall / 1e12:.3f} TFLOP/s = "
              f"{100 * flops / wall / peak:.0f}% of this precision's matmul peak"
              if flops else "FLOPs not counted"), "",
           "| where | forward ms | backward ms | share |", "|---|---:|---:|---:|"]
  for cat in CATEGORIES:
    f, b = rows.get((cat, False), 0.0), rows.get((cat, True), 0.0)
    if f or b:
      lines.append(f"| {cat} | {f * 1e3:.1f} | {b * 1e3:.1f} | {100 * (f + b) / total:.0f}% |")
  if unknown:
    lines.append(f"| (operations not in the module's text) | {unknown * 1e3:.1f} | | "
                 f"{100 * unknown / total:.0f}% |")
  lines += ["", f"Operations summed: {total * 1e3:.1f} ms per call against {wall * 1e3:.1f} ms "
            "of wall time.", ""]
  return "\n".join(lines + top_lines(times, ops, calls, top))


def train_flops(state, tokens: int, args) -> float:
  """6 N tokens + the attention term (benchmarks/rm_step.py's count), N without embeddings."""
  from rm_step import step_flops
  n = sum(x.size for p, x in jax.tree_util.tree_flatten_with_path(state.params)[0]
          if "embed" not in jax.tree_util.keystr(p))
  return step_flops(common.warm_model_config(args), tokens // (2 * args.seq), args.seq, n)[0]


def profile_train(name: str, args, peak: float) -> str:
  program = common.rm_step_program if name == "rm" else common.dpo_step_program
  setup, state, jitted, make_batch = program(args)
  batch, tokens = make_batch(), 2 * args.batch * args.seq
  box = {"state": state}

  def run():
    with jax.set_mesh(setup.mesh):
      box["state"], m = jitted(box["state"], batch)
    jax.block_until_ready(m)

  with jax.set_mesh(setup.mesh):
    lowered_args = (box["state"], batch)
    title = {"rm": "reward-model train step", "dpo": "DPO train step (policy; the reference "
             "log-probs are a separate program)"}[name]
    return profile(f"{title}, {args.dtype}, {args.batch} pairs x {args.seq} tokens", jitted,
                   lowered_args, run, args.calls, train_flops(state, tokens, args), peak, args.top)


def profile_decode(args, peak: float) -> str:
  import flax.linen as nn
  import jax.numpy as jnp
  from warm_jax import sampling
  from warm_jax.models import LanguageModel
  cfg = common.warm_model_config(args, max_len=args.prompt_len + args.new_tokens)
  model = LanguageModel(cfg)
  params = nn.unbox(model.init(jax.random.key(0), jnp.ones((1, 4), jnp.int32))["params"])
  fn = sampling.make_generate(model, max_new_tokens=args.new_tokens, temperature=1.0, eos_id=-1,
                              use_cache=True)
  prompts = jnp.asarray(common.random_tokens(np.random.default_rng(0),
                                             (args.batch, args.prompt_len), args.vocab))
  key = jax.random.key(0)

  def run():
    jax.block_until_ready(fn(params, prompts, key))
  n = sum(x.size for p, x in jax.tree_util.tree_flatten_with_path(params)[0]
          if "embed" not in jax.tree_util.keystr(p))
  # 2 N per token (forward), prompt included, + the logits matmul of each new token.
  tokens = args.batch * (args.prompt_len + args.new_tokens)
  flops = 2 * n * tokens + 2 * args.width * args.vocab * args.batch * args.new_tokens
  return profile(f"decoding, {args.dtype}, {args.batch} prompts x {args.prompt_len} tokens, "
                 f"{args.new_tokens} new tokens (KV cache)", fn, (params, prompts, key), run,
                 args.calls, flops, peak, args.top)


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  common.shape_args(p)
  p.add_argument("--what", default="rm,dpo,decode", help="comma-separated: rm, dpo, decode")
  p.set_defaults(dtype=None)  # --dtype: one precision; default both
  p.add_argument("--batch", type=int, default=8, help="pairs per train step; prompts to decode")
  p.add_argument("--prompt_len", type=int, default=128)
  p.add_argument("--new_tokens", type=int, default=64)
  p.add_argument("--calls", type=int, default=3, help="timed calls per program")
  p.add_argument("--top", type=int, default=0, help="also list the N costliest operations")
  args = p.parse_args()
  if args.dtype is None:  # one process per precision: the XLA defaults depend on it
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # each sets its own defaults
    if common.USER_XLA_FLAGS is not None:
      env["XLA_FLAGS"] = common.USER_XLA_FLAGS
    for dtype in ("float32", "bfloat16"):
      subprocess.run([sys.executable, os.path.abspath(__file__), *sys.argv[1:], f"--dtype={dtype}"],
                     check=True, env=env)
    return
  import jax.numpy as jnp
  peaks = {"float32": common.matmul_peak(jnp.float32), "bfloat16": common.matmul_peak(jnp.bfloat16)}
  print(f"# Profile: {common.machine_line()}\n")
  print(f"CPU: {common.cpu_model()}; jax matmul peaks (2048^3, best of 10): float32 "
        f"{peaks['float32'] / 1e12:.3f}, bfloat16 with float32 accumulation "
        f"{peaks['bfloat16'] / 1e12:.3f} TFLOP/s")
  print(f"{common.shape_line(args)}, sequence {args.seq}; XLA_FLAGS="
        f"{os.environ.get('XLA_FLAGS', '') or '(none)'}\n")
  for what in args.what.split(","):
    if what in ("rm", "dpo"):
      print(profile_train(what, args, peaks[args.dtype]), flush=True)
    elif what == "decode":
      print(profile_decode(args, peaks[args.dtype]), flush=True)
    else:
      raise SystemExit(f"--what: unknown program {what!r} (rm, dpo, decode)")


if __name__ == "__main__":
  main()
