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

import ml_collections

from warm_jax import configs


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


if __name__ == "__main__":
  from warm_jax import cli
  from warm_jax.studies import interpolate
  cli.run(interpolate.main)
