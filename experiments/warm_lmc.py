r"""Linear mode connectivity of WARM's reward models: accuracy along the weight interpolation path.

    python experiments/warm_lmc.py --config=experiments/warm_lmc.py:cpu \
        --config.label_noise=runs/warm/label_noise --workdir=runs/warm/lmc

For two members of a `warm_label_noise.py` run (`config.pair`: positions in its ranking) and each
lambda of a grid: the accuracy of the weight interpolation (WA), of the prediction interpolation
(ENS) and of the straight line between the endpoints (Diag); then WA / ENS / mean individual of
the M best members for every M (`warm_jax.studies.warm.lmc`). A stage of the main job
(`experiments/warm.py`). Variants: tiny, cpu, paper.
"""

from __future__ import annotations

import ml_collections

from warm_jax import configs

VARIANTS = ("tiny", "cpu", "paper")


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = configs.experiment_config(variant, VARIANTS, "experiments/warm_lmc.py")
  del c.mesh, c.sharding  # the label-noise run's members decide the model and mesh
  c.label_noise = ""  # a warm_label_noise.py workdir (required)
  c.pair = (0, 1)  # positions in its ranking of the two interpolated members
  c.lambdas = 11  # evenly spaced lambdas in [0, 1]
  # Subsets of the label-noise run to evaluate along the path (train_clean is the largest and adds
  # little: the paper's Fig. 4 reads it as WA <= ENS).
  c.subsets = ("train_corrupted", "validation", "test", "ood")
  if variant == "tiny":
    c.lambdas = 3
  elif variant == "paper":
    c.subsets = ("train_corrupted", "train_clean", "valid1", "valid2")
  return c


if __name__ == "__main__":
  from warm_jax import cli
  from warm_jax.studies.warm import lmc
  cli.run(lmc.main)
