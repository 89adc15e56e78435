"""RLP-UML's multi-view information bottleneck (Federici et al. 2020, as RLP uses it): a stochastic
encoder of reward-model features and the critic of a Jensen-Shannon mutual-information estimate.
`warm_jax.losses.mib_loss` turns its outputs into the loss; `warm_jax.train.rlp` trains it next to
the reward model."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array


def _mlp(sizes: tuple[int, ...], name: str) -> nn.Sequential:
  """Dense layers with SiLU between them (none after the last); float32, replicated except the
  first kernel, whose input axis is the model's 'embed' when it reads reward-model features."""
  layers = []
  for i, n in enumerate(sizes):
    axes = ("embed" if i == 0 and name == "encoder" else None, None)
    layers.append(nn.Dense(n, dtype=jnp.float32, name=f"{name}_{i}",
                           kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), axes),
                           bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (None,))))
    if i < len(sizes) - 1:
      layers.append(nn.silu)
  return nn.Sequential(layers)


class MultiViewBottleneck(nn.Module):
  """RLP-UML's stochastic encoder p(z | v) = N(mu, diag sigma^2) (a 3-layer MLP on reward-model
  features, sigma = softplus + 1e-7 as in Federici et al.) and the critic T(z1, z2) of the
  Jensen-Shannon MI estimate (a 3-layer MLP on the concatenated codes).

  `__call__(h1, h2, rng)` encodes both views ([B, d] each), draws z1, z2 by reparameterisation and
  scores matched pairs (z1_i, z2_i) and mismatched ones (z1_i, z2_{i-1}: the batch rolled by one,
  so B >= 2); returns the pieces `warm_jax.losses.mib_loss` takes."""
  z_dim: int
  hidden: int
  standardize: bool = False  # encode (h - batch mean) / batch std: what the views share stands out

  def setup(self):
    self.encoder = _mlp((self.hidden, self.hidden, 2 * self.z_dim), "encoder")
    self.critic = _mlp((self.hidden, self.hidden, 1), "critic")

  def encode(self, h: Array) -> tuple[Array, Array]:
    mu, raw = jnp.split(self.encoder(h.astype(jnp.float32)), 2, axis=-1)
    return mu, jax.nn.softplus(raw) + 1e-7

  def __call__(self, h1: Array, h2: Array, rng: jax.Array) -> dict[str, Array]:
    if self.standardize:
      h1, h2 = standardized(h1, h2)
    (mu1, s1), (mu2, s2) = self.encode(h1), self.encode(h2)
    k1, k2 = jax.random.split(rng)
    z1 = mu1 + s1 * jax.random.normal(k1, mu1.shape)
    z2 = mu2 + s2 * jax.random.normal(k2, mu2.shape)
    t_pos = self.critic(jnp.concatenate([z1, z2], axis=-1))[:, 0]
    t_neg = self.critic(jnp.concatenate([z1, jnp.roll(z2, 1, axis=0)], axis=-1))[:, 0]
    return {"t_pos": t_pos, "t_neg": t_neg, "mu_1": mu1, "sigma_1": s1, "mu_2": mu2, "sigma_2": s2}


def standardized(h1: Array, h2: Array, eps: float = 1e-6) -> tuple[Array, Array]:
  """Both views' features standardised per feature with the mean and standard deviation of the
  whole batch of both views (held constant for the gradient). A reward model's last-token states
  are nearly the same for every post at first (cosine 0.95 and more): what varies between posts,
  which is what two views of one post can share, is a small part of each vector until the common
  part is taken out."""
  both = jnp.concatenate([h1, h2], axis=0).astype(jnp.float32)
  mean = jax.lax.stop_gradient(jnp.mean(both, axis=0))
  std = jax.lax.stop_gradient(jnp.std(both, axis=0))
  return (h1 - mean) / (std + eps), (h2 - mean) / (std + eps)
