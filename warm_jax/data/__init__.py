"""Data: the embedded offline task, TFDS builders for the papers' data sets, tokenizer, pipeline.

`load_split(data_config, split)` and `load_tokenizer(data_config)` are what trainers call; they
dispatch on `data_config.name` ('embedded_tldr' is the default everything runs on).
"""

from __future__ import annotations


def load_split(data_config, split: str):
  """A random-access source of python-dict records of `split` of the data set named in the config."""
  if data_config.name == "embedded_tldr":
    from warm_jax.data.builders import embedded_tldr
    return embedded_tldr.load_split(data_config.task, split)
  from warm_jax.data.builders import registry
  return registry.load_split(data_config.name, split, data_dir=data_config.get("data_dir"))


def load_tokenizer(data_config):
  from warm_jax.data import tokenizer
  return tokenizer.load(data_config.get("tokenizer") or None)
