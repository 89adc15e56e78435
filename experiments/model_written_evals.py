r"""Model-written evaluations (Perez et al. 2022, arXiv 2212.09251) of one behaviour, verbosity, along
the rewarded soups' lambda and along RL steps.

    python experiments/model_written_evals.py --config=experiments/model_written_evals.py:cpu \
        --config.generator=runs/warm/pretrain --config.soups=runs/soups \
        --config.pm.path=runs/soups/rm_brevity --workdir=runs/mwe

A language model writes the evaluation items, a preference model filters them, and the items
measure verbosity along the soups' lambda and RL steps, checked against hand-written items
(`warm_jax.studies.model_written_evals`). Variants: tiny (tests), cpu, paper (set the paths).
"""

from __future__ import annotations

import ml_collections

VARIANTS = ("tiny", "cpu", "paper")


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  from warm_jax import configs
  c = configs.experiment_config(variant, VARIANTS, "experiments/model_written_evals.py")
  c.generator = ""  # the language-model run that writes the items (e.g. the pre-training run)
  c.soups = ""  # a rewarded_soups.py workdir: the policies to evaluate
  # threshold: keep an item when the preference model prefers its plain answer by >= this much
  # (0: prefers it at all; 0.5 kept 20 of 422 items with the main job's WARM as the model).
  c.pm = ml_collections.ConfigDict(dict(path="", threshold=0.0))
  # posts: how many the generator writes (before dropping the unusable ones and the filter).
  # min_facts: a usable post states >= this many key facts (embedded task); keep_unmarked: also
  # use samples without the TL;DR marker whole (tests: a tiny LM writes no marker).
  c.writing = ml_collections.ConfigDict(dict(posts=512, post_tokens=96, answer_tokens=40,
                                             prompt_len=48, temperature=1.0, seed=3, min_facts=1,
                                             keep_unmarked=False))
  c.hand = ml_collections.ConfigDict(dict(n_items=256, seed=4))
  c.lambdas = (0.0, 0.25, 0.5, 0.75, 1.0)
  c.rl_steps = "rl_coverage"  # the soups run's RL run whose kept checkpoints are the RL steps
  c.eval = ml_collections.ConfigDict(dict(seed=9, batch_size=64))
  if variant == "tiny":
    c.writing.update(posts=16, post_tokens=40, answer_tokens=12, prompt_len=32, min_facts=0,
                     keep_unmarked=True)
    c.hand.n_items = 8
    c.lambdas = (0.0, 1.0)
    c.eval.batch_size = 8
  elif variant == "paper":
    c.writing.update(posts=2000, post_tokens=448, answer_tokens=64, prompt_len=448)
    c.hand.n_items = 0
  return c


if __name__ == "__main__":
  from warm_jax import cli
  from warm_jax.studies import model_written_evals
  cli.run(model_written_evals.main)
