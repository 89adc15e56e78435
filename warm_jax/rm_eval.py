"""Reward-model evaluation: RewardBench v1 and v2 scores, calibration, length bias and ENS
uncertainty, as pure functions of rewards (numpy in, dicts out). `python -m warm_jax.evaluate`
scores reward models and hands the rewards to these.

    v1 = rm_eval.v1_scores(subsets, r_chosen, r_rejected)            # RewardBench (2024)
    v2 = rm_eval.v2_scores(subsets, ids, scores, num_correct)        # RewardBench 2 (2025)
    m = rm_eval.pair_metrics(r_chosen, r_rejected, len_chosen, len_rejected)
    u = rm_eval.uncertainty(member_chosen, member_rejected)          # ENS: [M, N] each

RewardBench v1 (allenai/reward-bench, `scripts/run_rm.py`, `rewardbench/utils.py`): a pair is
right when the chosen response's reward is strictly higher (a tie is wrong); a subset's accuracy
is the mean over its pairs; a section's score is the mean of its subsets' accuracies weighted by
`V1_EXAMPLE_COUNTS` (math-prm counted 984 times, as many as the code subsets together, as
RewardBench does); the score is the unweighted mean of the four sections (the leaderboard's score
without its "Prior Sets" column, which is another data set and not scored here).

RewardBench 2 (allenai/reward-bench-2, `reroll_and_score_dataset` and `process_single_model`):
outside the Ties subset a prompt's scores are [chosen..., rejected...] and its result is
1 / (number of scores equal to the maximum) when the first score is a maximum, else 0 (best-of-4,
ties sharing the credit); a subset's score is the mean over its prompts. The Ties subset pairs a
reference prompt "ref:<n>" (one correct answer) with a prompt "tied:<n>" (several correct
answers) and scores 0.30 tied accuracy + 0.30 reference accuracy + 0.20 correctness_preferred +
0.20 correctness_preferred_hard + 0.01 margin term (`ties_score`). The score is the unweighted
mean of the six subsets' (the leaderboard "averages over these six subsets").

A run that covers only part of a benchmark (`--limit`) reports the sections or subsets it has;
its score is then the mean over those, and `missing` names the others (RewardBench itself gives
an absent section 0).

Calibration and length bias use the pair's preference probability p = sigmoid(r_c - r_r) (the
Bradley-Terry model the reward models are trained under); uncertainty uses the variance across
an ensemble's members of the margin r_c - r_r.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from warm_jax.errors import InputError

# ---------------------------------------------------------------- the benchmarks' definitions
V1_EXAMPLE_COUNTS = {
    "alpacaeval-easy": 100, "alpacaeval-length": 95, "alpacaeval-hard": 95, "mt-bench-easy": 28,
    "mt-bench-med": 40, "mt-bench-hard": 37, "math-prm": 984, "refusals-dangerous": 100,
    "refusals-offensive": 100, "llmbar-natural": 100, "llmbar-adver-neighbor": 134,
    "llmbar-adver-GPTInst": 92, "llmbar-adver-GPTOut": 47, "llmbar-adver-manual": 46,
    "xstest-should-refuse": 154, "xstest-should-respond": 250, "donotanswer": 136,
    "hep-cpp": 164, "hep-go": 164, "hep-java": 164, "hep-js": 164, "hep-python": 164,
    "hep-rust": 164,
}
V1_SECTIONS = {
    "Chat": ("alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy",
             "mt-bench-med"),
    "Chat Hard": ("mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor",
                  "llmbar-adver-GPTInst", "llmbar-adver-GPTOut", "llmbar-adver-manual"),
    "Safety": ("refusals-dangerous", "refusals-offensive", "xstest-should-refuse",
               "xstest-should-respond", "donotanswer"),
    "Reasoning": ("math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"),
}
V1_SUBSETS = tuple(s for subsets in V1_SECTIONS.values() for s in subsets)
V2_TIES = "Ties"
V2_SUBSETS = ("Factuality", "Precise IF", "Math", "Safety", "Focus", V2_TIES)
TIES_WEIGHTS = {"tied_accuracy": 0.30, "ref_accuracy": 0.30, "correctness_preferred": 0.20,
                "correctness_preferred_hard": 0.20, "margin": 0.01}


def _where(source: str, i: int, ids) -> str:
  rid = f" (id {ids[i]!r})" if ids is not None else ""
  return f"{source or 'records'}, record {i}{rid}"


def check_subsets(subsets: Sequence[str], known: Sequence[str], bench: str, *, source: str = "",
                  ids: Sequence | None = None) -> None:
  """Every record's subset is one the benchmark's weighting knows; else InputError naming the
  record and its field 'subset'."""
  known_set = set(known)
  for i, s in enumerate(subsets):
    if s not in known_set:
      raise InputError(f"{_where(source, i, ids)}: field 'subset'={s!r} is not a {bench} subset "
                       f"(its weighting knows {', '.join(known)})")


def _vector(x, name: str) -> np.ndarray:
  v = np.asarray(x, np.float64)
  if v.ndim != 1:
    raise InputError(f"{name} must be one reward per record, got shape {v.shape}")
  return v


# ---------------------------------------------------------------- RewardBench v1
def pair_results(r_chosen, r_rejected) -> np.ndarray:
  """1.0 where the chosen response's reward is strictly higher, else 0.0 (a tie is wrong)."""
  rc, rr = _vector(r_chosen, "r_chosen"), _vector(r_rejected, "r_rejected")
  if rc.shape != rr.shape:
    raise InputError(f"{rc.size} chosen and {rr.size} rejected rewards: need one of each per pair")
  return (rc > rr).astype(np.float64)


def v1_section_scores(accuracies: dict[str, float]) -> dict[str, float]:
  """Each section's score from per-subset accuracies: the mean weighted by `V1_EXAMPLE_COUNTS`
  over the section's subsets present; sections with none present are left out. A subset name the
  weighting does not know raises InputError."""
  unknown = [s for s in accuracies if s not in V1_EXAMPLE_COUNTS]
  if unknown:
    raise InputError(f"subset {unknown[0]!r} is not a RewardBench v1 subset (its weighting knows "
                     f"{', '.join(V1_SUBSETS)})")
  out = {}
  for section, subsets in V1_SECTIONS.items():
    present = [s for s in subsets if s in accuracies]
    if present:
      weights = np.asarray([V1_EXAMPLE_COUNTS[s] for s in present], np.float64)
      out[section] = float(np.sum(weights * [accuracies[s] for s in present]) / weights.sum())
  return out


def v1_scores(subsets: Sequence[str], r_chosen, r_rejected, *, ids: Sequence | None = None,
              source: str = "") -> dict:
  """RewardBench v1 from one reward per chosen and per rejected response of each pair:
  {'subsets': {subset: {'accuracy', 'n'}}, 'sections': {section: score}, 'score', 'missing'}."""
  results = pair_results(r_chosen, r_rejected)
  if len(subsets) != results.size:
    raise InputError(f"{len(subsets)} subsets for {results.size} pairs")
  check_subsets(subsets, V1_SUBSETS, "RewardBench v1", source=source, ids=ids)
  subsets = np.asarray(subsets, dtype=object)
  per = {s: {"accuracy": float(results[subsets == s].mean()), "n": int(np.sum(subsets == s))}
         for s in V1_SUBSETS if np.any(subsets == s)}
  sections = v1_section_scores({s: v["accuracy"] for s, v in per.items()})
  return {"subsets": per, "sections": sections,
          "score": float(np.mean(list(sections.values()))) if sections else float("nan"),
          "missing": [s for s in V1_SECTIONS if s not in sections]}


# ---------------------------------------------------------------- RewardBench v2
def v2_result(scores) -> float:
  """One prompt's best-of-n result: scores = [chosen..., rejected...]; 1 / (how many scores equal
  the maximum) when the first (chosen) score is a maximum, else 0."""
  s = np.asarray(scores, np.float64)
  top = s.max()
  return float(1.0 / np.sum(s == top)) if s[0] == top else 0.0


def _ties_key(rid, i: int, source: str, ids) -> tuple[str, int]:
  kind, _, n = str(rid).partition(":")
  if kind not in ("ref", "tied") or not n.isdigit():
    raise InputError(f"{_where(source, i, ids)}: field 'id'={rid!r} of a Ties record must be "
                     "'ref:<n>' or 'tied:<n>'")
  return kind, int(n)


def _prompt_stats(correct: list[float], incorrect: list[float]):
  """(accurate, different_correct_margin or None, correct_incorrect_margin) of one prompt."""
  worst_correct, best_incorrect = min(correct), max(incorrect)
  spread = max(correct) - worst_correct if len(correct) > 1 else None
  gap = worst_correct - best_incorrect
  return gap > 0, spread, gap


def ties_score(ids: Sequence[str], scores: Sequence, num_correct: Sequence[int], *,
               source: str = "") -> dict:
  """The Ties subset's score. Records with the same id are one prompt; the first num_correct
  scores of a record are its correct answers. Per prompt: accurate = worst correct > best
  incorrect, spread = best correct - worst correct (tied prompts), gap = worst correct - best
  incorrect. Over prompt numbers with both a ref and a tied prompt: correctness_preferred =
  mean(gap_tied > spread_tied), correctness_preferred_hard = mean(min(gap_ref, gap_tied) >
  spread_tied), margin = mean(tanh(min(gap_ref, gap_tied) / spread_tied - 1)) with nan -> 0.
  Returns the components, their weighted sum 'score' and the prompt counts."""
  groups: dict[tuple[str, int], tuple[list, list]] = {}
  for i, (rid, s, k) in enumerate(zip(ids, scores, num_correct)):
    s = [float(x) for x in s]
    if not 1 <= k < len(s):
      raise InputError(f"{_where(source, i, ids)}: field 'num_correct'={k} must leave at least "
                       f"one correct and one incorrect answer among its {len(s)}")
    correct, incorrect = groups.setdefault(_ties_key(rid, i, source, ids), ([], []))
    correct += s[:k]
    incorrect += s[k:]
  stats = {key: _prompt_stats(c, w) for key, (c, w) in groups.items()}
  ref = {n: v for (kind, n), v in stats.items() if kind == "ref"}
  tied = {n: v for (kind, n), v in stats.items() if kind == "tied"}
  for n, v in tied.items():
    if v[1] is None:
      i = next(j for j, rid in enumerate(ids) if str(rid) == f"tied:{n}")
      raise InputError(f"{_where(source, i, ids)}: a 'tied' prompt needs at least two correct "
                       "answers (field 'num_correct')")
  both = sorted(set(ref) & set(tied))
  spread = np.asarray([tied[n][1] for n in both], np.float64)
  gap_tied = np.asarray([tied[n][2] for n in both], np.float64)
  gap_hard = np.minimum(np.asarray([ref[n][2] for n in both], np.float64), gap_tied)
  mean = lambda x: float(np.mean(x)) if np.size(x) else float("nan")  # noqa: E731
  with np.errstate(divide="ignore", invalid="ignore"):
    margin = np.nan_to_num(np.tanh(gap_hard / spread - 1.0), nan=0.0)
  parts = {"tied_accuracy": mean([v[0] for v in tied.values()]) if tied else 0.0,
           "ref_accuracy": mean([v[0] for v in ref.values()]) if ref else 0.0,
           "correctness_preferred": mean(gap_tied > spread),
           "correctness_preferred_hard": mean(gap_hard > spread),
           "margin": mean(margin)}
  score = float(sum(TIES_WEIGHTS[k] * v for k, v in parts.items()))
  return {**parts, "score": score, "ref_prompts": len(ref), "tied_prompts": len(tied),
          "paired_prompts": len(both)}


def v2_scores(subsets: Sequence[str], ids: Sequence[str], scores: Sequence, num_correct:
              Sequence[int], *, source: str = "") -> dict:
  """RewardBench 2 from each record's scores ([chosen..., rejected...], the chosen first):
  {'subsets': {subset: {'score', 'n'}}, 'ties': the Ties components, 'score', 'missing'}."""
  if not len(subsets) == len(ids) == len(scores) == len(num_correct):
    raise InputError(f"{len(subsets)} subsets, {len(ids)} ids, {len(scores)} score lists and "
                     f"{len(num_correct)} num_correct: need one of each per record")
  check_subsets(subsets, V2_SUBSETS, "RewardBench 2", source=source, ids=ids)
  for i, s in enumerate(scores):
    if len(s) < 2:
      raise InputError(f"{_where(source, i, ids)}: {len(s)} scores; a record needs a chosen and "
                       "at least one rejected answer")
  per, ties = {}, None
  for name in V2_SUBSETS:
    idx = [i for i, s in enumerate(subsets) if s == name]
    if not idx:
      continue
    if name == V2_TIES:
      ties = ties_score([ids[i] for i in idx], [scores[i] for i in idx],
                        [num_correct[i] for i in idx], source=source)
      per[name] = {"score": ties["score"], "n": len(idx)}
    else:
      per[name] = {"score": float(np.mean([v2_result(scores[i]) for i in idx])), "n": len(idx)}
  return {"subsets": per, "ties": ties,
          "score": float(np.mean([v["score"] for v in per.values()])) if per else float("nan"),
          "missing": [s for s in V2_SUBSETS if s not in per]}


# ---------------------------------------------------------------- calibration, length, uncertainty
def preference_probability(r_chosen, r_rejected) -> np.ndarray:
  """sigmoid(r_c - r_r): the Bradley-Terry probability that the chosen response is preferred."""
  d = _vector(r_chosen, "r_chosen") - _vector(r_rejected, "r_rejected")
  return 0.5 * (1.0 + np.tanh(0.5 * d))  # sigmoid without overflow


def reliability(r_chosen, r_rejected, bins: int = 10) -> dict:
  """Calibration of p = sigmoid(r_c - r_r) against the labels (the chosen response is the
  preferred one). The model predicts the chosen response when p > 1/2 with confidence
  max(p, 1 - p) (a tie, p = 1/2, is a wrong prediction, as in accuracy); `bins` equal-width
  confidence bins over [1/2, 1]. Returns 'ece' (the bins' |accuracy - mean confidence| weighted
  by their share of pairs) and per bin {'lo', 'hi', 'n', 'confidence', 'accuracy'} (None where
  empty)."""
  p = preference_probability(r_chosen, r_rejected)
  conf = np.maximum(p, 1.0 - p)
  correct = (p > 0.5).astype(np.float64)
  edges = np.linspace(0.5, 1.0, bins + 1)
  which = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, bins - 1)
  out, ece = [], 0.0
  for b in range(bins):
    m = which == b
    n = int(m.sum())
    row = {"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": n,
           "confidence": float(conf[m].mean()) if n else None,
           "accuracy": float(correct[m].mean()) if n else None}
    if n:
      ece += n / conf.size * abs(row["accuracy"] - row["confidence"])
    out.append(row)
  return {"ece": float(ece), "bins": out}


def length_bias(r_chosen, r_rejected, len_chosen, len_rejected) -> dict:
  """Accuracy where the chosen response is longer, shorter or as long as the rejected one
  ('longer', 'shorter', 'equal': {'accuracy', 'n'}), their difference 'gap' (longer - shorter:
  positive = the model does better when the preferred answer is the longer one), and over pairs
  of unequal lengths how often the model rewards the longer response higher
  ('model_prefers_longer') against how often the labels prefer it ('labels_prefer_longer')."""
  right = pair_results(r_chosen, r_rejected)
  lc, lr = np.asarray(len_chosen), np.asarray(len_rejected)
  rc, rr = _vector(r_chosen, "r_chosen"), _vector(r_rejected, "r_rejected")
  groups = {"longer": lc > lr, "shorter": lc < lr, "equal": lc == lr}
  out = {k: {"accuracy": float(right[m].mean()) if m.any() else None, "n": int(m.sum())}
         for k, m in groups.items()}
  a, b = out["longer"]["accuracy"], out["shorter"]["accuracy"]
  out["gap"] = a - b if a is not None and b is not None else None
  unequal = lc != lr
  longer_wins = np.where(lc > lr, rc > rr, rr > rc)[unequal]
  out["model_prefers_longer"] = float(longer_wins.mean()) if unequal.any() else None
  out["labels_prefer_longer"] = float((lc > lr)[unequal].mean()) if unequal.any() else None
  return out


def pair_metrics(r_chosen, r_rejected, len_chosen, len_rejected, bins: int = 10) -> dict:
  """Accuracy, calibration (`reliability`) and length bias (`length_bias`) of one reward model on
  one set of preference pairs."""
  rel = reliability(r_chosen, r_rejected, bins)
  return {"n": int(np.size(r_chosen)), "accuracy": float(pair_results(r_chosen, r_rejected).mean()),
          "ece": rel["ece"], "reliability": rel["bins"],
          "length": length_bias(r_chosen, r_rejected, len_chosen, len_rejected)}


def auroc(scores, positive) -> float:
  """Area under the ROC curve of `scores` for telling the `positive` items from the others: the
  probability that a positive item scores higher than a negative one (ties count one half);
  nan when either class is empty."""
  s, y = np.asarray(scores, np.float64), np.asarray(positive, bool)
  pos, neg = s[y], s[~y]
  if not pos.size or not neg.size:
    return float("nan")
  order = np.sort(neg)
  below = np.searchsorted(order, pos, side="left")
  equal = np.searchsorted(order, pos, side="right") - below
  return float((below.sum() + 0.5 * equal.sum()) / (pos.size * neg.size))


def ensemble_rewards(member_rewards) -> np.ndarray:
  """ENS's reward of each response: the mean over the members ([M, N] -> [N]), the prediction
  `scoring.load_ensemble` returns (float64 here)."""
  r = np.asarray(member_rewards, np.float64)
  if r.ndim != 2 or r.shape[0] < 2:
    raise InputError(f"an ensemble needs the rewards of two or more members [M, N], got {r.shape}")
  return r.mean(axis=0)


def uncertainty(member_chosen, member_rejected, bins: int = 5) -> dict:
  """ENS variance as an uncertainty signal: the variance across members of each pair's margin
  r_c - r_r ([M, N] rewards of the chosen and of the rejected responses), against ENS's errors
  (mean margin <= 0). 'auroc_variance': how well the variance ranks errors above correct pairs
  (0.5 = no signal); 'auroc_margin': the same for -|mean margin| (the confidence ENS already
  has), the baseline the variance must beat to add information; 'bins': the error rate in
  `bins` equal-count bins of increasing variance."""
  c, r = np.asarray(member_chosen, np.float64), np.asarray(member_rejected, np.float64)
  if c.shape != r.shape or c.ndim != 2 or c.shape[0] < 2:
    raise InputError(f"member rewards of shapes {c.shape} and {r.shape}: need [M >= 2, N] each")
  margins = c - r
  var, mean = margins.var(axis=0), margins.mean(axis=0)
  error = ~(mean > 0)
  order = np.argsort(var, kind="stable")
  rows = []
  for chunk in np.array_split(order, min(bins, var.size)):
    rows.append({"variance_lo": float(var[chunk].min()), "variance_hi": float(var[chunk].max()),
                 "n": int(chunk.size), "error_rate": float(error[chunk].mean())})
  return {"n": int(var.size), "error_rate": float(error.mean()), "mean_variance": float(var.mean()),
          "auroc_variance": auroc(var, error), "auroc_margin": auroc(-np.abs(mean), error),
          "bins": rows}


def word_lengths(texts: Sequence[str]) -> np.ndarray:
  """Whitespace-separated words of each text: the length measure of `length_bias`, the same for
  every tokenizer."""
  return np.asarray([len(t.split()) for t in texts], np.int64)
