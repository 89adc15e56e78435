"""The embedded task's config (every number of it), its fingerprint and its validation."""

from __future__ import annotations

import hashlib
import json
import math
import os

import ml_collections

from warm_jax.data.embedded.lexicon import CRITERIA, RESPONSE_KINDS, SLOTS, SPLITS
from warm_jax.errors import InputError

# Bump when the generator's output changes for a given config (part of the TFDS cache key).
GENERATOR_VERSION = 2  # 2: held-out text splits corpus_validation, sft_validation


def default_config() -> ml_collections.ConfigDict:
  """Every number of the embedded task. Sizes are numbers of records per split."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.sizes = ml_collections.ConfigDict(dict(
      train=4096, validation=512, test=512, ood=512, corpus=20_000, sft=4096,
      corpus_validation=512, sft_validation=512))
  c.flip_fraction = 0.25  # train only; WARM's corrupted-label setting
  c.bt_temperature = 0.05  # P(a > b) = sigmoid((gold_a - gold_b) / T)
  c.weights = ml_collections.ConfigDict(dict(
      coverage=0.4, faithfulness=0.1, brevity=0.2, no_repetition=0.2, well_formed=0.1))
  c.brevity = ml_collections.ConfigDict(dict(base=6, per_fact=4, scale=0.75))
  # In-distribution posts: the name + min_slots..max_slots facts, and filler sentences.
  c.post = ml_collections.ConfigDict(dict(min_slots=1, max_slots=3, min_fillers=0, max_fillers=2))
  c.ood = ml_collections.ConfigDict(dict(min_slots=4, max_slots=5, min_fillers=0, max_fillers=1))
  # Split assignment of in-distribution posts: crc32(key facts) % modulus -> 0 val, 1 test, else train.
  c.split_modulus = 16
  c.mixture = ml_collections.ConfigDict(dict(
      # Short-and-worse kinds (partial, random, malformed) outweigh long-and-worse ones (verbose,
      # repetitive): this is what makes "longer = better" a shortcut of the pair data.
      pairs=dict(good=0.3, verbose=0.06, partial=0.34, repetitive=0.05, malformed=0.1,
                 hallucinated=0.08, random=0.07),
      corpus=dict(good=0.3, verbose=0.12, partial=0.2, repetitive=0.1, malformed=0.1,
                  hallucinated=0.1, random=0.08),
      sft=dict(good=0.75, verbose=0.05, partial=0.15, repetitive=0.0, malformed=0.0,
               hallucinated=0.05, random=0.0),
  ))
  c.responses = ml_collections.ConfigDict(dict(
      verbose_ratio=(1.15, 1.6),  # verbose responses: this many x the brevity budget
      max_repeats=2,  # repetitive: a clause repeated 1..max_repeats extra times
      max_junk=3,  # malformed: up to this many junk words
      random_len=(2, 10),  # random: this many random task words
      relation_prob=0.3,  # good responses open with 'my <relation>' this often
  ))
  # None: $WARM_JAX_DATA_DIR, else ~/.cache/warm_jax/tfds
  c.data_dir = ml_collections.config_dict.placeholder(str)
  return c


class _Frozen(dict):
  """A plain nested dict with attribute access: a fast read-only view of a ConfigDict."""
  __getattr__ = dict.__getitem__


def fast(cfg):
  """`cfg` (a ConfigDict or a dict) as a read-only nested dict with attribute access: what the
  generator reads in its inner loops, much faster than a ConfigDict."""
  if isinstance(cfg, _Frozen):
    return cfg
  def conv(v):
    return _Frozen({k: conv(x) for k, x in v.items()}) if isinstance(v, dict) else v
  return conv(cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg))


def resolve_data_dir(cfg) -> str:
  d = cfg.get("data_dir") if cfg is not None else None
  d = d or os.environ.get("WARM_JAX_DATA_DIR") or os.path.join("~", ".cache", "warm_jax", "tfds")
  return os.path.expanduser(d)


def config_fingerprint(cfg) -> str:
  """A short hash of every value that changes the generated records (not data_dir)."""
  d = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
  d.pop("data_dir", None)
  d["_generator_version"] = GENERATOR_VERSION
  blob = json.dumps(d, sort_keys=True, default=list)
  return hashlib.sha256(blob.encode()).hexdigest()[:10]


def validate(cfg) -> None:
  """Raises ValueError naming the first bad field (as `task.<field>`)."""
  def fail(field, value, why):
    raise InputError(f"config.task.{field}={value!r}: {why}")
  for s in SPLITS:
    if not isinstance(cfg.sizes[s], int) or cfg.sizes[s] < 0:
      fail(f"sizes.{s}", cfg.sizes[s], "must be a non-negative integer")
  if not 0.0 <= cfg.flip_fraction <= 1.0:
    fail("flip_fraction", cfg.flip_fraction, "must be in [0, 1]")
  if not cfg.bt_temperature >= 0:
    fail("bt_temperature", cfg.bt_temperature, "must be >= 0 (0 = always prefer the higher gold)")
  for c in CRITERIA:
    if cfg.weights[c] < 0:
      fail(f"weights.{c}", cfg.weights[c], "must be >= 0")
  for part in ("post", "ood"):
    p = cfg[part]
    if not 1 <= p.min_slots <= p.max_slots <= len(SLOTS):
      fail(f"{part}.max_slots", p.max_slots, f"need 1 <= min_slots <= max_slots <= {len(SLOTS)}")
    if not 0 <= p.min_fillers <= p.max_fillers:
      fail(f"{part}.max_fillers", p.max_fillers, "need 0 <= min_fillers <= max_fillers")
  if cfg.split_modulus < 3:
    fail("split_modulus", cfg.split_modulus, "must be >= 3")
  for name, mix in cfg.mixture.items():
    probs = [mix.get(k, 0.0) for k in RESPONSE_KINDS]
    if set(mix) - set(RESPONSE_KINDS):
      fail(f"mixture.{name}", sorted(mix), f"unknown kinds; known: {RESPONSE_KINDS}")
    if min(probs) < 0 or not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
      fail(f"mixture.{name}", dict(mix), "probabilities must be >= 0 and sum to 1")


DEFAULT = fast(default_config())  # the default task as a read-only nested dict
