"""Direct preference optimisation of a policy against a frozen reference policy: DPO and IPO.

    step(state, batch) -> (state, metrics)
    batch = {'chosen', 'rejected': int32[B, T], 'chosen_mask', 'rejected_mask': bool[B, T],
             'chosen_weights', 'rejected_weights': f32[B, T],
             'ref_chosen_logp', 'ref_rejected_logp': f32[B]}

DPO (Rafailov et al. 2023, arXiv 2305.18290) fits the policy pi directly to preference pairs: with
h = [log pi(y_c|x) - log pi_ref(y_c|x)] - [log pi(y_r|x) - log pi_ref(y_r|x)] the loss is
-log sigmoid(beta h) (loss_type 'sigmoid'; with label smoothing eps, conservative DPO), or
(h - 1/(2 beta))^2 (loss_type 'ipo', Azar et al. 2023), or MODPO's -log sigmoid((beta h - m) / w)
(loss_type 'modpo', Zhou et al. 2023: w = config.dpo.modpo_weight, the weight of the objective
that labelled the pairs; m = each record's 'margin', the other objectives' weighted reward
difference, carried into the batch by the encoder). Log-probabilities are summed over the
response tokens and [eos] (`weights`, laid out by `pipeline.PreferenceLMEncoder`), or averaged over
them when config.dpo.average_log_prob is set (what TRL does for IPO).

The reference log-probs come from `ReferenceLogps`, the loop's `prepare(state, batch)` hook: one
jitted forward pass of the frozen reference params (passed as a jit argument, laid out on the
policy's parameter shardings, never baked into the program as constants) before every train and
eval step. The policy starts from `init_params`, normally the reference itself (the SFT
checkpoint), so at step 0 the loss is log 2 and every implicit reward is 0.

Metrics follow TRL's DPOTrainer: loss, rewards/{chosen,rejected,accuracies,margins},
logps/{chosen,rejected}, plus grad_norm and lr. The implicit reward of a response is
beta * (log pi - log pi_ref); an accuracy counts pairs whose chosen reward is strictly higher.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from warm_jax import checkpoints, configs, losses
from warm_jax.data import pipeline
from warm_jax.models import LanguageModel
from warm_jax.train import anchor, lm, loop
from warm_jax.train import state as state_lib

Array = jax.Array
LOSS_TYPES = ("sigmoid", "ipo", "modpo")


# ---------------------------------------------------------------- model pieces

def sequence_logps(model: nn.Module, params, tokens: Array, weights: Array,
                   rng: jax.Array | None = None, average: bool = False,
                   mask: Array | None = None) -> Array:
  """log pi(response | prompt) of each row [B]: the sum (or, with `average`, the mean) of the
  log-probabilities of the tokens with weight 1, shifted exactly as in `lm.token_losses`
  (weights[:, t] marks token t, predicted from tokens < t), the rows read under `mask` (None:
  inferred from pad id 0)."""
  batch = {"tokens": tokens, "weights": weights}
  if mask is not None:
    batch["mask"] = mask
  ce, w, _ = lm.token_losses(model, params, batch, rng)
  total = -jnp.sum(ce * w, axis=-1)
  if average:
    total = total / jnp.maximum(jnp.sum(w, axis=-1), 1.0)
  return total


def pair_logps(model: nn.Module, params, batch: dict, rng: jax.Array | None = None,
               average: bool = False) -> tuple[Array, Array]:
  """Sequence log-probs of the chosen and rejected rows ([B] each), in one pass of 2B rows, under
  the batch's masks (inferred from pad id 0 when it has none)."""
  b = batch["chosen"].shape[0]
  tokens, mask = pipeline.stack_rows(batch, ("chosen", "rejected"))
  weights = jnp.concatenate([batch["chosen_weights"], batch["rejected_weights"]], axis=0)
  logp = sequence_logps(model, params, tokens, weights, rng, average, mask)
  return logp[:b], logp[b:]


# ---------------------------------------------------------------- objective and metrics

def preference_losses(pc: Array, pr: Array, rc: Array, rr: Array, beta: float, loss_type: str,
                      label_smoothing: float = 0.0, modpo_weight: float = 1.0,
                      margin: Array | None = None) -> Array:
  """Per-example DPO ('sigmoid'), IPO ('ipo') or MODPO ('modpo': needs `margin` [B]) loss from
  policy (p*) and reference (r*) log-probs."""
  if loss_type == "sigmoid":
    return losses.dpo_loss(pc, pr, rc, rr, beta, label_smoothing)
  if loss_type == "ipo":
    return losses.ipo_loss(pc, pr, rc, rr, beta)
  if loss_type == "modpo":
    if margin is None:
      raise ValueError("loss_type='modpo' needs each record's 'margin' (the other objectives' "
                       "weighted reward difference) in the batch")
    return losses.modpo_loss(pc, pr, rc, rr, beta, modpo_weight, margin)
  raise ValueError(f"loss_type={loss_type!r}: must be one of {LOSS_TYPES}")


def example_metrics(pc: Array, pr: Array, rc: Array, rr: Array, beta: float) -> dict[str, Array]:
  """Per-example implicit-reward metrics (TRL's names), each [B]."""
  r_c = losses.implicit_rewards(pc, rc, beta)
  r_r = losses.implicit_rewards(pr, rr, beta)
  return {"rewards/chosen": r_c, "rewards/rejected": r_r,
          "rewards/accuracies": losses.preference_accuracy(r_c, r_r),
          "rewards/margins": losses.reward_margin(r_c, r_r),
          "logps/chosen": pc.astype(jnp.float32), "logps/rejected": pr.astype(jnp.float32)}


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, schedule: optax.Schedule,
                    beta: float, loss_type: str, label_smoothing: float, dropout_seed: int,
                    average_log_prob: bool = False, modpo_weight: float = 1.0) -> Callable:
  """The pure train step. Dropout keys are derived from (dropout_seed, step), so a resumed run
  draws exactly the keys an uninterrupted one would (the model ignores them at dropout_rate 0)."""
  if loss_type not in LOSS_TYPES:
    raise ValueError(f"loss_type={loss_type!r}: must be one of {LOSS_TYPES}")
  base_rng = jax.random.key(dropout_seed)

  def step(state: state_lib.TrainState, batch: dict):
    rng = jax.random.fold_in(base_rng, state.step)
    rc, rr = batch["ref_chosen_logp"], batch["ref_rejected_logp"]

    def loss_fn(params):
      pc, pr = pair_logps(model, params, batch, rng, average_log_prob)
      loss = jnp.mean(preference_losses(pc, pr, rc, rr, beta, loss_type, label_smoothing,
                                        modpo_weight, batch.get("margin")))
      return loss, (pc, pr)

    (loss, (pc, pr)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    pc, pr = jax.lax.stop_gradient(pc), jax.lax.stop_gradient(pr)
    out = {"loss": loss, **{k: jnp.mean(v) for k, v in example_metrics(pc, pr, rc, rr, beta).items()},
           "grad_norm": optax.tree.norm(grads), "lr": schedule(state.step)}
    return state_lib.TrainState(step=state.step + 1, params=params, opt_state=opt_state), out

  return step


def make_eval_step(model: nn.Module, beta: float, loss_type: str, label_smoothing: float = 0.0,
                   average_log_prob: bool = False, modpo_weight: float = 1.0) -> Callable:
  """Weighted sums over a batch (its 'weight' row marks real pairs), incl. 'count'."""
  def eval_step(params, batch):
    pc, pr = pair_logps(model, params, batch, None, average_log_prob)
    rc, rr = batch["ref_chosen_logp"], batch["ref_rejected_logp"]
    w = batch["weight"]
    per = {"loss": preference_losses(pc, pr, rc, rr, beta, loss_type, label_smoothing,
                                     modpo_weight, batch.get("margin")),
           **example_metrics(pc, pr, rc, rr, beta)}
    return {**{k: jnp.sum(w * v) for k, v in per.items()}, "count": jnp.sum(w)}
  return eval_step


class ReferenceLogps:
  """The loop's `prepare(state, batch)`: adds the frozen reference policy's sequence log-probs
  'ref_chosen_logp' and 'ref_rejected_logp' ([B], on the batch sharding) to a global batch.

  The reference params are an argument of the jitted forward pass (one compilation, whatever
  params are passed), laid out on `param_shardings` (the policy's)."""

  def __init__(self, model: nn.Module, ref_params, mesh, rules, param_shardings, batch_sharding,
               average_log_prob: bool = False, ema: bool = False):
    self.mesh = mesh
    self.ref_params = ref_params
    self.ema = ema  # the reference is the EMA anchor in the train state (`anchor`)

    def forward(params, batch):
      with nn.logical_axis_rules(tuple(rules)):
        return pair_logps(model, params, batch, None, average_log_prob)

    self._forward = jax.jit(forward, in_shardings=(param_shardings, batch_sharding),
                            out_shardings=(batch_sharding, batch_sharding))

  def logps(self, params, batch: dict) -> tuple[Array, Array]:
    keys = ("chosen", "rejected", "chosen_weights", "rejected_weights",
            pipeline.mask_key("chosen"), pipeline.mask_key("rejected"))
    with jax.set_mesh(self.mesh):
      return self._forward(params, {k: batch[k] for k in keys if k in batch})

  def __call__(self, state, batch: dict) -> dict:
    rc, rr = self.logps(anchor.params(state) if self.ema else self.ref_params, batch)
    return {**batch, "ref_chosen_logp": rc, "ref_rejected_logp": rr}


# ---------------------------------------------------------------- config, setup, training

RULES = (
    *configs.COMMON_RULES,
    configs.number("dpo.beta", 0.0, lo_open=True),
    configs.init_source("dpo.ref_checkpoint"),
    configs.choice("dpo.loss_type", LOSS_TYPES),
    configs.number("dpo.label_smoothing", 0.0, 0.5, hi_open=True),
    configs.number("dpo.modpo_weight", 0.0, 1.0, lo_open=True, optional=True,
                   must="in (0, 1] (the weight of the objective whose preferences train the policy)"),
    configs.number("dpo.modpo_scale", 0.0, lo_open=True, optional=True,
                   must="positive and finite (the data objective's reward standard deviation)"),
    configs.boolean("dpo.average_log_prob", optional=True),
    *anchor.rules("dpo"),
    configs.Rule("dpo.label_smoothing", lambda v, c: v == 0 or c.dpo.loss_type == "sigmoid",
                 "0 unless loss_type is 'sigmoid' (conservative DPO's smoothing)",
                 reads=("dpo.loss_type",)),
)


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks every field the trainer uses (`RULES`); raises InputError naming the field."""
  configs.check(config, RULES)


def build(config: ml_collections.ConfigDict, devices=None) -> loop.Setup:
  """Validates the config and derives model, mesh, optimizer and shardings from it."""
  validate_config(config)
  return anchor.with_ema(loop.build_setup(config, LanguageModel(config.model), devices), config.dpo)


abstract_state = loop.abstract_state


def _check_params(params, setup: loop.Setup, what: str) -> None:
  """Raises ValueError naming the first parameter whose path, shape or dtype differs from the
  model's."""
  why = checkpoints.tree_mismatch(params, loop.abstract_state(setup).params, (what, "config.model"),
                                 structure=True)
  if why:
    raise ValueError(f"{what} do not fit LanguageModel(config.model): {why}")


def train(config: ml_collections.ConfigDict, workdir: str, sources: dict, tokenizer, ref_params,
          init_params: Any | None = None, devices=None) -> dict:
  """DPO/IPO training (or resumption) of a policy; returns the final eval metrics and the state.

  `sources` maps 'train' and each of config.train.eval_splits to random-access sources of
  {'prompt', 'chosen', 'rejected'} records. `ref_params`: the frozen reference policy (the SFT
  checkpoint's params, unboxed). `init_params`: the policy's start (default: `ref_params`);
  ignored on resume, where the reference must be the one the run started with.
  """
  setup = build(config, devices)
  _check_params(ref_params, setup, "ref_params")
  ref_params = jax.device_put(ref_params, setup.shardings.params)
  if init_params is None:
    init_params = ref_params
  else:
    _check_params(init_params, setup, "init_params")
  d = config.dpo
  prepare = ReferenceLogps(setup.model, ref_params, setup.mesh, setup.rules, setup.shardings.params,
                           setup.batch_sharding, d.average_log_prob, anchor.kind(d) == "ema")
  return loop.fit(config, workdir, setup, sources,
                  pipeline.PreferenceLMEncoder(tokenizer, config.data.max_len),
                  make_train_step(setup.model, setup.tx, setup.schedule, d.beta, d.loss_type,
                                  d.label_smoothing, config.seed + 1, d.average_log_prob,
                                  modpo_weight(d)),
                  make_eval_step(setup.model, d.beta, d.loss_type, d.label_smoothing,
                                 d.average_log_prob, modpo_weight(d)),
                  init_params=init_params, desc=f"dpo/{d.loss_type}",
                  show=("loss", "rewards/accuracies", "rewards/margins"), prepare=prepare)


def modpo_weight(d: ml_collections.ConfigDict) -> float:
  """The weight MODPO's loss divides by: config.dpo.modpo_weight (w_k), over config.dpo.modpo_scale
  (s_k, the data objective's reward standard deviation when the objectives are standardised, as
  MORL's are; 1 when absent). See `losses.modpo_loss`."""
  return d.get("modpo_weight", 1.0) / d.get("modpo_scale", 1.0)


def dpo_config(beta: float = 0.1, loss_type: str = "sigmoid", label_smoothing: float = 0.0,
               average_log_prob: bool = False, ref_checkpoint: str = "",
               modpo_weight: float = 1.0) -> ml_collections.ConfigDict:
  """The config.dpo section (ref_checkpoint: where experiments/dpo.py reads the reference;
  modpo_weight: MODPO's w_k, used by loss_type 'modpo' only)."""
  return ml_collections.ConfigDict(dict(beta=beta, loss_type=loss_type,
                                        label_smoothing=label_smoothing,
                                        average_log_prob=average_log_prob,
                                        ref_checkpoint=ref_checkpoint, modpo_weight=modpo_weight))
