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
import numpy as np
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
                    label_smoothing: float, dropout_seed: int,
                    center_rewards: float = 0.0) -> Callable:
  """The pure train step. Dropout keys are derived from (dropout_seed, step), so a resumed run
  draws exactly the keys an uninterrupted one would. `center_rewards` > 0 adds
  center_rewards * mean((r_c + r_r)^2) to the loss (`losses.center_rewards_penalty`, TRL's
  center_rewards_coefficient); 0 leaves the step exactly as without it."""
  base_rng = jax.random.key(dropout_seed)

  def step(state: state_lib.TrainState, batch: dict):
    rng = jax.random.fold_in(base_rng, state.step)

    def loss_fn(params):
      rc, rr = pair_rewards(model, params, batch, rng)
      loss = jnp.mean(losses.bradley_terry_loss(rc, rr, label_smoothing))
      if center_rewards:
        loss = loss + center_rewards * losses.center_rewards_penalty(rc, rr)
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


RULES = (*configs.COMMON_RULES, configs.number("train.label_smoothing", 0.0, 0.5, hi_open=True),
         # the head to start from: a params checkpoint holding 'reward_head' (e.g. a linear
         # probe); absent or '': a zero head
         configs.Rule("init_head", lambda v, c: isinstance(v, str), "a checkpoint path or ''",
                      optional=True),
         # TRL's center_rewards_coefficient: + coefficient * mean((r_c + r_r)^2); absent: 0
         configs.number("train.center_rewards", 0.0, optional=True,
                        must="a finite number >= 0 (0: no centering term)"),
         # a split whose chosen and rejected responses give the reward statistics stored with
         # the final checkpoint (warm_jax.reward_norm); absent or '': none
         configs.Rule("train.store_norm", lambda v, c: isinstance(v, str),
                      "a split name, or '' (store no reward statistics)", optional=True))


def pair_features(model: nn.Module, params, batches) -> tuple[np.ndarray, np.ndarray]:
  """The final layer's state at the last real token (what the reward head reads) of the chosen
  and the rejected rows of each batch ({'chosen', 'rejected', 'weight'}: padded rows, weight 0,
  are dropped): float32 [N, d_model] each, on the host."""
  fn = jax.jit(lambda p, t: model.apply({"params": p}, t, return_features=True)[1])
  out: dict[str, list] = {"chosen": [], "rejected": []}
  for batch in batches:
    keep = np.asarray(batch["weight"]) > 0
    for side in out:
      out[side].append(np.asarray(fn(params, jnp.asarray(batch[side])))[keep])
  return np.concatenate(out["chosen"]), np.concatenate(out["rejected"])


def fit_linear_head(f_chosen: np.ndarray, f_rejected: np.ndarray, steps: int, lr: float,
                    weight_decay: float = 0.0) -> tuple[np.ndarray, dict]:
  """A linear probe: the reward head's kernel w [d, 1] minimising the Bradley-Terry loss
  mean(-log sigmoid(w . (f_chosen - f_rejected))) on fixed features, by full-batch Adam from
  zero (the head's bias cancels in every preference, so it stays 0). Returns w and the probe's
  loss and accuracy on these pairs."""
  diff = jnp.asarray(f_chosen - f_rejected, jnp.float32)
  tx = optax.adamw(lr, weight_decay=weight_decay)

  def loss_fn(w):
    return jnp.mean(losses.bradley_terry_loss(diff @ w, jnp.zeros(diff.shape[0])))

  def step(carry, _):
    w, opt = carry
    grads = jax.grad(loss_fn)(w)
    updates, opt = tx.update(grads, opt, w)
    return (optax.apply_updates(w, updates), opt), None

  w0 = jnp.zeros((diff.shape[1],), jnp.float32)
  (w, _), _ = jax.jit(lambda w: jax.lax.scan(step, (w, tx.init(w)), None, length=steps))(w0)
  margin = np.asarray(diff @ w)
  return np.asarray(w)[:, None], {"loss": float(loss_fn(w)), "accuracy": float(np.mean(margin > 0))}


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
                                  config.train.label_smoothing, config.seed + 1,
                                  config.train.get("center_rewards", 0.0)),
                  make_eval_step(setup.model, config.train.label_smoothing),
                  init_params=init_params, desc="reward model", show=("loss", "accuracy"))
