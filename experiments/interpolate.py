r"""One point of a WARM pair's interpolation: the reward model (1 - lam) phi_a + lam phi_b of two
reward-model runs of one architecture, scored on preference pairs. The unit a lambda sweep runs.

    python experiments/interpolate.py --config=experiments/interpolate.py:cpu \
        --config.a=runs/warm/warm_label_noise/members/rm0 \
        --config.b=runs/warm/warm_label_noise/members/rm1 --config.lam=0.5 --workdir=runs/interp
    python launch/sweep.py --experiment=experiments/interpolate.py --workdir=runs/sweep_lambda \
        --set=config.a=... --set=config.b=... --grid=config.lam=0,0.25,0.5,0.75,1 \
        --result=interpolate.json --metric=accuracy.validation --metric=accuracy.ood

The average is computed in memory (`warm_jax.load_averaged`; `python -m warm_jax.average` writes
one to disk) and scored on the first `pairs` pairs of each of `splits` of the runs' data (their
config.data): accuracy against the recorded labels and, on the embedded task, mean reward margin.
Writes <workdir>/interpolate.json. Variants: tiny, cpu, paper (set the data splits of the runs).
"""

from __future__ import annotations

import json
import os
import sys

import ml_collections

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from warm_jax import configs  # noqa: E402


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = configs.experiment_config(variant, ("tiny", "cpu", "paper"), "experiments/interpolate.py")
  c.a = ""  # reward-model run (or checkpoint) phi_a
  c.b = ""  # reward-model run phi_b
  c.lam = 0.5  # the weight of phi_b
  c.splits = ("validation", "ood")
  c.pairs = 512  # per split (0: all)
  c.batch_size = 64
  if variant == "tiny":
    c.pairs, c.batch_size = 16, 8
  elif variant == "paper":
    c.splits = ("valid1",)
    c.pairs = 0
    c.batch_size = 128
  return c


def main(config: ml_collections.ConfigDict, workdir: str) -> dict:
  import warm_jax
  from warm_jax import checkpoints, evaluation
  from warm_jax import data as data_lib
  if not config.a or not config.b:
    raise ValueError("config.a and config.b must both name reward-model runs")
  if not 0.0 <= config.lam <= 1.0:
    raise ValueError(f"config.lam={config.lam}: must be in [0, 1] (an interpolation)")
  rm = warm_jax.load_averaged([config.a, config.b], weights=[1.0 - config.lam, config.lam],
                              batch_size=config.batch_size)
  data_cfg = rm.config.data
  out = {"a": config.a, "b": config.b, "lam": config.lam, "accuracy": {}, "pairs": {}}
  for split in config.splits:
    src = data_lib.load_split(data_cfg, split)
    recs = [src[i] for i in range(min(config.pairs, len(src)) if config.pairs else len(src))]
    p = [r["prompt"] for r in recs]
    rc, rr = rm.score(p, [r["chosen"] for r in recs]), rm.score(p, [r["rejected"] for r in recs])
    out["accuracy"][split] = evaluation.pair_accuracy(rc, rr)
    out["pairs"][split] = len(recs)
  os.makedirs(workdir, exist_ok=True)
  checkpoints.write_atomic(os.path.join(workdir, "interpolate.json"), json.dumps(out, indent=1))
  print(json.dumps(out))
  return out


if __name__ == "__main__":
  from warm_jax import cli
  cli.run(main)
