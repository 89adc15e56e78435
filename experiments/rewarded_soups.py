r"""Rewarded soups (Rame et al. 2023, arXiv 2306.04488) against multi-objective RL (MORLHF).

    python experiments/rewarded_soups.py --config=experiments/rewarded_soups.py:cpu \
        --config.init_from=runs/warm/sft --workdir=runs/soups

Two criteria of the embedded task's gold reward that pull against each other (`objectives.names`,
default coverage and brevity): a reward model per criterion, RL against each (the soups'
ingredients), MORL against weighted sums, and the soups (1 - lambda) theta_2 + lambda theta_1
judged next to MORL's policies (`warm_jax.studies.rewarded_soups`). Set objectives.brevity to
the task's own (base=6, per_fact=4, scale=0.75) to use the task's criterion as it is.
Variants: tiny (tests), cpu (the embedded task on 2 CPU cores), paper (the paper's TL;DR
summarisation setting: reward models of two criteria given in `objectives.rm_paths`, which also
judge; PPO, as the paper's trl runs).
"""

from __future__ import annotations

import ml_collections
import numpy as np

from warm_jax import configs

VARIANTS = ("tiny", "cpu", "paper")


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  rl = configs.load_experiment("rl")
  c = rl.get_config(variant)  # every RL run: policy, prompts, algorithm
  del c.reward  # the rewards are this experiment's reward models
  # each criterion's reward model (from the SFT decoder)
  c.rm = configs.load_experiment("reward_model").get_config(variant)
  c.pairs = 2048  # the first `pairs` pairs of the rm data's train split, relabelled (0: all)
  # names: the two criteria (of `warm_jax.data.embedded.CRITERIA`, or free names with rm_paths);
  # brevity: the budget of the brevity criterion as judged here (see the module docstring);
  # rm_paths: reward-model runs of the two criteria to use instead of training them (real data).
  c.objectives = ml_collections.ConfigDict(dict(
      names=("coverage", "brevity"), brevity=dict(base=8, per_fact=0, scale=1.0), rm_paths=(),
      label_seed=0))
  c.norm = ml_collections.ConfigDict(dict(split="validation", prompts=256, seed=5))
  c.morl_lambdas = (0.25, 0.5, 0.75)  # MORL runs besides the two single-criterion ones
  # The soups' weights on criterion 1: steps of 0.1 and MORL's, so every MORL point has its soup.
  c.lambdas = tuple(sorted({round(float(x), 2) for x in np.linspace(0.0, 1.0, 11)}
                           | set(c.morl_lambdas)))
  c.final = ml_collections.ConfigDict(dict(split="test", prompts=256, prompt_len=48,
                                           max_new_tokens=40, batch_size=64, seed=1234))
  c.seeds = (0,)  # the study re-run under each (stages.over_seeds); 0 is the report's run
  if variant in ("tiny", "cpu"):
    c.data.task.flip_fraction = 0.0  # labels come from the criteria; no corrupted pairs
    c.rm.data.task = c.data.task
  if variant == "cpu":
    rl.fast_cpu_rl(c)  # warm_rl.py's: REINFORCE, KL 0.01, lr 1e-4, 150 steps
  elif variant == "tiny":
    c.pairs = 64
    c.norm.prompts = 8
    c.lambdas = (0.0, 0.5, 1.0)
    c.morl_lambdas = (0.5,)
    c.final.update(prompts=8, prompt_len=32, max_new_tokens=16, batch_size=8)
  elif variant == "paper":
    # Reddit TL;DR with two reward models of different criteria (the paper's Fig. 2(b) pairs two
    # public summarisation RMs); PPO with KL and LoRA in the paper (here full fine-tuning).
    c.rl.algorithm = "ppo"
    c.objectives.names = ("rm_1", "rm_2")
    c.gold.kind = "rm"  # logged during RL only; set gold.path (e.g. to rm_paths[0])
    c.final.update(split="valid", prompts=1000, prompt_len=512, max_new_tokens=64, batch_size=128)
    c.norm.split = "valid"
  return c


if __name__ == "__main__":
  from warm_jax import cli
  from warm_jax.studies import rewarded_soups
  cli.run(rewarded_soups.main)
