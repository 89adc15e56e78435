import math

import jax
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


# ---------------------------------------------------------------- multi-view information bottleneck

def test_gaussian_kl_hand_computed_and_symmetrised():
  # p = N(0, 1), q = N(1, 2^2): KL(p||q) = log 2 + (1 + 1) / 8 - 1/2; KL(q||p) = -log 2 + (4 + 1) / 2 - 1/2.
  kl_pq, kl_qp = math.log(2) + 0.25 - 0.5, -math.log(2) + 2.5 - 0.5
  one = lambda *v: jnp.array([v])  # noqa: E731  [1, D]
  np.testing.assert_allclose(losses.gaussian_kl(one(0.0), one(1.0), one(1.0), one(2.0)), [kl_pq],
                             rtol=1e-6)
  np.testing.assert_allclose(losses.gaussian_kl(one(1.0), one(2.0), one(0.0), one(1.0)), [kl_qp],
                             rtol=1e-6)
  # Summed over dimensions: an identical second dimension adds nothing.
  np.testing.assert_allclose(
      losses.symmetric_gaussian_kl(one(0.0, 3.0), one(1.0, 0.5), one(1.0, 3.0), one(2.0, 0.5)),
      [(kl_pq + kl_qp) / 2], rtol=1e-6)
  assert float(losses.gaussian_kl(one(0.3), one(0.7), one(0.3), one(0.7))[0]) == 0.0


def test_jsd_mutual_information_and_mib_loss_hand_computed():
  sp = lambda x: math.log1p(math.exp(x))  # noqa: E731  softplus
  t_pos, t_neg = jnp.array([0.0, 2.0]), jnp.array([0.0, -1.0])
  jsd = [-2 * math.log(2), -sp(-2.0) - sp(-1.0)]
  np.testing.assert_allclose(losses.jsd_mutual_information(t_pos, t_neg), jsd, rtol=1e-6)
  mu1, s1 = jnp.zeros((2, 1)), jnp.ones((2, 1))
  mu2, s2 = jnp.ones((2, 1)), 2 * jnp.ones((2, 1))
  skl = (math.log(2) + 0.25 - 0.5 - math.log(2) + 2.5 - 0.5) / 2
  np.testing.assert_allclose(losses.mib_loss(t_pos, t_neg, mu1, s1, mu2, s2, beta=0.5),
                             [-jsd[0] + 0.5 * skl, -jsd[1] + 0.5 * skl], rtol=1e-6)
  # A critic that separates matched from mismatched codes raises the MI estimate towards 0.
  assert float(losses.jsd_mutual_information(jnp.array([9.0]), jnp.array([-9.0]))[0]) > -1e-3


def test_modpo_loss_on_the_standardised_scale():
  # policy == reference: h = 0; the loss is -log sigmoid(-margin / weight).
  z = jnp.zeros(3)
  margin = jnp.array([0.5, -1.0, 2.0])
  plain = losses.modpo_loss(z, z, z, z, beta=0.1, weight=0.5, margin=margin)
  np.testing.assert_allclose(plain, -jax.nn.log_sigmoid(-margin / 0.5), rtol=1e-6)
  # On MORL's scale the data objective's reward is divided by its standard deviation s_k: the
  # loss divides by w_k / s_k, i.e. multiplies (beta h - margin) by s_k / w_k.
  pc = jnp.array([-1.0, -2.0, -3.0])
  scaled = losses.modpo_loss(pc, z, z, z, beta=0.1, weight=0.5 / 2.0, margin=margin)
  np.testing.assert_allclose(scaled, -jax.nn.log_sigmoid(2.0 / 0.5 * (0.1 * pc - margin)), rtol=1e-6)


def test_dpo_uses_modpo_weight_over_its_scale():
  import ml_collections

  from warm_jax.train import dpo
  d = ml_collections.ConfigDict(dict(modpo_weight=0.75))
  assert dpo.modpo_weight(d) == 0.75  # configs without a scale: as before
  d.modpo_scale = 0.5
  assert dpo.modpo_weight(d) == 1.5
