"""Active preference queries (Christiano et al. 2017, arXiv 1706.03741): which unlabelled pairs to
ask a labeller about next.

    p = active.preference_probabilities(r_a, r_b)        # [M, N]: each member's P(a > b)
    d = active.disagreement(r_a, r_b)                    # [N]: their variance across members
    idx = active.select_queries(d, k=128, labelled=mask, strategy="disagreement", seed=0)

The paper trains an ensemble of reward predictors, each on a bootstrap resample of the labelled
comparisons (`bootstrap`), and queries the candidate pairs whose predicted preference varies most
across the members; the baseline queries uniformly at random.
"""

from __future__ import annotations

import numpy as np

STRATEGIES = ("random", "disagreement")


def preference_probabilities(r_a: np.ndarray, r_b: np.ndarray) -> np.ndarray:
  """Bradley-Terry P(a preferred to b) = sigmoid(r_a - r_b) of each member: [M, N] from [M, N]."""
  r_a, r_b = np.asarray(r_a, np.float64), np.asarray(r_b, np.float64)
  if r_a.shape != r_b.shape or r_a.ndim != 2:
    raise ValueError(f"member rewards must be two [M, N] arrays, got {r_a.shape} and {r_b.shape}")
  return 1.0 / (1.0 + np.exp(-(r_a - r_b)))


def disagreement(r_a: np.ndarray, r_b: np.ndarray) -> np.ndarray:
  """Variance across the M members (population, ddof=0) of their P(a > b): [N]."""
  return preference_probabilities(r_a, r_b).var(axis=0)


def select_queries(scores: np.ndarray, k: int, labelled: np.ndarray, strategy: str,
                   seed: int) -> np.ndarray:
  """Indices of `k` pairs not yet `labelled` (bool [N]) to query next: the k highest `scores`
  ('disagreement'; ties go to the lower index) or k drawn uniformly without replacement
  ('random', from `seed`; `scores` unused). Sorted ascending."""
  if strategy not in STRATEGIES:
    raise ValueError(f"strategy={strategy!r}: must be one of {STRATEGIES}")
  labelled = np.asarray(labelled, bool)
  free = np.flatnonzero(~labelled)
  if not 0 < k <= len(free):
    raise ValueError(f"k={k}: must be in [1, {len(free)}] (the unlabelled pairs left)")
  if strategy == "random":
    pick = np.random.default_rng(seed).choice(free, size=k, replace=False)
  else:
    s = np.asarray(scores, np.float64)
    if s.shape != labelled.shape:
      raise ValueError(f"scores of shape {s.shape} for {labelled.shape[0]} pairs")
    order = np.lexsort((free, -s[free]))  # by score descending, then index ascending
    pick = free[order[:k]]
  return np.sort(pick)


def bootstrap(indices: np.ndarray, seed: int) -> np.ndarray:
  """A resample of `indices` with replacement, of the same size (one ensemble member's data)."""
  indices = np.asarray(indices)
  if not len(indices):
    raise ValueError("cannot resample an empty set of labelled pairs")
  return np.random.default_rng(seed).choice(indices, size=len(indices), replace=True)


def labels_to_reach(curve: dict[int, float], target: float) -> int | None:
  """The fewest labels at which an accuracy curve {labels: accuracy} reaches `target` (None if
  it never does)."""
  hits = [n for n, acc in sorted(curve.items()) if acc >= target]
  return hits[0] if hits else None
