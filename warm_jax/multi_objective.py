"""Several objectives at once: per-criterion preferences, scalarised rewards, Pareto fronts.

    labels = multi_objective.relabel(records, score_chosen, score_rejected, temperature=0.05, seed=0)
    reward = multi_objective.WeightedReward([rm_a, rm_b], weights=[0.3, 0.7],
                                            offsets=[mu_a, mu_b], scales=[sd_a, sd_b])
    front = multi_objective.pareto_mask(points)          # which (f1, f2) points no other dominates
    hv = multi_objective.hypervolume_2d(points, ref=(0, 0))

Rewarded soups (Rame et al. 2023), MORLHF and MODPO (Zhou et al. 2023) all start from one reward
model per criterion, each trained on preferences that judge that criterion alone (`relabel`), and
compare policies by the front of their mean criterion scores (`pareto_mask`, `hypervolume_2d`).
MORLHF optimises the scalarised reward sum_i w_i r_i (`WeightedReward`); reward models' scales are
arbitrary, so each r_i is standardised first (offset, scale: its mean and standard deviation on the
initial policy's responses, or the statistics stored with the reward model: `warm_jax.reward_norm`,
`WeightedReward.from_stored`), which makes one weight grid mean the same for every method.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

TIE = 1e-6  # criterion differences at most this are ties: no preference to learn


def relabel(records: Sequence[dict], score_chosen: np.ndarray, score_rejected: np.ndarray,
            temperature: float, seed: int) -> list[dict]:
  """Preference pairs that judge one criterion: each record's two responses ordered by a
  Bradley-Terry draw on that criterion's scores, P(a preferred) = sigmoid((s_a - s_b) / T), the
  embedded task's own labelling rule. Pairs the criterion ties (|s_a - s_b| <= TIE) are dropped.
  Record i draws from its own random stream (seed, i): dropping or reordering other records does
  not change its label. Kept records get 'gold_chosen'/'gold_rejected' = the criterion scores
  and 'swapped' (whether the label differs from the record's original order)."""
  sc, sr = np.asarray(score_chosen, np.float64), np.asarray(score_rejected, np.float64)
  if not len(records) == len(sc) == len(sr):
    raise ValueError(f"{len(records)} records but {len(sc)} and {len(sr)} scores")
  if not temperature > 0:
    raise ValueError(f"temperature={temperature}: must be positive")
  out = []
  for i, (rec, a, b) in enumerate(zip(records, sc, sr)):
    if abs(a - b) <= TIE:
      continue
    p_keep = 1.0 / (1.0 + np.exp(-(a - b) / temperature))  # P(the original chosen is preferred)
    keep = np.random.default_rng([seed, i]).random() < p_keep
    chosen, rejected = (rec["chosen"], rec["rejected"]) if keep else (rec["rejected"], rec["chosen"])
    out.append({**rec, "chosen": chosen, "rejected": rejected, "swapped": not keep,
                "gold_chosen": float(a if keep else b), "gold_rejected": float(b if keep else a)})
  return out


class WeightedReward:
  """sum_i weights[i] * (scorer_i(prompts, responses) - offsets[i]) / scales[i], as a reward
  function (`score(prompts, responses) -> float32 [N]`). Scorers with weight 0 are not run."""

  def __init__(self, scorers: Sequence, weights: Sequence[float], offsets: Sequence[float] | None = None,
               scales: Sequence[float] | None = None):
    m = len(scorers)
    offsets = [0.0] * m if offsets is None or not len(offsets) else list(offsets)
    scales = [1.0] * m if scales is None or not len(scales) else list(scales)
    if not m or not len(weights) == len(offsets) == len(scales) == m:
      raise ValueError(f"{m} scorers, {len(weights)} weights, {len(offsets)} offsets and "
                       f"{len(scales)} scales: need one of each per scorer (at least one)")
    if any(w < 0 for w in weights) or not sum(weights) > 0:
      raise ValueError(f"weights={list(weights)}: must be non-negative, not all zero")
    if any(not s > 0 for s in scales):
      raise ValueError(f"scales={list(scales)}: must be positive")
    self.terms = [(s, float(w), float(o), float(c))
                  for s, w, o, c in zip(scorers, weights, offsets, scales) if w > 0]

  @classmethod
  def from_stored(cls, scorers: Sequence, weights: Sequence[float]) -> "WeightedReward":
    """The weighted sum with each scorer standardised by its stored statistics
    (`reward_norm.stored_offsets_scales`: every scorer must have valid ones)."""
    from warm_jax import reward_norm
    from warm_jax.errors import InputError
    stored = reward_norm.stored_offsets_scales(list(scorers))
    if stored is None:
      raise InputError("none of the reward models stores reward statistics: compute them with "
                       "python -m warm_jax.evaluate --rm PATH --store_norm SPLIT")
    return cls(scorers, weights, *stored)

  def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
    total = np.zeros(len(responses), np.float64)
    for scorer, w, offset, scale in self.terms:
      total += w * (np.asarray(scorer.score(prompts, responses), np.float64) - offset) / scale
    return total.astype(np.float32)

  __call__ = score


def standardisation(scores: np.ndarray) -> tuple[float, float]:
  """(mean, standard deviation) of a reward model's scores: its offset and scale."""
  s = np.asarray(scores, np.float64)
  if s.size < 2:
    raise ValueError(f"standardisation needs at least 2 scores, got {s.size}")
  sd = float(s.std())
  if not sd > 0:
    raise ValueError("the scores are all equal: the reward model does not separate the responses")
  return float(s.mean()), sd


def pareto_mask(points: np.ndarray) -> np.ndarray:
  """bool [N]: the points (rows of [N, K], every objective maximised) that no other point
  dominates (>= on every objective and > on one). Duplicates are all kept."""
  p = np.asarray(points, np.float64)
  if p.ndim != 2:
    raise ValueError(f"points must be [N, K], got shape {p.shape}")
  ge = np.all(p[:, None, :] >= p[None, :, :], axis=-1)  # ge[j, i]: j >= i everywhere
  gt = np.any(p[:, None, :] > p[None, :, :], axis=-1)
  dominated = np.any(ge & gt, axis=0)
  return ~dominated


def hypervolume_2d(points: np.ndarray, ref: Sequence[float] = (0.0, 0.0)) -> float:
  """Area dominated by the 2-objective points (maximised) and bounded below by `ref`: the union
  of the rectangles [ref, point]. Points not above ref on both objectives add nothing."""
  p = np.asarray(points, np.float64).reshape(-1, 2)
  r = np.asarray(ref, np.float64)
  p = p[np.all(p > r, axis=1)]
  if not len(p):
    return 0.0
  p = p[np.argsort(-p[:, 0], kind="stable")]  # by the first objective, descending
  area, best_y = 0.0, r[1]
  for x, y in p:
    if y > best_y:
      area += (x - r[0]) * (y - best_y)
      best_y = y
  return float(area)
