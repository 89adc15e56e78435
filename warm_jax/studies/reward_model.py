"""Bradley-Terry reward-model training on preference pairs, from scratch or from an LM run.

`main(config, workdir, sources=None, tokenizer=None)`: the decoder starts from config.init_from
(a pre-training or SFT run, at its kept checkpoint config.init_step; -1 = the latest) with a
fresh zero head, or from a fresh initialisation when init_from is empty. init_from may be a
Hugging Face directory (hf:DIR): a *ForCausalLM's decoder with a fresh head, or a
*ForSequenceClassification whole, the architecture and tokenizer taken from DIR
(`warm_jax.train.init.pretrained_config`). `sources` and
`tokenizer` default to config.data's; studies that train many reward models (WARM's members,
RLP, the soups' criteria, active queries) pass their own.
"""

from __future__ import annotations

import ml_collections

from warm_jax.studies.lm import report


def initial_params(config: ml_collections.ConfigDict, setup):
  """The RM's starting params: the decoder of config.init_from (at config.init_step) with a fresh
  (zero) head, or the head of config.init_head when given (e.g. WARM's linear probe: every member
  starts from one head); None (a fresh initialisation) when init_from is empty."""
  from warm_jax import checkpoints
  from warm_jax.train import init
  if not config.init_from:
    return None
  step = None if config.init_step < 0 else config.init_step
  params = init.reward_model_from_lm(config.init_from, setup, step=step)
  if config.get("init_head", ""):
    abstract = init.abstract_params(setup.model, setup.mesh, setup.rules)
    head = checkpoints.restore_params(config.init_head,
                                      target={"reward_head": abstract["reward_head"]})
    params = {**params, "reward_head": head["reward_head"]}
  return params


def main(config: ml_collections.ConfigDict, workdir: str, sources: dict | None = None,
         tokenizer=None) -> dict:
  from warm_jax.train import init, reward_model
  reward_model.validate_config(config)
  config = init.pretrained_config(config)
  init_params = initial_params(config, reward_model.build(config))
  result = reward_model.train(config, workdir, sources, tokenizer, init_params=init_params)
  result.pop("state")
  return report(result)
