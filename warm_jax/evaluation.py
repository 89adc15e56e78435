"""Judging policies with a gold reward: the judge of a config, side-by-side win rates on shared
prompts and pair accuracy (best-of-N selection: `warm_jax.best_of_n`).

    gold = evaluation.gold_fn(config)                      # (prompts, responses) -> rewards [N]
    texts_a = sampling.sample_texts(model, params_a, tok, prompts, ...)
    res = evaluation.gold_comparison(prompts, texts_a, texts_b, gold)   # {'win_rate', ...}

The judge (`config.gold`): the embedded task's programmatic gold reward (`kind='embedded'`), or a
reward-model run at `gold.path` (`kind='rm'`: real data, where a larger reward model plays the
oracle, as in the WARM paper).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from warm_jax import configs

GOLD_KINDS = ("embedded", "rm")


GOLD_RULES = (
    configs.choice("gold.kind", GOLD_KINDS),
    configs.Rule("gold.path", lambda v, c: isinstance(v, str) and (c.gold.kind != "rm" or v != ""),
                 "a reward-model run when gold.kind is 'rm' (the oracle of real data; else '')",
                 reads=("gold.kind",)),
    configs.Rule("gold.kind", lambda v, c: v != "embedded" or c.data.name == "embedded_tldr",
                 "'rm' unless config.data is the embedded task (its gold reward is the task's own)",
                 reads=("data.name",)),
)


def validate_gold(config) -> None:
  """The judge: config.gold (`GOLD_RULES`); raises InputError naming the field."""
  configs.check(config, GOLD_RULES)


def gold_fn(config) -> Callable[[Sequence[str], Sequence[str]], np.ndarray]:
  """The judge of `config` as a function (prompts, responses) -> float rewards [N]: the embedded
  task's gold total, or the reward-model run gold.path (loaded once, here)."""
  validate_gold(config)
  if config.gold.kind == "embedded":
    from warm_jax.data import embedded
    task = config.data.task
    return lambda p, r: np.asarray(embedded.gold_reward_batch(p, r, task)["total"])
  import warm_jax
  return warm_jax.load_reward_model(config.gold.path).score


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
  the win rate of A over B (ties count one half), its standard error and the rate of ties."""
  if not (len(prompts) == len(texts_a) == len(texts_b)):
    raise ValueError(f"{len(prompts)} prompts, {len(texts_a)} and {len(texts_b)} responses")
  ga, gb = np.asarray(gold_fn(prompts, texts_a)), np.asarray(gold_fn(prompts, texts_b))
  w = win_rate(ga, gb)
  return {"n": len(prompts), "gold_a": float(ga.mean()), "gold_b": float(gb.mean()),
          "win_rate": w, "win_rate_stderr": win_rate_stderr(ga, gb),
          "ties": float(np.mean(ga == gb))}


def win_rate_stderr(a: np.ndarray, b: np.ndarray) -> float:
  """Standard error of `win_rate(a, b)`: of the mean of the per-item scores 1 (a wins), 1/2 (a
  tie) and 0 (b wins). The binomial sqrt(w (1 - w) / n) overstates it when there are ties (all
  ties: a win rate of exactly 1/2 with no spread)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  s = (a > b) + 0.5 * (a == b)
  return float(s.std(ddof=1) / np.sqrt(s.size)) if s.size > 1 else 0.0


def pair_accuracy(r_chosen: np.ndarray, r_rejected: np.ndarray) -> float:
  """Fraction of preference pairs where the chosen response gets the strictly higher reward
  (the same rule as `warm_jax.losses.preference_accuracy`: ties count as wrong)."""
  rc, rr = np.asarray(r_chosen, np.float64), np.asarray(r_rejected, np.float64)
  if rc.shape != rr.shape or rc.ndim != 1 or rc.size == 0:
    raise ValueError(f"pair_accuracy needs two non-empty reward vectors of one shape, got "
                     f"{rc.shape} and {rr.shape}")
  return float(np.mean(rc > rr))
