"""Train state, optimizer and sharded initialisation shared by every trainer.

A train step is a pure function `step(state, batch) -> (state, metrics)`; `jit_step` compiles it
once with explicit in/out shardings (pjit) and donates the old state.
"""

from __future__ import annotations

from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

from warm_jax import sharding as shd


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


def learning_rate_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """Linear warmup to cfg.lr, then cosine decay to cfg.lr * cfg.end_lr_fraction at total_steps."""
  warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=cfg.lr, warmup_steps=warmup,
      decay_steps=max(total_steps, warmup + 1), end_value=cfg.lr * cfg.end_lr_fraction)


def _decay_mask(params):
  """Weight decay on matrices only (not on norm scales or biases)."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
  """Global-norm gradient clipping, then AdamW (the default) or, with cfg.name='rmsprop', RMSprop
  in PyTorch's form (eps outside the square root, no bias correction: the DPO paper's), on the
  warmup + cosine schedule (end_lr_fraction=1 gives warmup-then-constant)."""
  parts = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm else []
  schedule = learning_rate_schedule(cfg, total_steps)
  if cfg.get("name", "adamw") == "rmsprop":
    parts.append(optax.rmsprop(schedule, decay=cfg.rmsprop_decay, eps=cfg.eps, eps_in_sqrt=False))
  else:
    parts.append(optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                             weight_decay=cfg.weight_decay, mask=_decay_mask))
  return named(optax.chain(*parts), "optimizer")


def named(tx: optax.GradientTransformation, name: str) -> optax.GradientTransformation:
  """`tx` with its init and update traced under jax.named_scope(name), so that profiles tell its
  operations from the model's; the state and the updates are tx's own."""
  def init(params):
    with jax.named_scope(name):
      return tx.init(params)

  def update(updates, state, params=None):
    with jax.named_scope(name):
      return tx.update(updates, state, params)
  return optax.GradientTransformation(init, update)


def abstract_boxed_state(init_params: Callable[[jax.Array], Any], tx: optax.GradientTransformation):
  """The shape/dtype tree of the train state, with parameters still boxed in nn.Partitioned."""
  def init(rng):
    params = init_params(rng)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))
  return jax.eval_shape(init, jax.random.key(0))


def state_shardings(init_params: Callable[[jax.Array], Any], tx: optax.GradientTransformation,
                    mesh: Mesh, rules) -> TrainState:
  """NamedShardings of the (unboxed) train state, derived from the logical names of the params."""
  return shd.tree_shardings(abstract_boxed_state(init_params, tx), mesh, rules)


def create_state(init_params: Callable[[jax.Array], Any], tx: optax.GradientTransformation,
                 rng: jax.Array, shardings: TrainState,
                 params: Any | None = None) -> TrainState:
  """Initialises the train state directly into its shardings (no full copy on one device).

  `init_params(rng)` returns the boxed params of `model.init`; `params`, when given, replaces the
  fresh initialisation (e.g. a pre-trained backbone) and is laid out onto the same shardings.
  """
  def init(rng, given):
    p = nn.unbox(init_params(rng)) if given is None else given
    return TrainState(step=jnp.zeros((), jnp.int32), params=p, opt_state=tx.init(p))
  if params is not None:
    params = jax.device_put(params, shardings.params)
  return jax.jit(init, out_shardings=shardings)(rng, params)


def all_finite(tree) -> jax.Array:
  """A scalar bool: every element of every (inexact) leaf of `tree` is finite."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def guard_nonfinite(step_fn: Callable) -> Callable:
  """Wraps a step so that a non-finite loss, or an update that makes any parameter or optimizer
  moment non-finite (NaN/Inf gradients do), leaves params and optimizer state unchanged; only the
  step counter advances. Adds the metric `nonfinite` (1.0 on such a step, else 0.0) that the
  training loop turns into 'stop' or 'skip' (config.train.on_nonfinite)."""
  def guarded(state, batch):
    new, metrics = step_fn(state, batch)
    ok = jnp.isfinite(metrics["loss"]) & all_finite((new.params, new.opt_state))
    kept = jax.tree.map(lambda n, o: jnp.where(ok, n, o), (new.params, new.opt_state),
                        (state.params, state.opt_state))
    new = new.replace(params=kept[0], opt_state=kept[1])
    return new, {**metrics, "nonfinite": jnp.where(ok, 0.0, 1.0)}
  return guarded


def jitted_step(step_fn: Callable, shardings: TrainState, batch_sharding, mesh: Mesh, rules,
                donate: bool = True, guard: bool = False):
  """`step(state, batch) -> (state, metrics)` under jax.jit with explicit shardings (not yet
  compiled: `jit_step` runs it, `warm_jax.aot` lowers it for a TPU topology); with `guard`,
  through `guard_nonfinite` (what the training loop runs).

  The logical-axis rules are active while tracing, so activation constraints inside the model
  resolve to the mesh axes. Trace (call or lower) it under `jax.set_mesh(mesh)`.
  """
  if guard:
    step_fn = guard_nonfinite(step_fn)

  def traced(state, batch):
    with nn.logical_axis_rules(tuple(rules)):
      return step_fn(state, batch)
  return jax.jit(traced, in_shardings=(shardings, batch_sharding),
                 out_shardings=(shardings, shd.replicated(mesh)),
                 donate_argnums=(0,) if donate else ())


def jit_step(step_fn: Callable, shardings: TrainState, batch_sharding, mesh: Mesh, rules,
             donate: bool = True, guard: bool = False) -> Callable:
  """Compiles `step(state, batch) -> (state, metrics)` once with explicit shardings
  (`jitted_step`) and runs it under the mesh."""
  compiled = jitted_step(step_fn, shardings, batch_sharding, mesh, rules, donate, guard)

  def run(state, batch):
    with jax.set_mesh(mesh):
      return compiled(state, batch)
  return run


def param_count(params) -> int:
  return sum(x.size for x in jax.tree.leaves(params))
