"""KL-regularised policy optimisation against a reward function, with a frozen reference policy.

Algorithms (config.rl.algorithm):
- 'reinforce': REINFORCE with a batch-mean baseline on the KL-shaped sequence reward
  R = r(x, y) - beta * sum_t log(pi(y_t) / pi_ref(y_t))  (the WARM paper's RL);
- 'rloo': REINFORCE leave-one-out (k samples per prompt; each sample's baseline is the mean R of
  the prompt's other k - 1 samples);
- 'ppo': PPO with a value head on the policy's backbone, per-token KL penalty, GAE and clipped
  policy and value losses, several epochs of minibatch updates per rollout (the RLP paper's RL);
- 'grpo': GRPO (DeepSeekMath, arXiv 2402.03300): k samples per prompt, each advantage its
  reward minus the group's mean, divided by the group's standard deviation (unless
  config.rl.grpo_std is False); PPO's clipped objective (rl.clip_eps) averaged over each
  response's tokens, plus rl.kl_coef times the k3 KL estimator to the reference in the loss (not
  in the reward); rl.ppo_epochs x rl.ppo_minibatches updates per rollout, as PPO's, no value head.

One train step = one rollout + its update(s): `prepare(state, prompts)` (a `rollout.Rollout`)
samples k responses per prompt from the current policy, scores them with the reward function and
adds the reference log-probs; then the pure `step(state, batch)` computes the loss (the pieces
are in `warm_jax.losses`) and updates. Metrics every step: proxy reward, gold reward, KL to the
reference, entropy, response length.

The reference (the KL anchor, `warm_jax.train.anchor`) is the initial policy, or with
config.rl.anchor='ema' an exponential moving average of the policy (rate config.rl.ema_rate),
kept in the train state (WARP's anchor); then 'kl' is the KL to the anchor and 'kl/init' the KL
to the initial policy.
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
from warm_jax import sharding as shd
from warm_jax.data import pipeline
from warm_jax.models import LanguageModel
from warm_jax.train import anchor, loop
from warm_jax.train import state as state_lib
from warm_jax.train.rollout import Rollout, RewardFn, response_logps

ALGORITHMS = ("reinforce", "rloo", "ppo", "grpo")


def make_train_step(model: LanguageModel, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, rl: ml_collections.ConfigDict) -> Callable:
  """The pure update `step(state, rollout) -> (state, metrics)` of config.rl.algorithm."""
  beta, k = rl.kl_coef, rl.samples_per_prompt

  def common_metrics(batch, seq_kl):
    m = batch["mask"].astype(jnp.float32)
    out = {"reward/proxy": jnp.mean(batch["reward"]), "reward/gold": jnp.mean(batch["gold"]),
           "kl": jnp.mean(seq_kl), "response_length": jnp.mean(jnp.sum(m, axis=1))}
    if "init_logp" in batch:  # EMA anchor: 'kl' is to the anchor, 'kl/init' to the initial policy
      out["kl/init"] = jnp.mean(losses.sequence_kl(batch["sample_logp"], batch["init_logp"], m))
    return out

  def pg_step(state, batch):
    m = batch["mask"].astype(jnp.float32)
    seq_kl = losses.sequence_kl(batch["sample_logp"], batch["ref_logp"], m)
    returns = batch["reward"] - beta * seq_kl
    adv = (losses.rloo_advantages(returns, k) if rl.algorithm == "rloo"
           else losses.reinforce_advantages(returns))
    if rl.whiten_advantages:
      adv = adv / (jnp.std(adv) + 1e-8)

    def loss_fn(params):
      logp, entropy, _ = response_logps(model, params, batch["prompt"], batch["response"], m,
                                        temperature=rl.temperature,
                                        prompt_mask=batch["prompt_mask"])
      loss = -jnp.mean(jax.lax.stop_gradient(adv) * jnp.sum(logp * m, axis=1))
      return loss, jnp.sum(entropy * m) / jnp.maximum(jnp.sum(m), 1.0)

    (loss, entropy), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    out = {"loss": loss, "entropy": entropy, "grad_norm": optax.tree.norm(grads),
           "lr": schedule(state.step), **common_metrics(batch, seq_kl)}
    return state_lib.TrainState(step=state.step + 1, params=params, opt_state=opt_state), out

  def ppo_step(state, batch):
    m = batch["mask"].astype(jnp.float32)
    kl_t = (batch["sample_logp"] - batch["ref_logp"]) * m
    token_rewards = -beta * kl_t + losses.sequence_reward_tokens(batch["reward"], m)
    adv, returns = losses.gae(token_rewards, batch["old_values"] * m, m, rl.gamma, rl.gae_lambda)
    adv = losses.masked_whiten(adv, m) if rl.whiten_advantages else adv
    b = m.shape[0]
    mb = b // rl.ppo_minibatches
    rng = jax.random.fold_in(jax.random.key(rl.seed), state.step)

    def minibatch_loss(params, idx):
      take = lambda x: x[idx]
      logp, entropy, values = response_logps(model, params, take(batch["prompt"]),
                                             take(batch["response"]), take(m), with_values=True,
                                             temperature=rl.temperature,
                                             prompt_mask=take(batch["prompt_mask"]))
      pg, vf, clip_frac = losses.ppo_losses(logp, take(batch["sample_logp"]), take(adv), values,
                                     take(batch["old_values"]), take(returns), take(m),
                                     rl.clip_eps, rl.value_clip)
      ent = jnp.sum(entropy * take(m)) / jnp.maximum(jnp.sum(take(m)), 1.0)
      return pg + rl.vf_coef * vf, (pg, vf, clip_frac, ent)

    (params, opt_state), (loss, pg, vf, clip_frac, ent, gnorm) = minibatch_updates(
        state, minibatch_loss, b, mb, rng)
    out = {"loss": loss[-1], "policy_loss": jnp.mean(pg), "value_loss": jnp.mean(vf),
           "clip_fraction": jnp.mean(clip_frac), "entropy": jnp.mean(ent),
           "grad_norm": jnp.mean(gnorm), "lr": schedule(state.step),
           **common_metrics(batch, jnp.sum(kl_t, axis=1))}
    return state_lib.TrainState(step=state.step + 1, params=params, opt_state=opt_state), out

  def minibatch_updates(state, minibatch_loss, b, mb, rng):
    """rl.ppo_epochs passes over the rollout's b rows in shuffled minibatches of mb, one optimizer
    update each (PPO, GRPO): ((params, opt_state), (loss, *aux, grad norm) per update)."""
    def one_update(carry, idx):
      params, opt_state = carry
      (loss, aux), grads = jax.value_and_grad(minibatch_loss, has_aux=True)(params, idx)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), (loss, *aux, optax.tree.norm(grads))

    perms = jnp.stack([jax.random.permutation(jax.random.fold_in(rng, e), b)
                       for e in range(rl.ppo_epochs)]).reshape(-1, mb)
    return jax.lax.scan(one_update, (state.params, state.opt_state), perms)

  def grpo_step(state, batch):
    m = batch["mask"].astype(jnp.float32)
    adv = losses.group_advantages(batch["reward"], k, rl.get("grpo_std", True))
    b = m.shape[0]
    rng = jax.random.fold_in(jax.random.key(rl.seed), state.step)

    def minibatch_loss(params, idx):
      take = lambda x: x[idx]
      logp, entropy, _ = response_logps(model, params, take(batch["prompt"]),
                                        take(batch["response"]), take(m),
                                        temperature=rl.temperature,
                                        prompt_mask=take(batch["prompt_mask"]))
      loss, (pg, kl, clip_frac) = losses.grpo_loss(
          logp, take(batch["sample_logp"]), take(batch["ref_logp"]), take(adv), take(m),
          rl.clip_eps, beta)
      ent = jnp.sum(entropy * take(m)) / jnp.maximum(jnp.sum(take(m)), 1.0)
      return loss, (pg, kl, clip_frac, ent)

    (params, opt_state), (loss, pg, kl, clip_frac, ent, gnorm) = minibatch_updates(
        state, minibatch_loss, b, b // rl.ppo_minibatches, rng)
    seq_kl = losses.sequence_kl(batch["sample_logp"], batch["ref_logp"], m)
    out = {"loss": loss[-1], "policy_loss": jnp.mean(pg), "kl_k3": jnp.mean(kl),
           "clip_fraction": jnp.mean(clip_frac), "entropy": jnp.mean(ent),
           "grad_norm": jnp.mean(gnorm), "lr": schedule(state.step), **common_metrics(batch, seq_kl)}
    return state_lib.TrainState(step=state.step + 1, params=params, opt_state=opt_state), out

  return {"ppo": ppo_step, "grpo": grpo_step}.get(rl.algorithm, pg_step)


def _rollout_divides(v, c) -> bool:
  return (c.rl.algorithm not in ("ppo", "grpo")
          or (c.data.batch_size * c.rl.samples_per_prompt) % v == 0)


RULES = (
    *configs.COMMON_RULES,
    configs.choice("rl.algorithm", ALGORITHMS),
    configs.number("rl.kl_coef", 0.0),
    configs.integer("rl.samples_per_prompt"),
    configs.Rule("rl.samples_per_prompt",
                 lambda v, c: c.rl.algorithm not in ("rloo", "grpo") or v >= 2,
                 "at least 2 with rloo and grpo (each sample's baseline is the others' mean; "
                 "GRPO's group statistics)", reads=("rl.algorithm",)),
    configs.number("rl.temperature", 0.0, lo_open=True,
                   must="positive and finite (on-policy sampling)"),
    configs.integer("rl.max_new_tokens"),
    configs.boolean("rl.whiten_advantages", optional=True),
    configs.boolean("rl.grpo_std", optional=True),  # GRPO: divide by the group's std (default)
    configs.seed("rl.seed", optional=True),
    # PPO's fields (GRPO uses epochs, minibatches and clip_eps; ignored by the others, but never
    # left holding a bad value).
    configs.integer("rl.ppo_epochs", optional=True),
    configs.integer("rl.ppo_minibatches", optional=True),
    configs.number("rl.clip_eps", 0.0, lo_open=True, optional=True),
    configs.number("rl.value_clip", 0.0, lo_open=True, optional=True),
    configs.number("rl.vf_coef", 0.0, optional=True),
    configs.number("rl.gamma", 0.0, 1.0, optional=True),
    configs.number("rl.gae_lambda", 0.0, 1.0, optional=True),
    *anchor.rules("rl"),
    configs.Rule("rl.ppo_minibatches", _rollout_divides,
                 "a divisor of the rollout size data.batch_size * rl.samples_per_prompt with ppo "
                 "and grpo",
                 reads=("rl.algorithm", "data.batch_size", "rl.samples_per_prompt")),
)


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks every field the trainer uses (`RULES`); raises InputError naming the field."""
  configs.check(config, RULES)


def build(config: ml_collections.ConfigDict, devices=None) -> loop.Setup:
  validate_config(config)
  model = LanguageModel(config.model)
  setup = loop.build_setup(config, model, devices)
  shd.check_batch_size(config.data.batch_size * config.rl.samples_per_prompt, setup.mesh,
                       setup.rules, "config.data.batch_size * config.rl.samples_per_prompt")
  if config.rl.algorithm == "ppo":  # params include the value head
    dummy = jnp.ones((1, config.data.max_len), jnp.int32)
    setup.init_params = lambda rng: model.init(rng, dummy, method=model.logits_and_values)["params"]
    setup.shardings = state_lib.state_shardings(setup.init_params, setup.tx, setup.mesh, setup.rules)
  return anchor.with_ema(setup, config.rl)


def with_value_head(setup: loop.Setup, params: Any) -> Any:
  """Adds a freshly initialised (zero) value head to policy params that have none (PPO)."""
  if "value_head" in params or "value_head" not in nn.unbox(
      jax.eval_shape(setup.init_params, jax.random.key(0))):
    return params
  fresh = nn.unbox(setup.init_params(jax.random.key(0)))
  return {**params, "value_head": fresh["value_head"]}


def train(config: ml_collections.ConfigDict, workdir: str, prompts: dict, tokenizer,
          reward_fn: RewardFn, gold_fn: RewardFn, ref_params, devices=None) -> dict:
  """RL fine-tuning of the policy (initialised from `ref_params`, the SFT policy) against
  `reward_fn`; `prompts` maps 'train' and config.train.eval_splits to sources of {'prompt'}
  records. Evaluation samples one response per eval prompt and reports the same metrics."""
  setup = build(config, devices)
  for split in ("train", *config.train.eval_splits):
    if split not in prompts:
      raise ValueError(f"no prompt source for split {split!r} (config.train.eval_splits)")
  ref_params = jax.device_put(ref_params, {k: v for k, v in setup.shardings.params.items()
                                           if k in ref_params})
  rollout = Rollout(setup.model, config.rl, tokenizer, reward_fn, gold_fn, ref_params,
                    setup.batch_sharding, config.seed)
  encode = pipeline.PromptEncoder(tokenizer, config.data.max_len)
  pc, pi = jax.process_count(), jax.process_index()
  train_iter = pipeline.Batches(prompts["train"], encode, config.data.batch_size, config.data.seed,
                                process_index=pi, process_count=pc)

  def evaluate(state):
    out = {}
    for split in config.train.eval_splits:
      limit = config.train.eval_batches * config.data.eval_batch_size or None
      rows = []
      for batch in pipeline.epoch_batches(prompts[split], encode, config.data.eval_batch_size,
                                          limit=limit, process_index=pi, process_count=pc):
        w = batch.pop("weight")
        r = rollout(state, shd.to_global(batch, setup.batch_sharding), k=1, salt=1)
        m = np.asarray(r["mask"], np.float32)
        kl = np.asarray(losses.sequence_kl(r["sample_logp"], r["ref_logp"], m))
        rows.append((w, np.asarray(r["reward"]), np.asarray(r["gold"]), kl, m.sum(1)))
      w = np.concatenate([r[0] for r in rows])
      mean = lambda i: float(np.sum(w * np.concatenate([r[i] for r in rows])) / np.sum(w))
      out[split] = {"reward/proxy": mean(1), "reward/gold": mean(2), "kl": mean(3),
                    "response_length": mean(4)}
    return out

  step_fn = make_train_step(setup.model, setup.tx, setup.schedule, config.rl)
  return loop.run(config, workdir, setup, step_fn, train_iter, evaluate,
                  init_params=with_value_head(setup, ref_params), desc=f"rl/{config.rl.algorithm}",
                  show=("reward/proxy", "reward/gold", "kl"), prepare=rollout)
