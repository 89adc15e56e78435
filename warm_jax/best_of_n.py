"""Best-of-N: keep the highest-scoring of N samples; what it costs in KL and what it gains in gold.

    texts, idx = best_of_n.select(candidates, scores)        # one kept text per prompt
    kept = best_of_n.kept(scores, gold, n)                   # gold of the kept samples, per group
    rows = best_of_n.curve(scores, gold, ns=(1, 2, 4, 8), reference=single_rm_scores)

`kept` cuts each prompt's m samples into m / n disjoint groups of n and keeps each group's
argmax: averaging over the groups estimates best-of-n without bias and with less variance than
one group per prompt. `curve` reports, for each n, the mean and standard error of the kept
samples' values, the analytic KL(best-of-n || policy) bound, the mean kept score and, with a
`reference` selector, the win rate of this selector's picks against the reference's picks (ties
count one half). The studies `warm_jax.studies.best_of_n` and `warm_jax.studies.warm.bon` both
report these rows.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def select(candidates: Sequence[Sequence[str]], scores: np.ndarray) -> tuple[list[str], np.ndarray]:
  """For each prompt, the candidate with the highest score: candidates [prompts][N], scores
  [prompts, N] from any reward function; returns the kept texts and their indices."""
  scores = np.asarray(scores)
  if scores.shape != (len(candidates), len(candidates[0])):
    raise ValueError(f"scores shape {scores.shape} does not match {len(candidates)} prompts x "
                     f"{len(candidates[0])} candidates")
  idx = np.argmax(scores, axis=1)
  return [c[i] for c, i in zip(candidates, idx)], idx


def kl_bound(n: int) -> float:
  """The analytic KL(best-of-n || base policy) bound: log n - (n - 1) / n."""
  return float(np.log(n) - (n - 1) / n)


def kept(scores: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
  """Best-of-n selection by `scores`, reporting `values` (e.g. the gold reward) of the kept samples.

  scores, values: [prompts, m] (m samples per prompt, m divisible by n). Returns [prompts, m / n]:
  the value of each group's highest-scoring sample (the first one on ties)."""
  scores, values = np.asarray(scores), np.asarray(values)
  if scores.shape != values.shape or scores.ndim != 2:
    raise ValueError(f"scores {scores.shape} and values {values.shape} must be one [prompts, m] shape")
  p, m = scores.shape
  if n < 1 or m % n:
    raise ValueError(f"n={n} must be positive and divide the {m} samples per prompt")
  idx = scores.reshape(p, m // n, n).argmax(axis=-1)[..., None]
  return np.take_along_axis(values.reshape(p, m // n, n), idx, -1)[..., 0]


def curve(scores: np.ndarray, values: np.ndarray, ns: Sequence[int],
          reference: np.ndarray | None = None, reference_name: str = "reference") -> list[dict]:
  """One row per n: {'n', 'kl_bound', 'gold' (mean kept value), 'gold_stderr', 'score' (mean kept
  score)} and, with `reference` (another selector's scores of the same samples),
  'win_rate_vs_<reference_name>': this selector's kept values against the reference's."""
  from warm_jax.evaluation import win_rate
  rows = []
  for n in ns:
    v = kept(scores, values, n)
    row = {"n": int(n), "kl_bound": kl_bound(n), "gold": float(v.mean()),
           "gold_stderr": float(v.std() / np.sqrt(v.size)),
           "score": float(kept(scores, scores, n).mean())}
    if reference is not None:
      row[f"win_rate_vs_{reference_name}"] = win_rate(v.ravel(), kept(reference, values, n).ravel())
    rows.append(row)
  return rows
