r"""Linear merge (WARM) of M Hugging Face reward models: `python -m warm_jax.average` against
mergekit's `linear` method on the same files, on the same machine, in one run.

    source benchmarks/env.sh                       # the peers' venv (mergekit installed)
    python benchmarks/vs_mergekit.py --dir /tmp/hf_merge               # M = 2, 4, 8
    python benchmarks/vs_mergekit.py --dir /tmp/hf_merge --ms 2 --rounds 1
    python benchmarks/vs_mergekit.py --dir /tmp/hf_merge --clean       # delete the models after

Writes (once, reused) max(M) synthetic LlamaForSequenceClassification directories of random
bfloat16 weights with `common.write_synthetic_hf` (default: 5 layers, width 1536, MLP 6144, 12
heads of which 4 key/value heads, vocabulary 32000, tied: 222M parameters, 444 MB each). For each
M, in alternating order per round (warm_jax first in odd rounds, mergekit first in even ones),
each side merges the first M with uniform weights in its own process:

- warm_jax: `python -m warm_jax.average --ckpt DIR ... --out OUT --quiet` (tensor by tensor,
  float32 sums, the output in the inputs' dtype);
- mergekit: `mergekit-yaml CONFIG OUT --quiet --no-write-model-card` with `merge_method: linear`,
  every model weight 1 (normalised), mergekit's other options at their defaults (CPU, computing
  in the inputs' dtype, one output shard up to 5B parameters).

Each side's wall time (process start to exit) and peak RSS (its own, measured by /usr/bin/time)
are recorded; the table gives the medians over the rounds, their ratios, and the largest
absolute difference between the two outputs over every tensor (read back as float32). The
files stay in the page cache between runs (the machine has the memory), so both sides read
warm files after the first run. The goal: warm_jax at least 2x faster at no more peak memory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time

import common
import numpy as np

SHAPE = dict(d_model=1536, n_layers=5, n_heads=12, n_kv_heads=4, d_ff=6144, vocab=32000)


def mergekit_config(dirs: list[str]) -> str:
  lines = ["merge_method: linear", "models:"]
  for d in dirs:
    lines += [f"  - model: {d}", "    parameters:", "      weight: 1.0"]
  return "\n".join(lines) + "\n"


def max_abs_difference(a: str, b: str) -> tuple[float, int]:
  """(largest |a - b| over every tensor of two HF directories, read as float32; tensors compared).
  Tensors are read one at a time."""
  from warm_jax.pretrained import safetensors_io as st
  ca, cb = st.open_checkpoint(a), st.open_checkpoint(b)
  if set(ca.names()) != set(cb.names()):
    raise RuntimeError(f"the outputs hold different tensors: {sorted(set(ca.names()) ^ set(cb.names()))[:5]}")
  worst = 0.0
  for n in ca.names():
    x = np.asarray(ca.array(n), np.float32)
    y = np.asarray(cb.array(n), np.float32)
    worst = max(worst, float(np.max(np.abs(x - y))) if x.size else 0.0)
  ca.close()
  cb.close()
  return worst, len(ca.names())


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--dir", required=True, help="where the models and outputs are written")
  p.add_argument("--ms", default="2,4,8")
  p.add_argument("--rounds", type=int, default=2)
  p.add_argument("--clean", action="store_true", help="delete the models and outputs at the end")
  args = p.parse_args(argv)
  ms = [int(m) for m in args.ms.split(",")]
  mergekit = shutil.which("mergekit-yaml")
  if mergekit is None:
    raise SystemExit("mergekit-yaml is not on PATH: run in the peers' venv (benchmarks/env.sh)")
  os.makedirs(args.dir, exist_ok=True)
  t0 = time.perf_counter()
  dirs = [common.write_synthetic_hf(os.path.join(args.dir, f"rm{i}"), kind="rm", seed=i, **SHAPE)
          for i in range(max(ms))]
  size = common.dir_bytes(dirs[0])
  print(f"{len(dirs)} models of {size / 1e6:.0f} MB each, ready in {time.perf_counter() - t0:.0f} s",
        file=sys.stderr, flush=True)

  def warm(m, out):
    cmd = [sys.executable, "-m", "warm_jax.average", "--out", out, "--quiet"]
    for d in dirs[:m]:
      cmd += ["--ckpt", d]
    return common.run_measured(cmd)

  def merge(m, out):
    cfg = os.path.join(args.dir, f"mergekit_{m}.yml")
    with open(cfg, "w") as f:
      f.write(mergekit_config(dirs[:m]))
    return common.run_measured([mergekit, cfg, out, "--quiet", "--no-write-model-card"])

  rows = []
  for m in ms:
    times: dict[str, list[float]] = {"warm_jax": [], "mergekit": []}
    peaks: dict[str, list[int]] = {"warm_jax": [], "mergekit": []}
    outs = {}
    for r in range(args.rounds):
      order = (("warm_jax", warm), ("mergekit", merge))
      for name, fn in (order if r % 2 == 0 else order[::-1]):
        out = os.path.join(args.dir, f"out_{name}_{m}")
        shutil.rmtree(out, ignore_errors=True)
        seconds, peak, _ = fn(m, out)
        times[name].append(seconds)
        peaks[name].append(peak)
        outs[name] = out
        print(f"  M={m} round {r + 1} {name}: {seconds:.1f} s, peak {peak / 1e6:.0f} MB",
              file=sys.stderr, flush=True)
    diff, n = max_abs_difference(outs["warm_jax"], outs["mergekit"])
    med = {k: statistics.median(v) for k, v in times.items()}
    peak = {k: statistics.median(v) for k, v in peaks.items()}
    rows.append((m, med, peak, times, peaks, diff, n))
    for out in outs.values():
      shutil.rmtree(out, ignore_errors=True)

  print(f"models: {size / 1e6:.0f} MB each (LlamaForSequenceClassification, bfloat16, "
        f"{SHAPE}); {args.rounds} alternating rounds; {common.machine_line()}")
  print("| M | warm_jax s | mergekit s | speed-up | warm_jax peak RSS | mergekit peak RSS | "
        "peak ratio | max abs difference | rounds (s: warm_jax / mergekit) |")
  print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
  for m, med, peak, times, peaks, diff, n in rows:
    rounds = "; ".join(f"{a:.1f} / {b:.1f}" for a, b in zip(times["warm_jax"], times["mergekit"]))
    print(f"| {m} | {med['warm_jax']:.1f} | {med['mergekit']:.1f} | "
          f"**{med['mergekit'] / med['warm_jax']:.2f}x** | {peak['warm_jax'] / 1e6:,.0f} MB | "
          f"{peak['mergekit'] / 1e6:,.0f} MB | {peak['warm_jax'] / peak['mergekit']:.2f} | "
          f"{diff:.3g} ({n} tensors) | {rounds} |")
  if args.clean:
    shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
  main()
