"""Data: the embedded offline task, TFDS builders for the papers' data sets, tokenizer, pipeline.

`load_split(data_config, split)` and `load_tokenizer(data_config)` are what trainers call; they
dispatch on `data_config.name` ('embedded_tldr' is the default everything runs on).
"""

from __future__ import annotations

from warm_jax import configs


def load_split(data_config, split: str):
  """A random-access source of python-dict records of `split` of the data set named in the config."""
  if data_config.name == "embedded_tldr":
    from warm_jax.data.builders import embedded_tldr
    return embedded_tldr.load_split(data_config.task, split)
  from warm_jax.data.builders import registry
  return registry.load_split(data_config.name, split, data_dir=data_config.get("data_dir"))


def load_prompts(data_config, split: str, n: int, start: int = 0) -> list[str]:
  """The prompts of records [start, start + n) of `split` (fewer when the split ends sooner)."""
  from warm_jax.errors import InputError
  source = load_split(data_config, split)
  if start and start >= len(source):
    raise InputError(f"split {split!r} of {data_config.name} has {len(source)} records; none "
                     f"from index {start}")
  return [source[i]["prompt"] for i in range(start, min(start + n, len(source)))]


def load_tokenizer(data_config):
  """The tokenizer config.data.tokenizer names: a Hugging Face model directory's (hf:DIR, which
  runs starting from that model set: `warm_jax.train.init.pretrained_config`), else the
  sentencepiece model at that path; '' = the embedded task's committed model, which only the
  embedded task may use (its 1024 pieces know nothing of real text)."""
  from warm_jax.data import tokenizer
  path = data_config.get("tokenizer") or None
  if path is not None and path.startswith(configs.HF_PREFIX):
    from warm_jax import pretrained
    return pretrained.load_tokenizer(pretrained.hf_dir(path))
  if path is None and data_config.name != "embedded_tldr":
    raise ValueError(f"config.data.tokenizer is empty but config.data.name={data_config.name!r}: "
                     "set it to a sentencepiece .model file for this data set (the default "
                     "tokenizer is the embedded task's)")
  return tokenizer.load(path)
