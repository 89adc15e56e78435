"""Bradley-Terry reward-model training: a sharded train step and the training loop.

    step(state, batch) -> (state, metrics)     batch = {'chosen', 'rejected': int32[B, T],
                                                         'chosen_mask', 'rejected_mask': bool[B, T]}

The chosen and rejected rows go through the model as one [2B, T] batch, with their masks (the
reward is read at each row's last True: `pipeline.PairEncoder` writes them; a batch without
masks has them inferred from pad id 0, the embedded task's). `train` validates the
config before any compute and hands the step to the shared loop (`warm_jax.train.loop.run`:
resume, evaluation, logging, checkpoints, SIGTERM).
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from warm_jax import configs, losses
from warm_jax.data import pipeline
from warm_jax.models import RewardModel
from warm_jax.train import loop
from warm_jax.train import state as state_lib


def pair_rewards(model: nn.Module, params, batch: dict, rng: jax.Array | None = None):
  """Rewards of the chosen and rejected rows ([B] each) in one forward pass of 2B rows, under
  the batch's masks ('chosen_mask', 'rejected_mask'; inferred from pad id 0 when absent)."""
  b = batch["chosen"].shape[0]
  tokens, mask = pipeline.stack_rows(batch, ("chosen", "rejected"))
  kwargs = {} if rng is None else {"rngs": {"dropout": rng}}
  r = model.apply({"params": params}, tokens, mask, deterministic=rng is None, **kwargs)
  return r[:b], r[b:]


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, schedule: optax.Schedule,
                    label_smoothing: float, dropout_seed: int) -> Callable:
  """The pure train step. Dropout keys are derived from (dropout_seed, step), so a resumed run
  draws exactly the keys an uninterrupted one would."""
  base_rng = jax.random.key(dropout_seed)

  def step(state: state_lib.TrainState, batch: dict):
    rng = jax.random.fold_in(base_rng, state.step)

    def loss_fn(params):
      rc, rr = pair_rewards(model, params, batch, rng)
      loss = jnp.mean(losses.bradley_terry_loss(rc, rr, label_smoothing))
      return loss, (rc, rr)

    (loss, (rc, rr)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    out = {"loss": loss,
           "accuracy": jnp.mean(losses.preference_accuracy(rc, rr)),
           "margin": jnp.mean(losses.reward_margin(rc, rr)),
           "rewards/chosen": jnp.mean(rc), "rewards/rejected": jnp.mean(rr),
           "grad_norm": optax.tree.norm(grads), "lr": schedule(state.step)}
    return state_lib.TrainState(step=state.step + 1, params=params, opt_state=opt_state), out

  return step


def make_eval_step(model: nn.Module, label_smoothing: float = 0.0) -> Callable:
  """Weighted sums over a batch (with a 'weight' row) so partial last batches count exactly."""
  def eval_step(params, batch):
    rc, rr = pair_rewards(model, params, batch)
    w = batch["weight"]
    return {"loss": jnp.sum(w * losses.bradley_terry_loss(rc, rr, label_smoothing)),
            "accuracy": jnp.sum(w * losses.preference_accuracy(rc, rr)),
            "margin": jnp.sum(w * losses.reward_margin(rc, rr)),
            "count": jnp.sum(w)}
  return eval_step


RULES = (*configs.COMMON_RULES, configs.number("train.label_smoothing", 0.0, 0.5, hi_open=True))


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks every field the trainer uses (`RULES`); raises InputError naming the field."""
  configs.check(config, RULES)


def build(config: ml_collections.ConfigDict, devices=None) -> loop.Setup:
  """Validates the config and derives model, mesh, optimizer and shardings from it."""
  validate_config(config)
  return loop.build_setup(config, RewardModel(config.model), devices)


abstract_state = loop.abstract_state


def train(config: ml_collections.ConfigDict, workdir: str, sources: dict | None = None,
          tokenizer=None, init_params: Any | None = None, devices=None) -> dict:
  """Trains (or resumes) a reward model; returns the final evaluation metrics and the state.

  `sources` maps split names ('train' and each of config.train.eval_splits) to random-access
  record sources; by default they are loaded from config.data. `init_params`: params to start
  from instead of a fresh initialisation (e.g. a pre-trained backbone); ignored on resume.
  """
  setup = build(config, devices)
  if sources is None or tokenizer is None:
    from warm_jax import data as data_lib  # the embedded task and TFDS builders
    tokenizer = tokenizer or data_lib.load_tokenizer(config.data)
    sources = sources or {s: data_lib.load_split(config.data, s)
                          for s in ("train", *config.train.eval_splits)}
  return loop.fit(config, workdir, setup, sources,
                  pipeline.PairEncoder(tokenizer, config.data.max_len),
                  make_train_step(setup.model, setup.tx, setup.schedule,
                                  config.train.label_smoothing, config.seed + 1),
                  make_eval_step(setup.model, config.train.label_smoothing),
                  init_params=init_params, desc="reward model", show=("loss", "accuracy"))
