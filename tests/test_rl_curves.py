"""RL curves and the points the reports quote: start and end from the evaluation rows, the peak
of the smoothed training curve at the logged step at its window's centre."""

import json

import pytest

from warm_jax.studies import rl_curves


def _run(tmp_path, gold, evals):
  rows = [{"step": 5 * (i + 1), "split": "train", "reward/gold": g, "reward/proxy": 0.1 * i,
           "kl": 0.5 * i, "response_length": 10.0 + i} for i, g in enumerate(gold)]
  rows += [{"step": s, "split": "validation", "reward/gold": g, "reward/proxy": -g, "kl": s / 10,
            "response_length": 12.0} for s, g in evals]
  with open(tmp_path / "metrics.jsonl", "w") as f:
    f.write("\n".join(json.dumps(r) for r in rows) + "\n")
  return str(tmp_path)


def test_start_and_end_are_the_evaluations_and_the_peak_is_smoothed(tmp_path):
  # Logged steps 5..40; a lone spike at step 10 and a broad hump around step 30.
  gold = [0.50, 0.95, 0.50, 0.60, 0.80, 0.85, 0.80, 0.55]
  c = rl_curves.curves(_run(tmp_path, gold, [(0, 0.40), (20, 0.70), (40, 0.45)]), smooth=3)
  k = rl_curves.key_points(c)
  assert (k["start_step"], k["gold_start"]) == (0, 0.40)  # the initial policy, not a mean of 5..15
  assert (k["end_step"], k["gold_end"], k["kl_end"]) == (40, 0.45, 4.0)
  # Windows of 3: means 0.65, 0.683, 0.633, 0.75, 0.817, 0.733: the hump wins, not the spike,
  # and its step is a logged one (the window 25-30-35 is centred on 30), not a truncated mean.
  assert k["peak_step"] == 30 and k["gold_peak"] == pytest.approx((0.80 + 0.85 + 0.80) / 3)
  assert k["peak_window"] == 3 and k["peak_kl"] == pytest.approx(2.5)


def test_without_evaluation_rows_the_ends_are_the_logged_ones(tmp_path):
  c = rl_curves.curves(_run(tmp_path, [0.5, 0.6, 0.7], []), smooth=1)
  k = rl_curves.key_points(c)
  assert (k["start_step"], k["gold_start"], k["end_step"], k["gold_end"]) == (5, 0.5, 15, 0.7)
  assert k["peak_step"] == 15 and k["peak_window"] == 1
