r"""Inference cost of WARM (one weight-averaged reward model) vs ENS (the mean prediction of M
reward models), M = 2..8, on the shape of benchmarks/common.py.

    python benchmarks/warm_vs_ens.py                       # M = 2..8, 32 responses of 256 tokens
    python benchmarks/warm_vs_ens.py --members=2,4,8 --batch=64

For each M: M reward models (independent initialisations; the cost does not depend on the values),
WARM = `averaging.average` of their params once (reported, a one-off), then one jitted forward pass
per batch; ENS = `ensemble.Ensemble` (one jitted program of M forward passes) per batch. Reported:
ms per scored batch (best of --reps after a compile call), the ENS / WARM ratio, and the params
each must hold in memory. WARM should stay flat in M; ENS grows linearly.
"""

from __future__ import annotations

import argparse
import time

import common


def best_ms(fn, reps: int) -> float:
  import jax
  jax.block_until_ready(fn())  # compile
  best = float("inf")
  for _ in range(reps):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    best = min(best, time.perf_counter() - t)
  return 1e3 * best


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  common.shape_args(p)
  p.add_argument("--members", default="2,3,4,5,6,7,8")
  p.add_argument("--batch", type=int, default=32, help="responses scored per batch")
  p.add_argument("--reps", type=int, default=5)
  args = p.parse_args()

  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import numpy as np
  from warm_jax import averaging, ensemble
  from warm_jax.models import RewardModel

  model = RewardModel(common.warm_model_config(args))
  init = jax.jit(lambda k: nn.unbox(model.init(k, jnp.ones((1, args.seq), jnp.int32))["params"]))
  ms = [int(m) for m in args.members.split(",")]
  pool = [init(jax.random.key(i)) for i in range(max(ms))]
  size_mb = sum(x.nbytes for x in jax.tree.leaves(pool[0])) / 2 ** 20
  tokens = jnp.asarray(common.random_tokens(np.random.default_rng(0), (args.batch, args.seq),
                                            args.vocab))
  score = jax.jit(lambda params, t: model.apply({"params": params}, t))

  print(f"WARM vs ENS inference, {common.machine_line()}")
  print(f"shape: {args.layers} layers, width {args.width}, vocab {args.vocab}; one model "
        f"{size_mb:.1f} MiB; {args.batch} responses x {args.seq} tokens per batch")
  print("| M | WARM ms/batch | ENS ms/batch | ENS / WARM | WARM params held | ENS params held | "
        "averaging (one-off) s |")
  print("|---|---|---|---|---|---|---|")
  for m in ms:
    members = pool[:m]
    t = time.perf_counter()
    warm = jax.block_until_ready(averaging.average(members))
    avg_s = time.perf_counter() - t
    ens = ensemble.Ensemble(model, members)
    warm_ms = best_ms(lambda: score(warm, tokens), args.reps)
    ens_ms = best_ms(lambda: ens(tokens), args.reps)
    print(f"| {m} | {warm_ms:.1f} | {ens_ms:.1f} | {ens_ms / warm_ms:.2f}x | {size_mb:.1f} MiB | "
          f"{m * size_mb:.1f} MiB | {avg_s:.2f} |", flush=True)


if __name__ == "__main__":
  main()
