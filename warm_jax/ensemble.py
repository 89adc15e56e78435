"""ENS, the prediction-ensembling baseline of WARM: the mean of M reward models' predictions.

    rewards = ensemble.ensemble_rewards(model, [p1, p2, p3], tokens)             # [B]
    mean, var = ensemble.ensemble_rewards(model, members, tokens, return_variance=True)

ENS costs M forward passes (and M models in memory) per batch, where WARM (the weight average,
`warm_jax.averaging`) costs one. The variance across members (population variance, ddof=0) is a
disagreement-based uncertainty estimate, used by active queries. ENS averages raw rewards; the
ENS of members standardised by their own stored statistics is `reward_norm.normalized_ensemble`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from warm_jax import averaging


def member_rewards(model: nn.Module, members: Sequence[Any], tokens: jax.Array,
                   mask: jax.Array | None = None) -> jax.Array:
  """Rewards of each member: [M, B] (float32), one forward pass per member."""
  return jnp.stack([model.apply({"params": p}, tokens, mask).astype(jnp.float32)
                    for p in members])


def ensemble_rewards(model: nn.Module, members: Sequence[Any], tokens: jax.Array,
                     mask: jax.Array | None = None, return_variance: bool = False):
  """Mean reward over the members ([B]); with `return_variance`, (mean, variance across members)."""
  r = member_rewards(model, members, tokens, mask)
  mean = jnp.mean(r, axis=0)
  if return_variance:
    return mean, jnp.mean(jnp.square(r - mean[None]), axis=0)
  return mean


def check_members(members: Sequence[Any]) -> None:
  """Members must share parameter paths, shapes and dtypes (one model definition applies to all)."""
  if not members:
    raise ValueError("an ensemble needs at least one member")
  for i in range(1, len(members)):
    why = averaging.tree_mismatch(members[0], members[i], ("member 0", f"member {i}"))
    if why:
      raise ValueError(f"ensemble member {i} does not match member 0: {why}")


def make_ensemble_fn(model: nn.Module, return_variance: bool = False, rules=(),
                     in_shardings=None, out_shardings=None) -> Callable:
  """jit of (members tuple, tokens, mask=None) -> mean rewards [B] (or (mean, var)); the
  logical-axis `rules` are active while tracing so activation constraints resolve to mesh axes."""
  def fn(members, tokens, mask=None):
    with nn.logical_axis_rules(tuple(rules)):
      return ensemble_rewards(model, members, tokens, mask, return_variance=return_variance)
  kwargs = {}
  if in_shardings is not None:
    kwargs["in_shardings"] = in_shardings
  if out_shardings is not None:
    kwargs["out_shardings"] = out_shardings
  return jax.jit(fn, **kwargs)


class Ensemble:
  """A reward function over token batches that averages M members' predictions."""

  def __init__(self, model: nn.Module, members: Sequence[Any], rules=()):
    members = tuple(members)
    check_members(members)
    self.model, self.members = model, members
    self._fns = {v: make_ensemble_fn(model, v, rules) for v in (False, True)}

  def __len__(self) -> int:
    return len(self.members)

  def __call__(self, tokens: jax.Array, return_variance: bool = False, mask: jax.Array | None = None):
    return self._fns[bool(return_variance)](self.members, tokens, mask)
