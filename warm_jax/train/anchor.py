"""The KL anchor of RL and DPO: the fixed initial policy, or an exponential moving average of the
policy (WARP's EMA anchor, Ramé et al. 2024, arXiv 2406.16768).

    config.rl.anchor = 'ema'        # or config.dpo.anchor; absent or 'init': the fixed reference
    config.rl.ema_rate = 0.01       # mu: anchor <- (1 - mu) anchor + mu policy after every update

With 'ema' the anchor lives in the train state, as the last part of the optimizer's state
(`ema_transform`, chained after the optimizer by `with_ema`): it starts as the initial params,
is updated after every optimizer update (`averaging.merges.ema` of the updated params), and is
checkpointed and restored with the optimizer state, so a resumed run has exactly the anchor of an
uninterrupted one; a non-finite step leaves it unchanged with the rest of the state
(`state.guard_nonfinite`). Its parameters carry the params' logical axis names, so they are
sharded like them. `params(state)` reads it. Keeping it in the optimizer state (as Paxml's EMA
does) leaves the train state, the checkpoint layout and every run with the default anchor exactly
as they were. The fields are read with `.get`, so configs without them mean 'init'.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import ml_collections
import optax

from warm_jax import configs
from warm_jax.averaging import merges
from warm_jax.averaging.tree import _acc_dtype
from warm_jax.train import state as state_lib

ANCHORS = ("init", "ema")
DEFAULT_RATE = 0.01  # WARP's mu


class EmaState(NamedTuple):
  """The EMA anchor's parameters (the optimizer state of `ema_transform`)."""
  ema: Any


def ema_transform(rate: float) -> optax.GradientTransformation:
  """Leaves the updates as they are; keeps (1 - rate) * ema + rate * (params + updates) in its
  state (float32 or wider), starting from the params it is initialised with."""
  merges.check_rate(rate, "ema_rate")

  def init(params):
    return EmaState(jax.tree.map(lambda p: p.astype(_acc_dtype(p.dtype)), params))

  def update(updates, state, params=None):
    if params is None:
      raise ValueError("the EMA anchor needs the params: call tx.update(grads, state, params)")
    return updates, EmaState(merges.ema(state.ema, optax.apply_updates(params, updates), rate))

  return optax.GradientTransformation(init, update)


def kind(section: ml_collections.ConfigDict) -> str:
  """config.<section>.anchor ('init' when absent)."""
  return section.get("anchor", "init")


def rate(section: ml_collections.ConfigDict) -> float:
  """config.<section>.ema_rate (DEFAULT_RATE when absent)."""
  return section.get("ema_rate", DEFAULT_RATE)


def rules(section: str) -> tuple:
  """The rules of config.<section>.anchor and .ema_rate (both optional)."""
  return (configs.choice(f"{section}.anchor", ANCHORS, optional=True),
          configs.number(f"{section}.ema_rate", 0.0, 1.0, lo_open=True, optional=True,
                         must="in (0, 1] (the EMA anchor's update rate mu)"))


def with_ema(setup, section: ml_collections.ConfigDict):
  """`setup` (a loop.Setup) with the EMA anchor chained after its optimizer when
  config.<section>.anchor is 'ema' (the state's shardings recomputed); else `setup` itself."""
  if kind(section) != "ema":
    return setup
  tx = optax.chain(setup.tx, ema_transform(rate(section)))
  return dataclasses.replace(setup, tx=tx, shardings=state_lib.state_shardings(
      setup.init_params, tx, setup.mesh, setup.rules))


def params(state) -> Any:
  """The EMA anchor's params in a train state whose optimizer was made by `with_ema`."""
  for part in state.opt_state if isinstance(state.opt_state, tuple) else ():
    if isinstance(part, EmaState):
      return part.ema
  raise ValueError("this train state holds no EMA anchor (config anchor='ema' builds one)")
