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
