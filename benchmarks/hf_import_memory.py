r"""Host memory of importing a Hugging Face checkpoint (`warm_jax.pretrained.load_hf`): the peak RSS
of a process importing a Llama-shaped model of at least 1 GB, against the size of its weights.

    python benchmarks/hf_import_memory.py --dir /tmp/hf_mem                 # 1.1 GB of bfloat16
    python benchmarks/hf_import_memory.py --dir /tmp/hf_mem --layers 16     # 2.1 GB
    python benchmarks/hf_import_memory.py --dir /tmp/hf_mem --dtype float32 # 2.2 GB of float32

Writes (once, reused) a synthetic LlamaForCausalLM directory with `common.write_synthetic_hf`
(default: 8 layers, width 2048, MLP 8192, 16 heads of which 8 key/value heads, vocabulary 32000,
tied embeddings: 552M parameters), then imports it in a fresh subprocess onto one CPU device in
its stored dtype and reports that process's peak RSS (VmHWM), its RSS just before the import
(Python, jax and the CPU backend, warm_jax imported) and the weights' size. On a CPU host the
imported parameters live in host memory themselves, so one copy of the weights plus the runtime
is the floor; the goal is a peak below 1.5x the weights' size. --rounds repeats the import in as
many fresh processes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def _status_bytes(key: str) -> int:
  """VmRSS (now) or VmHWM (the peak) of this process, from /proc/self/status."""
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(key + ":"):
        return int(line.split()[1]) * 1024
  return 0


def worker(directory: str, dtype: str) -> None:
  """Imports `directory` and prints the process's memory figures as one JSON line."""
  import jax
  from warm_jax import pretrained
  jax.devices()
  baseline = _status_bytes("VmRSS")
  t0 = time.perf_counter()
  pre = pretrained.load_hf(directory, dtype=dtype)
  jax.block_until_ready(pre.params)
  seconds = time.perf_counter() - t0
  params = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(pre.params))
  print(json.dumps({"baseline_rss": baseline, "peak_rss": _status_bytes("VmHWM"),
                    "params_bytes": params, "seconds": seconds}))


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--dir", required=True, help="where the synthetic model is written (and reused)")
  p.add_argument("--layers", type=int, default=8)
  p.add_argument("--width", type=int, default=2048)
  p.add_argument("--d_ff", type=int, default=8192)
  p.add_argument("--heads", type=int, default=16)
  p.add_argument("--kv_heads", type=int, default=8)
  p.add_argument("--vocab", type=int, default=32000)
  p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32", "float16"))
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--worker", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.worker:
    return worker(args.worker, args.dtype)

  import common
  name = f"llama_{args.layers}x{args.width}_ff{args.d_ff}_v{args.vocab}_{args.dtype}"
  directory = os.path.join(args.dir, name)
  t0 = time.perf_counter()
  common.write_synthetic_hf(directory, d_model=args.width, n_layers=args.layers,
                            n_heads=args.heads, n_kv_heads=args.kv_heads, d_ff=args.d_ff,
                            vocab=args.vocab, kind="lm", dtype=args.dtype)
  size = common.dir_bytes(directory)
  print(f"model: {directory} ({size / 1e9:.3f} GB; ready in {time.perf_counter() - t0:.0f} s)",
        file=sys.stderr, flush=True)
  rows = []
  for r in range(args.rounds):
    _, _, out = common.run_measured([sys.executable, os.path.abspath(__file__), "--dir", args.dir,
                                     "--worker", directory, "--dtype", args.dtype])
    rows.append(json.loads(next(line for line in out.splitlines() if line.startswith("{"))))
    print(f"  round {r + 1}: {rows[-1]}", file=sys.stderr, flush=True)
  peak = statistics.median(x["peak_rss"] for x in rows)
  base = statistics.median(x["baseline_rss"] for x in rows)
  gb = lambda b: f"{b / 1e9:.3f} GB"  # noqa: E731
  print(f"| weights ({args.dtype}) | peak RSS (median of {len(rows)}) | peak / weights | "
        "RSS before the import | peak - before | import s |")
  print("|---:|---:|---:|---:|---:|---:|")
  print(f"| {gb(size)} | {gb(peak)} | **{peak / size:.2f}x** | {gb(base)} | "
        f"{gb(peak - base)} ({(peak - base) / size:.2f}x) | "
        f"{statistics.median(x['seconds'] for x in rows):.1f} |")
  print(f"peaks: {', '.join(gb(x['peak_rss']) for x in rows)}; goal below 1.5x: "
        f"{'met' if peak < 1.5 * size else 'missed'}")


if __name__ == "__main__":
  main()
