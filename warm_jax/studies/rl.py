"""KL-regularised RL of the SFT policy against a reward: the gold reward, a reward model, or a
weighted sum of standardised reward models (MORLHF's scalarised reward).

`main(config, workdir)`: the policy starts from config.init_from (the SFT run, or a Hugging Face
*ForCausalLM as hf:DIR, also the frozen reference) and maximises
reward - rl.kl_coef * KL(policy || SFT) with config.rl.algorithm ('reinforce', 'rloo' or 'ppo';
`warm_jax.train.policy`). config.reward.kind: 'gold' (the judge itself), 'rm' (a reward-model
run, a WARM average or a Hugging Face reward model at reward.path) or 'rms' (the weighted sum
over reward.paths). Every step logs the proxy reward (what is optimised), the gold reward (the
judge, config.gold: never optimised unless reward.kind='gold'), the KL, entropy and length.
"""

from __future__ import annotations

import ml_collections

from warm_jax import configs, errors
from warm_jax.studies import SFT_RUN
from warm_jax.studies.lm import report

REWARDS = ("gold", "rm", "rms")


def rules():
  """The trainer's fields (`warm_jax.train.policy.RULES`), the judge's and the reward's kind."""
  from warm_jax import configs, evaluation
  from warm_jax.train import policy
  return (*policy.RULES, *evaluation.GOLD_RULES, configs.choice("reward.kind", REWARDS),
          configs.Rule("reward.path", lambda v, c: isinstance(v, str)
                       and (c.reward.kind != "rm" or v != ""),
                       "a reward-model run when reward.kind is 'rm' (else '')",
                       reads=("reward.kind",)))


def validate(config: ml_collections.ConfigDict) -> None:
  from warm_jax import configs
  configs.check(config, rules())


def make_reward_fns(config: ml_collections.ConfigDict):
  """(reward_fn, gold_fn): host callables (prompts, responses) -> float32 [N]."""
  from warm_jax import evaluation
  validate(config)
  gold_fn = evaluation.gold_fn(config)
  if config.reward.kind == "gold":
    return gold_fn, gold_fn
  if config.reward.kind == "rms":
    return weighted_reward(config).score, gold_fn
  return load_scorer(config.reward.path, config).score, gold_fn


def weighted_reward(config: ml_collections.ConfigDict):
  """reward.kind='rms': the weighted sum of standardised reward models (zero weights not loaded).
  The offsets and scales are reward.offsets / reward.scales when given; when both are empty, the
  reward models' stored statistics (`warm_jax.reward_norm`) when they have them, else 0 and 1."""
  from warm_jax import multi_objective, reward_norm
  r = config.reward
  if not r.paths or len(r.weights) != len(r.paths):
    raise errors.InputError(f"config.reward.paths={tuple(r.paths)} and weights={tuple(r.weights)}: "
                            "reward.kind='rms' needs one weight per reward-model run (at least one)")
  scorers = [load_scorer(p, config) if w > 0 else None for p, w in zip(r.paths, r.weights)]
  offsets, scales = r.offsets, r.scales
  if not len(offsets) and not len(scales):
    stored = reward_norm.stored_offsets_scales(
        scorers, [f"config.reward.paths[{i}]={p}" for i, p in enumerate(r.paths)])
    if stored is not None:
      offsets, scales = stored
  return multi_objective.WeightedReward(scorers, r.weights, offsets, scales)


def load_scorer(path: str, config: ml_collections.ConfigDict):
  """A reward-model run as a scorer of this run's rollouts: wide enough for the longest prompt
  plus response (its own training max_len may be shorter), so no prompt is cut."""
  from warm_jax import scoring
  rm = scoring.load_reward_model(path, batch_size=config.data.batch_size)
  rm.max_len = max(rm.max_len, config.data.max_len + config.rl.max_new_tokens + 2)
  return rm


def main(config: ml_collections.ConfigDict, workdir: str) -> dict:
  from warm_jax import data as data_lib
  from warm_jax.train import init, policy
  configs.require(config, {"init_from": f"{SFT_RUN} (the policy and its frozen reference)"})
  validate(config)  # before anything is read
  config = init.pretrained_config(config)  # hf:DIR: its architecture and tokenizer
  setup = policy.build(config)
  reward_fn, gold_fn = make_reward_fns(config)
  ref_params = init.load_lm_params(config.init_from, config.model, setup.mesh, setup.rules)
  tokenizer = data_lib.load_tokenizer(config.data)
  prompts = {"train": data_lib.load_split(config.data, config.data.train_split)}
  prompts.update({s: data_lib.load_split(config.data, s) for s in config.train.eval_splits})
  result = policy.train(config, workdir, prompts, tokenizer, reward_fn, gold_fn, ref_params)
  result.pop("state")
  return report(result)
