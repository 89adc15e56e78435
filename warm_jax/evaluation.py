"""Judging policies with a gold reward: side-by-side win rates on shared prompts.

    texts_a = sampling.sample_texts(model, params_a, tok, prompts, ...)
    res = evaluation.gold_comparison(prompts, texts_a, texts_b, gold_fn)   # {'win_rate', ...}
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def win_rate(a: np.ndarray, b: np.ndarray) -> float:
  """Fraction of items where a beats b (ties count one half)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape or a.ndim != 1 or a.size == 0:
    raise ValueError(f"win_rate needs two non-empty score vectors of one shape, got {a.shape} and "
                     f"{b.shape}")
  return float(np.mean((a > b) + 0.5 * (a == b)))


def gold_comparison(prompts: Sequence[str], texts_a: Sequence[str], texts_b: Sequence[str],
                    gold_fn: Callable[[Sequence[str], Sequence[str]], np.ndarray]) -> dict:
  """Gold-judged comparison of two policies' responses to the same prompts: mean gold of each,
  the win rate of A over B, and a binomial standard error of the win rate."""
  if not (len(prompts) == len(texts_a) == len(texts_b)):
    raise ValueError(f"{len(prompts)} prompts, {len(texts_a)} and {len(texts_b)} responses")
  ga, gb = np.asarray(gold_fn(prompts, texts_a)), np.asarray(gold_fn(prompts, texts_b))
  w = win_rate(ga, gb)
  return {"n": len(prompts), "gold_a": float(ga.mean()), "gold_b": float(gb.mean()),
          "win_rate": w, "win_rate_stderr": float(np.sqrt(w * (1 - w) / len(prompts))),
          "ties": float(np.mean(ga == gb))}
