r"""Name -> TFDS builder of the papers' real data sets, and `load_split` (random access, python dicts).

    from warm_jax.data.builders import registry
    src = registry.load_split("hh_rlhf/helpful_base", "train")    # downloads + builds on first use
    len(src), src[0]   # {'id': ..., 'prompt': ..., 'chosen': ..., 'rejected': ...}

Names are "<data set>" or "<data set>/<config>" (TFDS style); `names()` lists them all:

| data set | configs (default first) | splits | records |
| --- | --- | --- | --- |
| tldr_comparisons | - | train, valid1, valid2 | preference (+ batch, confidence) |
| tldr_sft | - | train, valid, test | prompt + response (+ subreddit) |
| hh_rlhf | helpful_base, harmless_base, helpful_online, helpful_rejection_sampled, all (each also `<config>_filtered`) | train, test | preference |
| alpaca_farm | human_preference | train | preference |
| alpaca_farm | instructions | sft, preference, unlabeled, val, evaluation | prompt + response |
| imdb | - | train, test, unsupervised | prompt + response (+ sentiment, rating) |
| beavertails | safe_rlhf_10k, safe_rlhf_10k_safer, safe_rlhf_alpaca7b, safe_rlhf_alpaca7b_safer | train (, test) | preference + labels (+ is_chosen_safe, is_rejected_safe) |
| reward_bench | - | filtered | preference (+ subset, chosen_model, rejected_model) |
| reward_bench_2 | - | test | ranking: lists of chosen and rejected answers (+ subset) |

The record schema is `warm_jax.data.schema`'s. `data_dir`: the argument, else `$WARM_JAX_DATA_DIR`,
else `~/.cache/warm_jax/tfds`. Building needs a network the first time (TFDS downloads into
`<data_dir>/downloads`); it writes ArrayRecord files that are read back with `as_data_source`,
without TensorFlow. Concurrent first uses on one host are serialised by a file lock; TFDS writes
each build into an `incomplete.*` directory and renames it only when complete.
"""

from __future__ import annotations

import importlib
import os

from warm_jax.data.builders import file_lock, source
from warm_jax.data.builders.source import Source

_MODULES = {  # data set name -> (module, builder class)
    "tldr_comparisons": ("warm_jax.data.builders.tldr_comparisons", "TldrComparisons"),
    "tldr_sft": ("warm_jax.data.builders.tldr_sft", "TldrSft"),
    "hh_rlhf": ("warm_jax.data.builders.hh_rlhf", "HhRlhf"),
    "alpaca_farm": ("warm_jax.data.builders.alpaca_farm", "AlpacaFarm"),
    "imdb": ("warm_jax.data.builders.imdb", "Imdb"),
    "beavertails": ("warm_jax.data.builders.beavertails", "Beavertails"),
    "reward_bench": ("warm_jax.data.builders.reward_bench", "RewardBench"),
    "reward_bench_2": ("warm_jax.data.builders.reward_bench", "RewardBench2"),
}


def builder_class(dataset: str):
  if dataset not in _MODULES:
    raise ValueError(f"unknown data set {dataset!r}; choose one of {sorted(_MODULES)}")
  module, cls = _MODULES[dataset]
  return getattr(importlib.import_module(module), cls)


def parse_name(name: str) -> tuple[str, str | None]:
  """'hh_rlhf/harmless_base' -> ('hh_rlhf', 'harmless_base'); 'imdb' -> ('imdb', None)."""
  dataset, _, config = name.partition("/")
  cls = builder_class(dataset)
  configs = [c.name for c in cls.BUILDER_CONFIGS]
  if config and config not in configs:
    raise ValueError(f"unknown config {config!r} of {dataset}; choose one of {configs}")
  if not config and configs:
    config = cls.DEFAULT_BUILDER_CONFIG_NAME or configs[0]
  return dataset, config or None


def names() -> list[str]:
  """Every loadable name, "<data set>" or "<data set>/<config>"."""
  out = []
  for dataset in _MODULES:
    configs = [c.name for c in builder_class(dataset).BUILDER_CONFIGS]
    out += [f"{dataset}/{c}" for c in configs] if configs else [dataset]
  return out


def resolve_data_dir(data_dir: str | None = None) -> str:
  d = data_dir or os.environ.get("WARM_JAX_DATA_DIR") or os.path.join("~", ".cache", "warm_jax",
                                                                      "tfds")
  return os.path.expanduser(d)


def get_builder(name: str, data_dir: str | None = None, prepare: bool = True,
                download_config=None):
  """The TFDS builder of `name` in `data_dir`, downloaded and built unless `prepare=False`."""
  dataset, config = parse_name(name)
  cls = builder_class(dataset)
  data_dir = resolve_data_dir(data_dir)
  where = os.path.join(data_dir, dataset, *([config] if config else []))
  make = lambda: source.open_builder(cls, where, config=config, data_dir=data_dir)  # noqa: E731
  builder = make()
  if not prepare or builder.is_prepared():
    return builder
  with file_lock(os.path.join(data_dir, f"{dataset}.{config or 'default'}.lock")):
    builder = make()  # another process may have built it meanwhile
    if not builder.is_prepared():
      builder.download_and_prepare(file_format="array_record", download_config=download_config)
  return builder


def skipped(name: str, data_dir: str | None = None) -> list[str]:
  """The malformed records a `*_filtered` build dropped ('<file>, record <n>: <reason>')."""
  return list(get_builder(name, data_dir).info.metadata.get("skipped", []))


def load_split(name: str, split: str, data_dir: str | None = None, *,
               download_config=None) -> Source:
  """A random-access source of the python-dict records of `split` of `name` (built on first use).

  `split` may use TFDS slicing ('train[:1000]', 'train[90%:]'). `download_config`: a
  `tfds.download.DownloadConfig` for the first build (e.g. `register_checksums=True`). Records are
  checked against the data set's features as they are read (`source.Source`): a damaged file is
  an InputError naming it and the record.
  """
  builder = get_builder(name, data_dir, download_config=download_config)
  splits = list(builder.info.splits.keys())
  if split.split("[")[0] not in splits:
    raise ValueError(f"unknown split {split!r} of {name}; choose one of {splits}")
  return source.open_split(builder, split)
