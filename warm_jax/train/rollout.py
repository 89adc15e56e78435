"""Rollouts of the current policy for KL-regularised RL: sample, score, and the log-probs.

`Rollout(state, prompt_batch)` samples k responses per prompt from the current policy
(KV-cached decoding, the left-padded prompts read under the batch's 'prompt_mask', which the
rollout passes on to the step), scores them with the reward function (host side: any callable
on strings, e.g. a reward model, a WARM average, an ENS, or the gold reward) and the judge, and adds the
reference policy's log-probs (and, for PPO, the value head's values): the batch the pure
`policy` step updates on. `response_logps` is the policy's log-probability of response tokens.

Temperature: every log-prob of RL (the sampled ones, the reference's, the policy's in the loss)
is of the tempered distribution softmax(logits / config.rl.temperature), as TRL computes them. The
samples are drawn from the tempered policy, so the PPO ratio and the policy gradient are
importance-correct only under it; and the KL penalty then compares like with like (the tempered
policy to the reference at the same temperature: zero at initialisation whatever the
temperature, where tempering only the policy's side would penalise the temperature itself).

The reference is the KL anchor: the fixed `ref_params`, or with config.rl.anchor='ema' the EMA of
the policy in the train state (`anchor`), in which case the fixed initial policy's log-probs are
added too ('init_logp': the KL to it is logged).
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from warm_jax import sampling
from warm_jax.models import LanguageModel
from warm_jax.models.transformer import PAD_ID, default_positions
from warm_jax.train import anchor

Array = jax.Array
RewardFn = Callable[[Sequence[str], Sequence[str]], np.ndarray]


def response_logps(model: LanguageModel, params, prompts: Array, responses: Array,
                   response_mask: Array, with_values: bool = False, temperature: float = 1.0,
                   prompt_mask: Array | None = None):
  """Log-probs [B, N] of the response tokens given left-padded prompts (real where
  `prompt_mask`; None: where not pad id 0) under softmax(logits / temperature), that
  distribution's per-token entropy [B, N], and (PPO) the value of the state before each response
  token."""
  p = prompts.shape[1]
  seq = jnp.concatenate([prompts, responses], axis=1)
  if prompt_mask is None:
    prompt_mask = prompts != PAD_ID
  mask = jnp.concatenate([prompt_mask.astype(bool), response_mask.astype(bool)], axis=1)
  positions = default_positions(mask)
  args = (seq[:, :-1], mask[:, :-1], positions[:, :-1])
  if with_values:
    logits, values = model.apply({"params": params}, *args, method=model.logits_and_values)
    values = values[:, p - 1:]
  else:
    logits, values = model.apply({"params": params}, *args), None
  logp_all = jax.nn.log_softmax(logits[:, p - 1:].astype(jnp.float32) / temperature, axis=-1)
  logp = jnp.take_along_axis(logp_all, responses[..., None], axis=-1)[..., 0]
  entropy = -jnp.sum(jnp.exp(logp_all) * logp_all, axis=-1)
  return logp, entropy, values


class Rollout:
  """`prepare(state, batch)`: samples the current policy on the batch's prompts and scores it.

  The prompt batch (B prompts) becomes a rollout of B * k rows, prompt-major (the k samples of a
  prompt are adjacent). Rewards come from host-side callables on strings.
  """

  def __init__(self, model: LanguageModel, rl: ml_collections.ConfigDict, tokenizer,
               reward_fn: RewardFn, gold_fn: RewardFn, ref_params, batch_sharding, seed: int):
    self.model, self.rl, self.tok = model, rl, tokenizer
    self.reward_fn, self.gold_fn, self.ref_params = reward_fn, gold_fn, ref_params
    self.batch_sharding, self.seed = batch_sharding, seed
    self.generate = sampling.make_generate(model, max_new_tokens=rl.max_new_tokens,
                                           temperature=rl.temperature, eos_id=tokenizer.eos_id)
    t = rl.temperature
    self.ref_logps = jax.jit(lambda p, pr, r, m, pm: response_logps(
        model, p, pr, r, m, temperature=t, prompt_mask=pm)[0])
    # PPO: the old policy's log-probs and values from one forward pass, the same computation the
    # update's first minibatch repeats (its ratio is exactly 1, as decoding's need not be)
    self.logps_values = jax.jit(lambda p, pr, r, m, pm: response_logps(
        model, p, pr, r, m, with_values=True, temperature=t, prompt_mask=pm)[::2])
    self.last_texts: list[tuple[str, str]] = []
    self.ema = anchor.kind(rl) == "ema"  # the KL anchor: the EMA in the state, not ref_params

  def __call__(self, state, batch: dict, k: int | None = None, salt: int = 0) -> dict:
    k = self.rl.samples_per_prompt if k is None else k
    prompts = jnp.repeat(batch["prompt"], k, axis=0)
    prompt_mask = (jnp.repeat(batch["prompt_mask"], k, axis=0) if "prompt_mask" in batch
                   else prompts != PAD_ID)
    rng = jax.random.fold_in(jax.random.fold_in(jax.random.key(self.seed), salt), state.step)
    out = self.generate(state.params, prompts, rng, prompt_mask)
    prompt_np, prompt_mask_np, tokens, mask = (np.asarray(x) for x in (
        prompts, prompt_mask, out["tokens"], out["mask"]))
    prompt_texts = [self.tok.decode([int(t) for t, real in zip(row, real_row)
                                     if real and t != self.tok.bos_id])
                    for row, real_row in zip(prompt_np, prompt_mask_np)]
    texts = sampling.decode_texts(self.tok, tokens, mask, self.tok.eos_id)
    self.last_texts = list(zip(prompt_texts, texts))
    put = lambda x: jax.device_put(np.asarray(x, np.float32), self.batch_sharding)
    anchor_params = anchor.params(state) if self.ema else self.ref_params
    rollout = {"prompt": prompts, "prompt_mask": prompt_mask, "response": out["tokens"],
               "mask": out["mask"], "sample_logp": out["logprobs"],
               "ref_logp": self.ref_logps(anchor_params, prompts, out["tokens"], out["mask"],
                                          prompt_mask),
               "reward": put(self.reward_fn(prompt_texts, texts)),
               "gold": put(self.gold_fn(prompt_texts, texts))}
    if self.ema:  # the KL to the fixed initial policy, logged next to the anchor's
      rollout["init_logp"] = self.ref_logps(self.ref_params, prompts, out["tokens"], out["mask"],
                                            prompt_mask)
    if self.rl.algorithm == "ppo":
      rollout["sample_logp"], rollout["old_values"] = self.logps_values(
          state.params, prompts, out["tokens"], out["mask"], prompt_mask)
    elif self.rl.algorithm == "grpo":  # the old log-probs as the update computes them
      rollout["sample_logp"] = self.ref_logps(state.params, prompts, out["tokens"], out["mask"],
                                              prompt_mask)
    return rollout
