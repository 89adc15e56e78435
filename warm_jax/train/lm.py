"""Next-token language-model training: pre-training (every token) and SFT (response tokens only).

    step(state, batch) -> (state, metrics)     batch = {'tokens': int32[B, T], 'mask': bool[B, T],
                                                         'weights': f32[B, T]}

`weights[b, t]` says whether token t is a target; the model reads tokens[:, :-1] under
mask[:, :-1] (inferred from pad id 0 when the batch has no 'mask') and predicts tokens[:, 1:].
This produces the shared pre-trained / SFT checkpoint every reward model and policy starts from. The loop (resume, eval, logging, checkpoints) is `warm_jax.train.loop`.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from warm_jax import configs
from warm_jax.data import pipeline
from warm_jax.models import LanguageModel
from warm_jax.train import loop
from warm_jax.train import state as state_lib


def token_losses(model: nn.Module, params, batch: dict, rng: jax.Array | None = None):
  """Per-token cross-entropy [B, T-1], weights [B, T-1] and whether the argmax was right."""
  inputs, targets = batch["tokens"][:, :-1], batch["tokens"][:, 1:]
  mask = batch.get("mask")
  mask = None if mask is None else mask[:, :-1]
  kwargs = {} if rng is None else {"rngs": {"dropout": rng}}
  logits = model.apply({"params": params}, inputs, mask, deterministic=rng is None, **kwargs)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
  return ce, batch["weights"][:, 1:], correct


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, schedule: optax.Schedule,
                    dropout_seed: int) -> Callable:
  base_rng = jax.random.key(dropout_seed)

  def step(state: state_lib.TrainState, batch: dict):
    rng = jax.random.fold_in(base_rng, state.step)

    def loss_fn(params):
      ce, w, correct = token_losses(model, params, batch, rng)
      n = jnp.maximum(jnp.sum(w), 1.0)
      return jnp.sum(ce * w) / n, (jnp.sum(correct * w) / n, n)

    (loss, (acc, n)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    out = {"loss": loss, "token_accuracy": acc, "tokens": n, "grad_norm": optax.tree.norm(grads),
           "lr": schedule(state.step)}
    return state_lib.TrainState(step=state.step + 1, params=params, opt_state=opt_state), out

  return step


def make_eval_step(model: nn.Module) -> Callable:
  """Token-weighted sums (count = number of target tokens of real rows)."""
  def eval_step(params, batch):
    ce, w, correct = token_losses(model, params, batch)
    w = w * batch["weight"][:, None]
    return {"loss": jnp.sum(ce * w), "token_accuracy": jnp.sum(correct * w), "count": jnp.sum(w)}
  return eval_step


RULES = (*configs.COMMON_RULES, configs.choice("train.objective", ("pretrain", "sft")))


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks every field the trainer uses (`RULES`); raises InputError naming the field."""
  configs.check(config, RULES)


def build(config: ml_collections.ConfigDict, devices=None) -> loop.Setup:
  validate_config(config)
  return loop.build_setup(config, LanguageModel(config.model), devices)


def train(config: ml_collections.ConfigDict, workdir: str, sources: dict, tokenizer,
          init_params: Any | None = None, devices=None) -> dict:
  """Pre-trains or fine-tunes (SFT) a language model; `sources` maps 'train' and each of
  config.train.eval_splits to random-access sources of {'prompt', 'response'} records."""
  setup = build(config, devices)
  encode = pipeline.LMEncoder(tokenizer, config.data.max_len,
                              response_only=config.train.objective == "sft")
  return loop.fit(config, workdir, setup, sources, encode,
                  make_train_step(setup.model, setup.tx, setup.schedule, config.seed + 1),
                  make_eval_step(setup.model), init_params=init_params,
                  desc=config.train.objective, show=("loss", "token_accuracy"))
