"""Gold-judged comparisons: win rates, pairwise accuracy."""

import numpy as np
import pytest

from warm_jax import evaluation


def test_win_rate_counts_ties_as_half():
  assert evaluation.win_rate([1, 2, 3, 4], [0, 2, 5, 1]) == pytest.approx((1 + 0.5 + 0 + 1) / 4)
  with pytest.raises(ValueError, match="one shape"):
    evaluation.win_rate([1, 2], [1])


def test_pair_accuracy_counts_ties_as_wrong():
  assert evaluation.pair_accuracy([1.0, 2.0, 3.0], [0.0, 2.0, 4.0]) == pytest.approx(1 / 3)
  with pytest.raises(ValueError, match="non-empty"):
    evaluation.pair_accuracy([], [])


def test_gold_fn_is_the_embedded_gold_total_and_bad_judges_are_named():
  import ml_collections

  from warm_jax import configs
  from warm_jax.data import embedded
  config = ml_collections.ConfigDict(dict(data=configs.embedded_data_config(),
                                          gold=dict(kind="embedded", path="")))
  prompt = "my friend tom moved to oslo last year . he works as a chef ."
  responses = ["tldr : tom moved to oslo and works as a chef .", "tldr : tom ."]
  np.testing.assert_allclose(evaluation.gold_fn(config)([prompt] * 2, responses),
                             [embedded.gold_total(prompt, r, config.data.task) for r in responses],
                             rtol=1e-6)
  config.gold.kind = "oracle"
  with pytest.raises(ValueError, match="gold.kind='oracle'"):
    evaluation.gold_fn(config)
  config.gold.kind = "rm"
  with pytest.raises(ValueError, match="config.gold.path='': must be a reward-model run"):
    evaluation.validate_gold(config)
  config.gold.kind, config.data.name = "embedded", "hh_rlhf"
  with pytest.raises(ValueError, match="config.gold.kind='embedded'.*embedded task"):
    evaluation.validate_gold(config)


def test_win_rate_stderr_counts_ties_as_half_scores():
  # All ties: a win rate of exactly 1/2, no spread (the binomial formula would say 0.5 / sqrt(n)).
  assert evaluation.win_rate_stderr([1, 1, 1, 1], [1, 1, 1, 1]) == 0.0
  a, b = np.array([1.0, 0.0, 1.0, 0.5]), np.array([0.0, 1.0, 1.0, 0.5])
  scores = np.array([1.0, 0.0, 0.5, 0.5])
  assert evaluation.win_rate_stderr(a, b) == pytest.approx(scores.std(ddof=1) / 2)
  assert evaluation.win_rate_stderr(a, b) < np.sqrt(0.5 * 0.5 / 4)
