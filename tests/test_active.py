"""Active preference queries: the disagreement score and the selection rule on hand-computed cases."""

import numpy as np
import pytest

from warm_jax import active


def test_disagreement_is_the_variance_of_member_preference_probabilities():
  # Two members, three pairs. Pair 0: both give r_a - r_b = 0 (P = 0.5 each): no disagreement.
  # Pair 1: differences +ln 3 and -ln 3 (P = 0.75 and 0.25): variance 0.0625.
  # Pair 2: differences +ln 3 and 0 (P = 0.75 and 0.5): variance 0.015625.
  ln3 = np.log(3.0)
  r_a = np.array([[1.0, ln3, ln3], [2.0, 0.0, 0.0]])
  r_b = np.array([[1.0, 0.0, 0.0], [2.0, ln3, 0.0]])
  np.testing.assert_allclose(active.preference_probabilities(r_a, r_b),
                             [[0.5, 0.75, 0.75], [0.5, 0.25, 0.5]], rtol=1e-12)
  np.testing.assert_allclose(active.disagreement(r_a, r_b), [0.0, 0.0625, 0.015625], rtol=1e-12)
  with pytest.raises(ValueError, match=r"\[M, N\]"):
    active.disagreement(np.zeros(3), np.zeros(3))


def test_disagreement_selection_takes_the_highest_unlabelled_scores():
  scores = np.array([0.9, 0.1, 0.5, 0.5, 0.8, 0.0])
  labelled = np.array([True, False, False, False, False, False])
  # 0 is labelled already; then 4 (0.8), and the tie 2/3 (0.5) goes to the lower index.
  np.testing.assert_array_equal(active.select_queries(scores, 2, labelled, "disagreement", 0), [2, 4])
  np.testing.assert_array_equal(active.select_queries(scores, 3, labelled, "disagreement", 0),
                                [2, 3, 4])


def test_random_selection_is_uniform_over_unlabelled_and_seeded():
  labelled = np.zeros(10, bool)
  labelled[:4] = True
  counts = np.zeros(10)
  for seed in range(2000):
    pick = active.select_queries(None, 3, labelled, "random", seed)
    assert len(set(pick)) == 3 and not labelled[pick].any()
    counts[pick] += 1
  assert counts[:4].sum() == 0
  np.testing.assert_allclose(counts[4:] / 2000, 0.5, atol=0.05)  # 3 of 6: each picked half the time
  np.testing.assert_array_equal(active.select_queries(None, 3, labelled, "random", 7),
                                active.select_queries(None, 3, labelled, "random", 7))


def test_selection_bad_input():
  labelled = np.array([True, False])
  with pytest.raises(ValueError, match="k=2"):
    active.select_queries(np.zeros(2), 2, labelled, "disagreement", 0)
  with pytest.raises(ValueError, match="strategy='margin'"):
    active.select_queries(np.zeros(2), 1, labelled, "margin", 0)
  with pytest.raises(ValueError, match="scores of shape"):
    active.select_queries(np.zeros(3), 1, labelled, "disagreement", 0)


def test_bootstrap_and_labels_to_reach():
  idx = np.array([3, 8, 11, 20])
  b = active.bootstrap(idx, seed=1)
  assert len(b) == 4 and set(b) <= set(idx)
  assert any(len(set(active.bootstrap(idx, seed=s))) < 4 for s in range(20))  # with replacement
  with pytest.raises(ValueError, match="empty"):
    active.bootstrap(np.array([], int), 0)
  curve = {128: 0.6, 256: 0.7, 512: 0.68, 1024: 0.75}
  assert active.labels_to_reach(curve, 0.7) == 256
  assert active.labels_to_reach(curve, 0.74) == 1024
  assert active.labels_to_reach(curve, 0.8) is None
