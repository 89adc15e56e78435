import math

import jax.numpy as jnp
import numpy as np

from warm_jax import losses


def test_bradley_terry_hand_computed():
  rc, rr = jnp.array([2.0, 0.0, -1.0]), jnp.array([1.0, 0.0, 1.0])
  expected = [-math.log(1 / (1 + math.exp(-1))), math.log(2), -math.log(1 / (1 + math.exp(2)))]
  np.testing.assert_allclose(losses.bradley_terry_loss(rc, rr), expected, rtol=1e-6)


def test_label_smoothing_mixes_both_directions():
  rc, rr = jnp.array([3.0]), jnp.array([1.0])
  eps = 0.1
  d = 2.0
  expected = -(1 - eps) * math.log(1 / (1 + math.exp(-d))) - eps * math.log(1 / (1 + math.exp(d)))
  np.testing.assert_allclose(losses.bradley_terry_loss(rc, rr, eps), [expected], rtol=1e-6)
  # Smoothing makes a huge margin cost something: the loss no longer goes to zero.
  assert float(losses.bradley_terry_loss(jnp.array([50.0]), jnp.array([0.0]), 0.1)[0]) > 4.0


def test_accuracy_counts_ties_as_wrong_and_margin():
  rc, rr = jnp.array([1.0, 0.5, 0.0]), jnp.array([0.0, 0.5, 1.0])
  np.testing.assert_array_equal(losses.preference_accuracy(rc, rr), [1.0, 0.0, 0.0])
  np.testing.assert_allclose(losses.reward_margin(rc, rr), [1.0, 0.0, -1.0])
