"""Pure loss functions: arrays in, arrays out. Per-example values; callers take the mean.

Bradley-Terry reward learning (Christiano et al. 2017): P(chosen > rejected) = sigmoid(r_c - r_r).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def bradley_terry_loss(r_chosen: Array, r_rejected: Array, label_smoothing: float = 0.0) -> Array:
  """-log P(chosen > rejected), with the label smoothed towards 1/2 by `label_smoothing`.

  With smoothing eps the target is (1 - eps) on "chosen wins" and eps on "rejected wins":
  loss = -(1 - eps) log sigmoid(d) - eps log sigmoid(-d), d = r_chosen - r_rejected.
  """
  d = (r_chosen - r_rejected).astype(jnp.float32)
  return -(1.0 - label_smoothing) * jax.nn.log_sigmoid(d) - label_smoothing * jax.nn.log_sigmoid(-d)


def preference_accuracy(r_chosen: Array, r_rejected: Array) -> Array:
  """1 where the chosen response gets the strictly higher reward, else 0 (ties count as wrong)."""
  return (r_chosen > r_rejected).astype(jnp.float32)


def reward_margin(r_chosen: Array, r_rejected: Array) -> Array:
  return (r_chosen - r_rejected).astype(jnp.float32)


# ---------------------------------------------------------------- DPO / IPO
# Direct preference optimisation (Rafailov et al. 2023, arXiv 2305.18290) and IPO (Azar et al.
# 2023, arXiv 2310.12036) act on the policy's and a frozen reference policy's log-probabilities of
# the chosen and rejected responses (one scalar per example each; summed over response tokens, or
# averaged, as the caller decides). h = [log pi(y_c) - log pi_ref(y_c)] - [log pi(y_r) - log pi_ref(y_r)].


def _logratio_margin(policy_chosen_logp: Array, policy_rejected_logp: Array,
                     ref_chosen_logp: Array, ref_rejected_logp: Array) -> Array:
  c = policy_chosen_logp.astype(jnp.float32) - ref_chosen_logp.astype(jnp.float32)
  r = policy_rejected_logp.astype(jnp.float32) - ref_rejected_logp.astype(jnp.float32)
  return c - r


def dpo_loss(policy_chosen_logp: Array, policy_rejected_logp: Array, ref_chosen_logp: Array,
             ref_rejected_logp: Array, beta: float, label_smoothing: float = 0.0) -> Array:
  """DPO loss -log sigmoid(beta * h) per example; with `label_smoothing` eps > 0 the conservative
  DPO (cDPO) variant, which assumes a fraction eps of the labels is flipped:
  -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h). Equals log 2 when policy == reference."""
  h = _logratio_margin(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp, ref_rejected_logp)
  return bradley_terry_loss(beta * h, jnp.zeros_like(h), label_smoothing)


def ipo_loss(policy_chosen_logp: Array, policy_rejected_logp: Array, ref_chosen_logp: Array,
             ref_rejected_logp: Array, beta: float) -> Array:
  """IPO loss (h - 1 / (2 beta))^2 per example: regresses the log-ratio margin h onto 1 / (2 beta)
  (beta plays the role of the paper's tau) instead of pushing it to infinity as DPO can."""
  h = _logratio_margin(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp, ref_rejected_logp)
  return (h - 1.0 / (2.0 * beta)) ** 2


def implicit_rewards(policy_logp: Array, ref_logp: Array, beta: float) -> Array:
  """DPO's implicit reward beta * (log pi(y|x) - log pi_ref(y|x)) (up to a per-prompt constant)."""
  return beta * (policy_logp.astype(jnp.float32) - ref_logp.astype(jnp.float32))
