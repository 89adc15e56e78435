r"""Compile time and compiled program size against depth, with and without layers under scan.

    python benchmarks/compile_depth.py                          # 4, 8, 16, 32 layers, CPU
    python benchmarks/compile_depth.py --depths=4,8 --width=128 --repeats=1

Compiles the reward-model train step as the training loop runs it (`aot.programs`: the trainer's
own step, guarded and donated, with its shardings) for one CPU device at each depth, with
config.model.scan_layers off and on, and reports the wall time of lowering plus compiling, the
size of the StableHLO text and of the generated code. Each compile runs in a fresh process
(no cache shared between them); the median of --repeats is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from warm_jax import xla_flags

xla_flags.apply(dtype=xla_flags.argv_dtype(sys.argv))  # before jax starts (as the entry points do)


def one(depth: int, scan: bool, width: int, seq: int, batch: int) -> dict:
  """Lowers and compiles the train step at `depth` in this process; its figures."""
  import time

  import jax

  from warm_jax import configs
  from warm_jax.aot import programs
  c = configs.load_experiment("reward_model").get_config("tiny")
  c.model.update(n_layers=depth, d_model=width, n_heads=max(1, width // 64), d_ff=4 * width,
                 max_len=seq, scan_layers=scan)
  c.data.update(max_len=seq, batch_size=batch)
  c.mesh.shape = (1, 1, 1)
  (p,) = programs.programs("reward_model", c, jax.devices()[:1])
  t0 = time.perf_counter()
  with jax.set_mesh(p.mesh):
    lowered = p.fn.lower(*p.args)
  compiled = lowered.compile()
  seconds = time.perf_counter() - t0
  code = compiled.memory_analysis().generated_code_size_in_bytes
  return {"seconds": seconds, "hlo_bytes": len(lowered.as_text()), "code_bytes": code}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--depths", default="4,8,16,32")
  p.add_argument("--width", type=int, default=256)
  p.add_argument("--seq", type=int, default=128)
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--one", help=argparse.SUPPRESS)  # depth,scan: measure in this process
  args = p.parse_args()
  if args.one:
    depth, scan = args.one.split(",")
    print(json.dumps(one(int(depth), scan == "1", args.width, args.seq, args.batch)))
    return
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  env.pop("JAX_COMPILATION_CACHE_DIR", None)  # every compile from scratch
  print(f"reward-model train step, width {args.width}, seq {args.seq}, batch {args.batch}, "
        f"1 CPU device; median of {args.repeats} fresh processes\n")
  print("| layers | scan | compile s | StableHLO KiB | generated code KiB |")
  print("|---|---|---|---|---|")
  for depth in [int(d) for d in args.depths.split(",")]:
    for scan in (0, 1):
      runs = []
      for _ in range(args.repeats):
        out = subprocess.run([sys.executable, __file__, f"--one={depth},{scan}",
                              f"--width={args.width}", f"--seq={args.seq}",
                              f"--batch={args.batch}"], env=env, capture_output=True, text=True,
                             check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
      med = lambda k: statistics.median(r[k] for r in runs)  # noqa: E731
      print(f"| {depth} | {'on' if scan else 'off'} | {med('seconds'):.1f} | "
            f"{med('hlo_bytes') / 1024:.0f} | {med('code_bytes') / 1024:.0f} |", flush=True)


if __name__ == "__main__":
  main()
