"""Reward normalisation stored with the model: the mean and standard deviation of a reward model's
rewards on a reference set, kept next to its checkpoint, so that every user of the model (RL's
weighted rewards, MORL, the rewarded soups, best-of-N, notebooks) puts it on the same scale
without recomputing it.

    norm = reward_norm.compute(rm, prompts, responses, reference={"split": "validation"})
    reward_norm.store(rm, norm)                       # <checkpoint dir>/reward_norm.json
    rm = warm_jax.load_reward_model(path)             # reads it back: rm.norm
    rm.score(prompts, responses, normalized=True)     # (r - mean) / std

or from the command line, on the union of the chosen and rejected responses of a split:

    python -m warm_jax.evaluate --rm runs/rm --bench embedded --store_norm validation

The file (`reward_norm.json`, JSON) sits in the directory that holds the model: a warm_jax
checkpoint directory (`<run>/checkpoints/`, or the output of `python -m warm_jax.average`) or an
imported Hugging Face directory. It records `mean`, `std` (population standard deviation, as
`multi_objective.standardisation` computes it for the soups), the reference set and a
`digest` of the parameters it was computed with (per parameter: the sum and the sum of squares).
Statistics are only used for the parameters they were computed on: a scorer whose parameters do
not match the digest (a later checkpoint of the run, another model's file copied over) refuses
them as stale.

How combinations treat the members' statistics:
* **WARM** (a weight average) is a new model: its rewards are not an average of its members'
  rewards, so neither are its statistics. `scoring.load_averaged` and the checkpoints written by
  `python -m warm_jax.average` carry none; they are recomputed on the average (`compute` on the
  averaged scorer, or `--store_norm` on the written average). Members' statistics are never
  averaged, and copied ones fail the digest.
* **ENS of normalised members** (`normalized_ensemble`): each member standardised by its own
  stored statistics, then averaged, so members of different offsets and spreads count equally.
  The result is not itself standardised (its spread is that of the mean of correlated unit-variance
  rewards); `scoring.load_ensemble` keeps averaging raw rewards.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Sequence

import numpy as np

from warm_jax.errors import InputError

FILE = "reward_norm.json"
_TOL = 1e-5  # relative tolerance of the digest (reductions on different meshes round differently)


@dataclasses.dataclass(frozen=True)
class RewardNorm:
  """A reward model's reward statistics on a reference set, and the parameters they belong to."""
  mean: float
  std: float
  digest: tuple  # ((leaf size, sum, sum of squares), ...) in parameter-path order
  reference: dict  # what the statistics were computed on (split, data set, number of rewards, ...)

  def apply(self, rewards) -> np.ndarray:
    """(rewards - mean) / std, float32."""
    return ((np.asarray(rewards, np.float64) - self.mean) / self.std).astype(np.float32)

  def to_json(self) -> dict:
    return {"mean": self.mean, "std": self.std, "reference": self.reference,
            "digest": [list(d) for d in self.digest]}


def params_digest(params: Any) -> tuple:
  """Per parameter leaf (in path order): (size, sum, sum of squares), reduced in float32 where the
  arrays live (sharded arrays are not gathered)."""
  import jax
  import jax.numpy as jnp
  leaves = jax.tree.leaves(params)
  sums = jax.jit(lambda xs: [(jnp.sum(x.astype(jnp.float32)),
                              jnp.sum(jnp.square(x.astype(jnp.float32)))) for x in xs])(leaves)
  return tuple((int(np.size(x)), float(s), float(q)) for x, (s, q) in zip(leaves, sums))


def digest_matches(a: Sequence, b: Sequence) -> bool:
  """Whether two digests describe the same parameters (up to float32 reduction order): same
  leaves and sizes, each sum within 1e-5 of sqrt(size * sum of squares) (a bound on the sum's
  magnitude) and each sum of squares within a relative 1e-5."""
  if len(a) != len(b):
    return False
  for (n1, s1, q1), (n2, s2, q2) in zip(a, b):
    if n1 != n2:
      return False
    scale = np.sqrt(n1 * max(q1, q2)) + 1e-12
    if abs(s1 - s2) > _TOL * scale or abs(q1 - q2) > _TOL * max(q1, q2) + 1e-12:
      return False
  return True


def compute(scorer, prompts: Sequence[str], responses: Sequence[str], reference: dict | None = None
            ) -> RewardNorm:
  """The scorer's reward statistics on (prompts, responses): mean and population standard
  deviation of its raw rewards (`multi_objective.standardisation`), with the digest of its
  parameters and `reference` (what the set is) recorded."""
  from warm_jax import multi_objective
  rewards = np.asarray(scorer.score(prompts, responses), np.float64)
  if not np.all(np.isfinite(rewards)):
    raise InputError(f"{describe(scorer)}: non-finite rewards on the reference set")
  mean, std = multi_objective.standardisation(rewards)
  return RewardNorm(mean, std, params_digest(scorer.params),
                    {**(reference or {}), "rewards": int(rewards.size)})


def reference_texts(records: Sequence[dict]) -> tuple[list[str], list[str]]:
  """(prompts, responses) of every answer of the records: the chosen and the rejected response of
  preference records, every answer of ranking records (`schema.RANKING`). The reference set of
  `--store_norm` and config.train.store_norm."""
  prompts, responses = [], []
  for r in records:
    for side in ("chosen", "rejected"):
      answers = r[side] if isinstance(r[side], list) else [r[side]]
      prompts += [r["prompt"]] * len(answers)
      responses += answers
  return prompts, responses


def location(scorer) -> str | None:
  """The directory a scorer's model was loaded from (where its statistics live), or None for a
  model that exists only in memory (an in-memory average)."""
  meta = getattr(scorer, "meta", None) or {}
  path = meta.get("path")
  return path if isinstance(path, str) and os.path.isdir(path) else None


def describe(scorer) -> str:
  meta = getattr(scorer, "meta", None) or {}
  if meta.get("paths"):
    return f"the average of {list(meta['paths'])}"
  return str(meta.get("path", "an in-memory reward model"))


def store(scorer, norm: RewardNorm, directory: str | None = None) -> str:
  """Writes `norm` as <directory>/reward_norm.json (default: the directory the scorer was loaded
  from), attaches it to the scorer, and returns the file's path. An in-memory model has no
  directory: write it first (e.g. `python -m warm_jax.average --out DIR`)."""
  from warm_jax import checkpoints
  directory = directory or location(scorer)
  if directory is None:
    raise InputError(f"{describe(scorer)} exists only in memory: there is no checkpoint directory to "
                     "store its statistics in (write the average with python -m warm_jax.average "
                     "--out DIR and store them there)")
  path = os.path.join(directory, FILE)
  checkpoints.write_atomic(path, json.dumps(norm.to_json(), indent=1))
  scorer.norm = norm
  return path


def read(directory: str) -> RewardNorm | None:
  """The statistics stored in `directory`, or None when it holds none. A file that is not what
  `store` writes raises InputError naming the file and the field."""
  path = os.path.join(directory, FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      raw = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise InputError(f"{path}: not valid JSON ({e})") from None
  if not isinstance(raw, dict):
    raise InputError(f"{path}: expected a JSON object, got {type(raw).__name__}")
  for field in ("mean", "std"):
    v = raw.get(field)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
      raise InputError(f"{path}: field {field!r} must be a finite number, got {v!r}")
  if not raw["std"] > 0:
    raise InputError(f"{path}: field 'std' must be positive, got {raw['std']!r}")
  digest = raw.get("digest")
  if not (isinstance(digest, list) and all(
      isinstance(d, list) and len(d) == 3 and all(isinstance(x, (int, float)) for x in d)
      for d in digest)):
    raise InputError(f"{path}: field 'digest' must be a list of [size, sum, sum of squares]")
  ref = raw.get("reference", {})
  if not isinstance(ref, dict):
    raise InputError(f"{path}: field 'reference' must be an object, got {type(ref).__name__}")
  return RewardNorm(float(raw["mean"]), float(raw["std"]),
                    tuple((int(n), float(s), float(q)) for n, s, q in digest), ref)


def require(scorer) -> RewardNorm:
  """The scorer's statistics, checked against its parameters (once per scorer); InputError when
  it has none (saying how to compute them; for a WARM average, that they are recomputed, never
  averaged) or when they are stale."""
  norm = getattr(scorer, "norm", None)
  meta = getattr(scorer, "meta", None) or {}
  if norm is None:
    if meta.get("paths"):
      raise InputError(f"{describe(scorer)} (WARM) has no reward statistics: a weight average is a "
                       "new model, so its statistics are computed on it, never averaged from its "
                       "members' (reward_norm.compute on it, or python -m warm_jax.average --out "
                       "DIR then python -m warm_jax.evaluate --rm DIR --store_norm SPLIT)")
    raise InputError(f"{describe(scorer)} has no stored reward statistics ({FILE}): compute them "
                     "with python -m warm_jax.evaluate --rm PATH --store_norm SPLIT (or the reward "
                     "model's config.train.store_norm)")
  checked = (id(norm), id(scorer.params))
  if getattr(scorer, "_norm_checked", None) != checked:
    if not digest_matches(norm.digest, params_digest(scorer.params)):
      raise InputError(f"{os.path.join(location(scorer) or describe(scorer), FILE)}: stale reward "
                       "statistics: they were computed on other parameters than this model's (a "
                       "later checkpoint, an average, a copied file); recompute them")
    scorer._norm_checked = checked
  return norm


def stored_offsets_scales(scorers: Sequence, names: Sequence[str] | None = None
                          ) -> tuple[list[float], list[float]] | None:
  """(offsets, scales) = the stored means and standard deviations of the scorers (None entries,
  e.g. scorers a zero weight leaves out, get 0 and 1), or None when none of them stores any.
  Some with and some without: InputError naming one without (mixing scales is what the
  statistics are there to prevent)."""
  present = [s for s in scorers if s is not None]
  have = [getattr(s, "norm", None) is not None for s in present]
  if not any(have):
    return None
  if not all(have):
    i = have.index(False)
    name = names[scorers.index(present[i])] if names else describe(present[i])
    raise InputError(f"{name}: no stored reward statistics, while the other reward models have "
                     "theirs; store them for every reward model (python -m warm_jax.evaluate --rm "
                     "PATH --store_norm SPLIT) or for none")
  offsets, scales = [], []
  for s in scorers:
    norm = require(s) if s is not None else None
    offsets.append(norm.mean if norm else 0.0)
    scales.append(norm.std if norm else 1.0)
  return offsets, scales


def normalized_ensemble(members: Sequence):
  """ENS of normalised members: the mean over the members of each one's reward standardised by
  its own stored statistics, as a reward function (`multi_objective.WeightedReward` with weights
  1 / M). Every member must store valid statistics."""
  from warm_jax import multi_objective
  members = list(members)
  if len(members) < 2:
    raise InputError(f"an ensemble needs two or more members, got {len(members)}")
  norms = [require(m) for m in members]
  return multi_objective.WeightedReward(members, [1.0 / len(members)] * len(members),
                                        [n.mean for n in norms], [n.std for n in norms])
