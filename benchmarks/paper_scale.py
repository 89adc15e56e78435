r"""The paper-scale programs on this machine's accelerator: reward-model step, DPO step, sampling.

    python benchmarks/paper_scale.py                                   # width 2048, bf16
    python benchmarks/paper_scale.py --widths=1024,2048,4096 --layers=8 --batch=16 --seq=512
    python benchmarks/paper_scale.py --programs=rm --widths=1024 --layers=4 --seq=256 --batch=8

For each width: the reward-model train step and the DPO train step as the training loop runs
them (warm_jax.train.reward_model / dpo: jitted, sharded, guarded, donated), on synthetic token
batches, and KV-cached sampling (warm_jax.sampling) of --new_tokens tokens after a prompt of
--seq - --new_tokens tokens. Each is timed after a compile-and-warm-up call (median of --steps
calls). Utilisation is against the *measured* dense matmul peak of the same device and dtype (an
--matmul_n cube with float32 accumulation, as the model's matmuls), not a datasheet number.
FLOPs per train step = 6 * N_non_embedding * tokens + 12 * n_layers * d_model * seq * tokens
(forward and backward, the PaLM appendix's attention term); DPO's rows are chosen and rejected
(2 * batch rows), as the reward model's. Sampling is bound by memory, not matmuls: it reports
tokens/s and the fraction of peak FLOP/s its 2 * N FLOPs per token reach.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import sys

from warm_jax import xla_flags  # noqa: E402

xla_flags.apply(dtype=xla_flags.argv_dtype(sys.argv))  # before jax starts (as the entry points do)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from common import matmul_peak  # noqa: E402
from rm_step import step_flops  # noqa: E402


def timed(fn, steps: int) -> tuple[float, float]:
  """(first call seconds: compile and run, median seconds of the next `steps` calls)."""
  t = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - t
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return first, statistics.median(times)


def model_config(experiment: str, variant: str, width: int, layers: int, seq: int, vocab: int,
                 dtype: str, batch: int):
  from warm_jax import configs
  c = configs.load_experiment(experiment).get_config(variant)
  c.model.update(dtype=dtype, dropout_rate=0.0, d_model=width, d_ff=3 * width,
                 n_heads=max(width // 128, 1), n_kv_heads=max(width // 128, 1), head_dim=128)
  if layers:
    c.model.n_layers = layers
  if vocab:
    c.model.vocab_size = vocab
  c.data.max_len = c.model.max_len = seq
  c.data.batch_size = c.data.eval_batch_size = batch
  n = jax.device_count()
  c.mesh.shape = (n, 1, 1)
  return c


def bench_train(trainer: str, c, batch: int, steps: int) -> dict:
  """One train step of `trainer` ('rm' or 'dpo') as the loop runs it, timed."""
  from warm_jax import sharding as shd
  from warm_jax.train import dpo, reward_model as rm
  from warm_jax.train import state as state_lib
  mod = rm if trainer == "rm" else dpo
  setup = mod.build(c)
  state = state_lib.create_state(setup.init_params, setup.tx, jax.random.key(0), setup.shardings)
  n_params = state_lib.param_count(state.params)
  n_embed = state.params["decoder"]["embed"]["embedding"].size
  if trainer == "rm":
    fn = rm.make_train_step(setup.model, setup.tx, setup.schedule, 0.0, 1)
  else:
    fn = dpo.make_train_step(setup.model, setup.tx, setup.schedule, 0.1, "sigmoid", 0.0, 1)
  step = state_lib.jit_step(fn, setup.shardings, setup.batch_sharding, setup.mesh, setup.rules,
                            guard=True)
  seq, rng = c.data.max_len, np.random.default_rng(0)
  host = {k: rng.integers(3, c.model.vocab_size, (batch, seq), dtype=np.int32)
          for k in ("chosen", "rejected")}
  for k in ("chosen", "rejected"):
    host[k + "_mask"] = np.ones((batch, seq), bool)
  if trainer == "dpo":
    w = np.zeros((batch, seq), np.float32)
    w[:, seq // 2:] = 1.0  # the response half of each row
    host.update(chosen_weights=w, rejected_weights=w,
                ref_chosen_logp=np.zeros(batch, np.float32),
                ref_rejected_logp=np.zeros(batch, np.float32))
  gbatch = shd.to_global(host, setup.batch_sharding)
  box = {"state": state}

  def call():
    box["state"], m = step(box["state"], gbatch)
    return m

  first, step_s = timed(call, steps)
  flops, _ = step_flops(c.model, batch, seq, n_params - n_embed)
  return {"params": n_params, "first_s": first, "step_s": step_s,
          "tokens_per_s": 2 * batch * seq / step_s, "flops_per_s": flops / step_s}


def bench_sampling(c, batch: int, new_tokens: int, steps: int) -> dict:
  import flax.linen as nn
  from warm_jax import sampling
  from warm_jax.models import LanguageModel
  model = LanguageModel(c.model)
  params = jax.jit(lambda k: nn.unbox(model.init(k, jnp.ones((1, 4), jnp.int32))["params"]))(
      jax.random.key(0))
  n_params = sum(x.size for x in jax.tree.leaves(params))
  prompts = jnp.asarray(np.random.default_rng(0).integers(
      3, c.model.vocab_size, (batch, c.data.max_len - new_tokens)), jnp.int32)
  fn = sampling.make_generate(model, max_new_tokens=new_tokens, temperature=1.0, eos_id=-1)
  keys = iter(range(10 ** 6))
  first, s = timed(lambda: fn(params, prompts, jax.random.key(next(keys))), steps)
  return {"params": n_params, "first_s": first, "call_s": s,
          "tokens_per_s": batch * new_tokens / s, "flops_per_s": 2 * n_params * batch * new_tokens / s}


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--programs", default="rm,dpo,sample")
  p.add_argument("--variant", default="paper")
  p.add_argument("--widths", default="2048")
  p.add_argument("--layers", type=int, default=8)
  p.add_argument("--vocab", type=int, default=32_000)
  p.add_argument("--seq", type=int, default=512)
  p.add_argument("--batch", type=int, default=16, help="pairs per train step")
  p.add_argument("--sample_batch", type=int, default=64)
  p.add_argument("--new_tokens", type=int, default=64)
  p.add_argument("--dtype", default="bfloat16")
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--matmul_n", type=int, default=0, help="peak matmul size (default by backend)")
  args = p.parse_args()
  dev = jax.devices()[0]
  n = args.matmul_n or (8192 if jax.default_backend() == "gpu" else 2048)
  peak = matmul_peak(jnp.dtype(args.dtype), n)
  print(f"{jax.default_backend()}: {jax.device_count()} x {dev.device_kind}; host "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; jax "
        f"{jax.__version__}; measured {args.dtype} matmul peak ({n}^3, float32 accumulation): "
        f"{peak / 1e12:.1f} TFLOP/s", flush=True)
  print("| program | d_model | layers | params | batch x seq | first call s | ms per call | "
        "tokens/s | TFLOP/s | of measured peak |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  programs = args.programs.split(",")
  for w in (int(x) for x in args.widths.split(",")):
    for prog in programs:
      exp = {"rm": "reward_model", "dpo": "dpo", "sample": "rl"}[prog]
      c = model_config(exp, args.variant, w, args.layers, args.seq, args.vocab, args.dtype,
                       args.batch)
      try:
        if prog == "sample":
          r = bench_sampling(c, args.sample_batch, args.new_tokens, args.steps)
          shape, ms = f"{args.sample_batch} x {args.new_tokens} new", 1e3 * r["call_s"]
        else:
          r = bench_train(prog, c, args.batch, args.steps)
          shape, ms = f"{2 * args.batch} x {args.seq}", 1e3 * r["step_s"]
      except Exception as e:  # noqa: BLE001 - one failing shape (e.g. out of memory) is reported
        print(f"| {prog} | {w} | {c.model.n_layers} | - | - | failed: {type(e).__name__}: "
              f"{str(e)[:200]} |", flush=True)
        continue
      print(f"| {prog} | {w} | {c.model.n_layers} | {r['params'] / 1e6:,.0f}M | {shape} | "
            f"{r['first_s']:.1f} | {ms:.1f} | {r['tokens_per_s']:,.0f} | "
            f"{r['flops_per_s'] / 1e12:.1f} | {100 * r['flops_per_s'] / peak:.1f}% |", flush=True)


if __name__ == "__main__":
  main()
