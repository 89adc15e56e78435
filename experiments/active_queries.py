r"""Active preference queries (Christiano et al. 2017): reward-model accuracy against the number of
labels, querying by ensemble disagreement vs at random.

    python experiments/active_queries.py --config=experiments/active_queries.py:cpu \
        --config.init_from=runs/warm/sft --workdir=runs/active

From the same random first labels, each round trains an ensemble of reward models (bootstrap
resamples of the labels so far), scores it on held-out pairs and queries the next labels at
random or where the members disagree most (`warm_jax.studies.active_queries`). Variants: tiny
(tests), cpu (the embedded task on 2 CPU cores), paper (TL;DR comparisons).
"""

from __future__ import annotations

import ml_collections

from warm_jax import configs

VARIANTS = ("tiny", "cpu", "paper")


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  # every ensemble member's training
  c = configs.load_experiment("reward_model").get_config(variant)
  c.init_from = ""  # the SFT run whose decoder every member starts from (required)
  c.pool = ml_collections.ConfigDict(dict(split="train", size=2048))
  c.schedule = (128, 256, 512, 1024)  # labels after each round
  c.strategies = ("random", "disagreement")
  c.members = 3
  # Each member trains max(min_steps, ceil(epochs * labels / batch)) steps.
  c.epochs = 4.0
  c.min_steps = 50
  c.eval = ml_collections.ConfigDict(dict(split="test", pairs=512))
  c.train.update(eval_splits=())  # the ensemble is scored on eval.split by the experiment
  c.optim.warmup_steps = 10
  c.seeds = (0,)  # the study re-run under each (stages.over_seeds); 0 is the report's run
  if variant in ("tiny", "cpu"):
    c.data.task.flip_fraction = 0.0  # the labeller answers with the task's own (noisy) labels
  if variant == "tiny":
    c.pool.size = 32
    c.schedule = (8, 16)
    c.members = 2
    c.min_steps = 2
    c.epochs = 1.0
    c.eval.pairs = 16
    c.optim.warmup_steps = 1
  elif variant == "paper":
    c.pool.size = 0  # the whole TL;DR comparisons train split (~92k pairs)
    c.schedule = (1000, 2000, 4000, 8000, 16000, 32000)
    c.epochs = 1.0
    c.min_steps = 100
    c.eval.update(split="valid1", pairs=4000)
  return c


if __name__ == "__main__":
  from warm_jax import cli
  from warm_jax.studies import active_queries
  cli.run(active_queries.main)
