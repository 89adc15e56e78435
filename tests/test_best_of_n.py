"""Best-of-N in one place: selection, the KL bound, the kept values per group, the curves."""

import numpy as np
import pytest

from warm_jax import best_of_n


def test_select_keeps_each_prompts_argmax():
  kept, idx = best_of_n.select([["a", "b", "c"], ["d", "e", "f"]], np.array([[0, 2, 1], [5, 1, 0]]))
  assert kept == ["b", "d"] and idx.tolist() == [1, 0]
  with pytest.raises(ValueError, match="does not match"):
    best_of_n.select([["a", "b"]], np.zeros((1, 3)))


def test_kl_bound():
  assert best_of_n.kl_bound(1) == 0.0
  np.testing.assert_allclose(best_of_n.kl_bound(4), np.log(4) - 0.75)


def test_kept_takes_each_groups_argmax():
  scores = np.array([[0.0, 1.0, 3.0, 2.0], [5.0, 4.0, 0.0, 1.0]])
  gold = np.array([[10, 11, 12, 13], [20, 21, 22, 23]], np.float64)
  np.testing.assert_array_equal(best_of_n.kept(scores, gold, 1), gold)
  np.testing.assert_array_equal(best_of_n.kept(scores, gold, 2), [[11, 12], [20, 23]])
  np.testing.assert_array_equal(best_of_n.kept(scores, gold, 4), [[12], [20]])
  with pytest.raises(ValueError, match="divide"):
    best_of_n.kept(scores, gold, 3)
  with pytest.raises(ValueError, match="shape"):
    best_of_n.kept(scores, gold[:, :2], 2)


def test_curve_rows_and_win_rate_against_a_reference():
  scores = np.array([[0.0, 1.0, 3.0, 2.0]])
  gold = np.array([[10.0, 11.0, 13.0, 12.0]])
  rows = best_of_n.curve(scores, gold, (1, 2, 4))
  assert [r["gold"] for r in rows] == [11.5, 12.0, 13.0]  # N=2: groups (0,1)->11, (3,2)->13
  assert [r["score"] for r in rows] == [1.5, 2.0, 3.0]
  assert rows[2]["kl_bound"] == pytest.approx(np.log(4) - 3 / 4)
  # Against a reference that picks the worst of each group: at N=4, 13 beats 10.
  worst = -scores
  rows = best_of_n.curve(scores, gold, (1, 4), reference=worst, reference_name="worst")
  assert rows[0]["win_rate_vs_worst"] == 0.5  # N = 1: the same samples, all ties
  assert rows[1]["win_rate_vs_worst"] == 1.0
