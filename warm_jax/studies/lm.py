"""Next-token training of the shared language model: pre-training on the corpus, then SFT.

`pretrain(config, workdir)` trains (or continues, with config.init_from) the LM on
config.data.train_split; `sft(config, workdir)` is the same training from a pre-trained run
(config.init_from is required) on the SFT split, the loss on response tokens only
(config.train.objective). Every reward model and policy starts from these checkpoints.
config.init_from may be a Hugging Face *ForCausalLM (hf:DIR): the run then takes its architecture
and tokenizer from DIR (`warm_jax.train.init.pretrained_config`).
"""

from __future__ import annotations

import ml_collections

from warm_jax import configs


def pretrain(config: ml_collections.ConfigDict, workdir: str) -> dict:
  from warm_jax import data as data_lib
  from warm_jax.train import init, lm
  lm.validate_config(config)
  config = init.pretrained_config(config)
  setup = lm.build(config)  # validates the config before anything is read
  init_params = (init.load_lm_params(config.init_from, config.model, setup.mesh, setup.rules)
                 if config.init_from else None)
  tokenizer = data_lib.load_tokenizer(config.data)
  sources = {"train": data_lib.load_split(config.data, config.data.train_split)}
  sources.update({s: data_lib.load_split(config.data, s) for s in config.train.eval_splits})
  result = lm.train(config, workdir, sources, tokenizer, init_params=init_params)
  result.pop("state")
  return report(result)


def sft(config: ml_collections.ConfigDict, workdir: str) -> dict:
  configs.require(config, {"init_from": "a pre-trained LM to fine-tune, e.g. "
                           "--config.init_from=runs/pretrain (python experiments/pretrain.py ...)"})
  return pretrain(config, workdir)


def report(result: dict) -> dict:
  """Prints a trainer's final metrics (floats rounded) on one line; returns them."""
  import json
  print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))
  return result
