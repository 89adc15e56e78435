r"""TFDS builder of the embedded offline task (`warm_jax.data.embedded`), built on first use.

    from warm_jax.data import embedded
    from warm_jax.data.builders import embedded_tldr
    src = embedded_tldr.load_split(embedded.default_config(), "train")
    len(src), src[0]   # {'id': 0, 'prompt': ..., 'chosen': ..., 'rejected': ..., 'flipped': False,
                       #  'gold_chosen': ..., 'gold_rejected': ...}

Splits: the preference splits `train`, `validation`, `test`, `ood` and the text splits `corpus`
(LM pre-training: all kinds of responses) and `sft` (mostly decent responses). Record i of every split
is the record with id i (shuffling is disabled at write time; the input pipeline shuffles).

Every value of the task config reaches the builder through a `BuilderConfig` created on the fly, whose
name is `s<seed>_<hash of all values>` (`embedded.config_fingerprint`), so each config gets its own
directory `<data_dir>/embedded_tldr/<name>/1.0.0` and a changed config never reads a stale build.
`data_dir`: the config's `data_dir`, else `$WARM_JAX_DATA_DIR`, else `~/.cache/warm_jax/tfds`.

Works without TensorFlow: TFDS 4.9 serialises examples with its own copy of the tf.Example protos,
writes ArrayRecord files and reads them back through `as_data_source` (numpy only).

Interruption safety: TFDS writes the whole variant into `<config dir>/incomplete.XXXXXX_1.0.0/` and
renames it to `1.0.0/` only after every split and `dataset_info.json` are written; a variant directory
counts as prepared only if it holds `dataset_info.json`. A killed build therefore leaves only an
`incomplete.*` directory, which is never read and which the next build (holding the lock) deletes.
Concurrent first uses of one config (several processes on one host) are serialised by an advisory
file lock (`fcntl.flock`, best effort on network file systems): the first builds, the others wait,
then read.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from warm_jax.data import embedded
from warm_jax.data.builders import file_lock, source
from warm_jax.data.builders.source import Source

# TFDS warns "Using custom data configuration" on every load of a config-defined builder: routine.
logging.getLogger("absl").addFilter(
    lambda r: "Using custom data configuration" not in r.getMessage())

NAME = "embedded_tldr"
VERSION = "1.0.0"

PAIR_KEYS = ("id", "prompt", "chosen", "rejected", "flipped", "gold_chosen", "gold_rejected")
TEXT_KEYS = ("id", "prompt", "response", "gold", "kind")
_EMPTY = {"prompt": "", "chosen": "", "rejected": "", "flipped": False, "gold_chosen": 0.0,
          "gold_rejected": 0.0, "response": "", "gold": 0.0, "kind": ""}


@dataclasses.dataclass(eq=False)
class EmbeddedTldrConfig(tfds.core.BuilderConfig):
  """Carries the task config (as JSON, data_dir excluded) to the builder."""
  task_json: str = "{}"

  def __repr__(self):  # TFDS logs the config of custom configs: keep that line short
    return f"EmbeddedTldrConfig(name={self.name!r})"

  @property
  def task(self):
    import ml_collections
    return ml_collections.ConfigDict(json.loads(self.task_json))


def builder_config(task_cfg) -> EmbeddedTldrConfig:
  d = task_cfg.to_dict()
  d.pop("data_dir", None)
  embedded.validate(task_cfg)
  return EmbeddedTldrConfig(
      name=f"s{int(task_cfg.seed)}_{embedded.config_fingerprint(task_cfg)}",
      version=VERSION,
      description="embedded TL;DR task; the task config is in metadata.json",
      task_json=json.dumps(d, sort_keys=True, default=list))


class EmbeddedTldr(tfds.core.GeneratorBasedBuilder):
  """Synthetic posts, TL;DR responses, gold-labelled preference pairs (see warm_jax.data.embedded)."""

  VERSION = tfds.core.Version(VERSION)
  RELEASE_NOTES = {str(VERSION): "Initial release."}
  BUILDER_CONFIGS = []  # configs are made on the fly from the task config: see builder_config()

  # TFDS 4.9.x computes this with `importlib_resources`, a package it only requires on Python < 3.9
  # (so building fails with ModuleNotFoundError on a plain install); the answer is this very file.
  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    text = tfds.features.Text()
    return self.dataset_info_from_configs(
        description=embedded.__doc__.split("\n\n")[0],
        features=tfds.features.FeaturesDict({
            # Preference splits use the first group, text splits the second; the other group holds
            # empty values (one schema per TFDS data set). load_split returns only the split's keys.
            "id": np.int64,
            "prompt": text,
            "chosen": text,
            "rejected": text,
            "flipped": np.bool_,
            "gold_chosen": np.float32,
            "gold_rejected": np.float32,
            "response": text,
            "gold": np.float32,
            "kind": text,
        }),
        disable_shuffling=True,  # record i is id i; the input pipeline shuffles
        metadata=tfds.core.MetadataDict(task=json.loads(self.builder_config.task_json),
                                        generator_version=embedded.GENERATOR_VERSION),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(split) for split in embedded.SPLITS}

  def _generate_examples(self, split):
    cfg = self.builder_config.task
    for rec in embedded.records(cfg, split):
      yield rec["id"], {**_EMPTY, **rec}


def get_builder(task_cfg, data_dir: str | None = None, prepare: bool = True) -> EmbeddedTldr:
  """The builder of `task_cfg` in its data dir, prepared (built) unless `prepare=False`."""
  data_dir = data_dir or embedded.resolve_data_dir(task_cfg)
  bc = builder_config(task_cfg)
  variant_dir = os.path.join(data_dir, NAME, bc.name, VERSION)
  make = lambda: source.open_builder(EmbeddedTldr, variant_dir, config=bc,  # noqa: E731
                                     data_dir=data_dir)
  builder = make()
  if not prepare or builder.is_prepared():
    return builder
  config_dir = os.path.dirname(builder.data_dir)
  with file_lock(config_dir + ".lock"):
    builder = make()  # another process may have built it
    if not builder.is_prepared():
      # We hold the lock: anything here is a leftover of a killed build (`incomplete.*` dirs), or a
      # variant dir without dataset_info.json (which TFDS would otherwise "reuse" and fail to read).
      if os.path.isdir(config_dir):
        for entry in os.listdir(config_dir):
          if entry.startswith("incomplete.") or entry == VERSION:
            shutil.rmtree(os.path.join(config_dir, entry), ignore_errors=True)
      builder = EmbeddedTldr(config=bc, data_dir=data_dir)
      builder.download_and_prepare(file_format="array_record")
  return builder


def load_split(task_cfg, split: str, data_dir: str | None = None) -> Source:
  """A random-access source of the python-dict records of `split` (built on first use).

  Preference splits ('train', 'validation', 'test', 'ood') have the keys of `PAIR_KEYS`; text
  splits ('corpus', 'sft') the keys of `TEXT_KEYS`. Records are checked as they are read
  (`source.Source`): a damaged file is an InputError naming it and the record.
  """
  if split not in embedded.SPLITS:
    raise ValueError(f"unknown split {split!r} of {NAME}; choose one of {embedded.SPLITS}")
  builder = get_builder(task_cfg, data_dir)
  keys = PAIR_KEYS if split in embedded.PAIR_SPLITS else TEXT_KEYS
  return source.open_split(builder, split, keys)
