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
  if config.train.get("store_norm", ""):
    store_norm(config, workdir, config.train.store_norm, sources, tokenizer)
  return report(result)


def store_norm(config: ml_collections.ConfigDict, workdir: str, split: str,
               sources: dict | None = None, tokenizer=None) -> str:
  """Stores the final checkpoint's reward statistics (`warm_jax.reward_norm`) on the chosen and
  rejected responses of `split` (from `sources`, else config.data) next to it; returns the file."""
  from warm_jax import reward_norm, scoring
  from warm_jax import data as data_lib
  from warm_jax.errors import InputError
  src = (sources or {}).get(split)
  if src is None:
    try:
      src = data_lib.load_split(config.data, split)
    except ValueError as e:
      raise InputError(f"config.train.store_norm={split!r}: {e}") from None
  records = [src[i] for i in range(len(src))]
  rm = scoring.load_reward_model(workdir, tokenizer=tokenizer, batch_size=config.data.eval_batch_size)
  norm = reward_norm.compute(rm, *reward_norm.reference_texts(records), {
      "data": config.data.name, "split": split, "records": len(records)})
  return reward_norm.store(rm, norm)
