"""Rollouts of the current policy for KL-regularised RL: sample, score, and the log-probs.

`Rollout(state, prompt_batch)` samples k responses per prompt from the current policy
(KV-cached decoding), scores them with the reward function (host side: any callable on strings,
e.g. a reward model, a WARM average, an ENS, or the gold reward) and the judge, and adds the
reference policy's log-probs (and, for PPO, the value head's values): the batch the pure
`policy` step updates on. The reference is the KL anchor: the fixed `ref_params`, or with
config.rl.anchor='ema' the EMA of the policy in the train state (`anchor`), in which case the
fixed initial policy's log-probs are added too ('init_logp': the KL to it is logged). `response_logps` is the policy's log-probability of response tokens.
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
                   response_mask: Array, with_values: bool = False):
  """Log-probs [B, N] of the response tokens given left-padded prompts, the policy's per-token
  entropy [B, N], and (PPO) the value of the state before each response token."""
  p = prompts.shape[1]
  seq = jnp.concatenate([prompts, responses], axis=1)
  mask = jnp.concatenate([prompts != PAD_ID, response_mask.astype(bool)], axis=1)
  positions = default_positions(mask)
  args = (seq[:, :-1], mask[:, :-1], positions[:, :-1])
  if with_values:
    logits, values = model.apply({"params": params}, *args, method=model.logits_and_values)
    values = values[:, p - 1:]
  else:
    logits, values = model.apply({"params": params}, *args), None
  logp_all = jax.nn.log_softmax(logits[:, p - 1:], axis=-1)
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
    self.ref_logps = jax.jit(lambda p, pr, r, m: response_logps(model, p, pr, r, m)[0])
    self.values = jax.jit(lambda p, pr, r, m: response_logps(model, p, pr, r, m, True)[2])
    self.last_texts: list[tuple[str, str]] = []
    self.ema = anchor.kind(rl) == "ema"  # the KL anchor: the EMA in the state, not ref_params

  def __call__(self, state, batch: dict, k: int | None = None, salt: int = 0) -> dict:
    k = self.rl.samples_per_prompt if k is None else k
    prompts = jnp.repeat(batch["prompt"], k, axis=0)
    rng = jax.random.fold_in(jax.random.fold_in(jax.random.key(self.seed), salt), state.step)
    out = self.generate(state.params, prompts, rng)
    prompt_np, tokens, mask = (np.asarray(x) for x in (prompts, out["tokens"], out["mask"]))
    prompt_texts = [self.tok.decode([int(t) for t in row if t not in (PAD_ID, self.tok.bos_id)])
                    for row in prompt_np]
    texts = sampling.decode_texts(self.tok, tokens, mask, self.tok.eos_id)
    self.last_texts = list(zip(prompt_texts, texts))
    put = lambda x: jax.device_put(np.asarray(x, np.float32), self.batch_sharding)
    anchor_params = anchor.params(state) if self.ema else self.ref_params
    rollout = {"prompt": prompts, "response": out["tokens"], "mask": out["mask"],
               "sample_logp": out["logprobs"],
               "ref_logp": self.ref_logps(anchor_params, prompts, out["tokens"], out["mask"]),
               "reward": put(self.reward_fn(prompt_texts, texts)),
               "gold": put(self.gold_fn(prompt_texts, texts))}
    if self.ema:  # the KL to the fixed initial policy, logged next to the anchor's
      rollout["init_logp"] = self.ref_logps(self.ref_params, prompts, out["tokens"], out["mask"])
    if self.rl.algorithm == "ppo":
      rollout["old_values"] = self.values(state.params, prompts, out["tokens"], out["mask"])
    return rollout
