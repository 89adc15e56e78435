r"""MODPO (multi-objective DPO, Zhou et al. 2023, arXiv 2310.03708) over a grid of objective weights,
against the rewarded soups' and MORL's fronts of a `rewarded_soups.py` run.

    python experiments/modpo.py --config=experiments/modpo.py:cpu --config.soups=runs/soups \
        --workdir=runs/modpo

For each weight lambda on criterion 1, one DPO-style run from the SFT policy on the pairs of the
criterion with the larger weight, with MODPO's margin from the other criterion's fixed reward
model; every policy then answers the soups run's held-out prompts, judged by its criteria
(`warm_jax.studies.modpo`). Variants: tiny (tests), cpu, paper (set soups to a paper-variant
rewarded_soups run).
"""

from __future__ import annotations

import ml_collections

from warm_jax import configs

VARIANTS = ("tiny", "cpu", "paper")


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = configs.load_experiment("dpo").get_config(variant)  # every MODPO run: DPO's policy, data layout and optimiser
  del c.gold_eval  # judged here on the soups' prompts
  c.dpo.loss_type = "modpo"
  c.soups = ""  # a rewarded_soups.py workdir: its reward models, pairs, prompts and fronts
  c.lambdas = (0.0, 0.25, 0.5, 0.75, 1.0)
  c.seeds = (0,)  # the study re-run under each (stages.over_seeds); 0 is the report's run
  if variant == "tiny":
    c.lambdas = (0.0, 0.5)
  return c


if __name__ == "__main__":
  from warm_jax import cli
  from warm_jax.studies import modpo
  cli.run(modpo.main)
