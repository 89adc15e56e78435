r"""Merge methods for reward models: WARM's linear average against TIES, DARE, SLERP, model stock.

    python experiments/merge_methods.py --config=experiments/merge_methods.py:cpu \
        --config.init_from=runs/warm/sft --config.label_noise=runs/warm/warm_label_noise \
        --workdir=runs/merge_methods
    python -m warm_jax.studies.warm.publish runs/merge_methods --page docs/merge_methods.md \
        --figures merge_methods --marker merge-methods-results

On the members of a finished `warm_label_noise.py` run: accuracy (with binomial standard errors)
on train-clean, train-corrupted, validation, test and OOD, and the gold reward of best-of-N picks
at N = 64 and 256 from the SFT policy's samples, for each merge
(`warm_jax.studies.merge_methods`). Variants: tiny, cpu, paper.
"""

from __future__ import annotations

import ml_collections

from warm_jax import configs

VARIANTS = ("tiny", "cpu", "paper")


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = configs.load_experiment("warm_bon").get_config(variant)  # the SFT samples and the judge
  del c.ms
  c.merges = ml_collections.ConfigDict(dict(
      m=0,  # merge the M best members (0: all)
      ties_densities=(0.2, 0.5),  # TIES's k (the paper's default: 20%)
      dare_drops=(0.5, 0.9),  # DARE's p (the paper goes up to 0.9 and beyond)
      dare_seed=0,
      pairs_of=3))  # every pair of the K best: LERP vs SLERP
  if variant == "cpu":
    c.bon.ns = (1, 64, 256)
  elif variant == "tiny":
    c.merges.update(ties_densities=(0.5,), dare_drops=(0.5,), pairs_of=2)
    c.bon.ns = (1, 2, 4)
  elif variant == "paper":
    c.bon.ns = (1, 64, 256)
  return c


if __name__ == "__main__":
  from warm_jax import cli
  from warm_jax.studies import merge_methods
  cli.run(merge_methods.main)
