"""Models built on the shared decoder: a reward model (scalar head) and a policy (LM head).

Both keep the backbone under the same parameter name (`decoder`), so a reward model can be
initialised from a pre-trained/SFT language model by copying `params['decoder']`
(see `init_from_lm`), which is what makes their weights linearly connected.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from warm_jax.configs import model_field
from warm_jax.models import precision
from warm_jax.models.transformer import PAD_ID, Decoder

Array = jax.Array


def last_token_index(mask: Array) -> Array:
  """Index of the last valid (non-pad) token of each row of a [B, T] mask (0 for an empty row)."""
  t = mask.shape[-1]
  idx = jnp.where(mask.astype(bool), jnp.arange(t)[None, :], -1)
  return jnp.maximum(jnp.max(idx, axis=-1), 0)


class RewardModel(nn.Module):
  """Backbone + scalar head read at the last non-pad token: tokens [B, T] -> rewards [B] (float32).
  With `return_features`, also the final layer's state at that token ([B, d_model], float32): the
  representation the head reads (RLP-UML's bottleneck encodes it). Pass `mask` whenever the pad
  id is not 0 or is also a real token (pad = eos): the reward is read at its last True. The head
  has no bias when config.model.reward_head_bias is False (imported HF `score` layers)."""
  cfg: ml_collections.ConfigDict

  @nn.compact
  def __call__(self, tokens: Array, mask: Array | None = None, positions: Array | None = None,
               deterministic: bool = True, return_features: bool = False):
    if mask is None:
      mask = tokens != PAD_ID
    h = Decoder(self.cfg, name="decoder")(tokens, mask, positions, deterministic)
    last = jnp.take_along_axis(h, last_token_index(mask)[:, None, None], axis=1)[:, 0]
    last = last.astype(jnp.float32)
    head = nn.Dense(1, dtype=jnp.float32, name="reward_head",
                    use_bias=model_field(self.cfg, "reward_head_bias"),
                    kernel_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed", "scalar")),
                    bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("scalar",)))
    reward = head(last)[:, 0]
    return (reward, last) if return_features else reward


class LanguageModel(nn.Module):
  """Backbone + LM head: tokens [B, T] -> next-token logits [B, T, vocab] (float32).

  `logits_and_values` also reads a per-token scalar value head (PPO's critic, sharing the
  backbone); its parameters (`value_head`) exist only in params initialised through that method.
  """
  cfg: ml_collections.ConfigDict

  def setup(self):
    self.decoder = Decoder(self.cfg)
    if not self.cfg.tie_embeddings:
      self.lm_head = nn.Dense(
          self.cfg.vocab_size, use_bias=False, dtype=precision.compute_dtype(self.cfg.dtype),
          dot_general=precision.dot_general(jnp.float32),
          kernel_init=nn.with_logical_partitioning(nn.initializers.normal(self.cfg.d_model ** -0.5),
                                                   ("embed", "vocab")))
    self.value_head = nn.Dense(
        1, dtype=jnp.float32,
        kernel_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed", "scalar")),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("scalar",)))

  def _logits(self, h: Array) -> Array:
    """Float32 logits of the compute-dtype matmul (float32 accumulation): the tied head divides by
    sqrt(d_model) unless config.model.scale_tied_logits is False; final_logit_softcap > 0 maps
    them to cap * tanh(logits / cap)."""
    dtype = precision.compute_dtype(self.cfg.dtype)
    if self.cfg.tie_embeddings:
      logits = precision.einsum("btd,vd->btv", h.astype(dtype),
                                self.decoder.embed.embedding.astype(dtype), jnp.float32)
      if model_field(self.cfg, "scale_tied_logits"):
        logits = logits / jnp.sqrt(jnp.float32(self.cfg.d_model))
    else:
      logits = self.lm_head(h)
    cap = model_field(self.cfg, "final_logit_softcap")
    if cap:
      logits = cap * jnp.tanh(logits / cap)
    return logits

  def __call__(self, tokens: Array, mask: Array | None = None, positions: Array | None = None,
               deterministic: bool = True, decode: bool = False) -> Array:
    return self._logits(self.decoder(tokens, mask, positions, deterministic, decode))

  def logits_and_values(self, tokens: Array, mask: Array | None = None,
                        positions: Array | None = None, deterministic: bool = True):
    h = self.decoder(tokens, mask, positions, deterministic)
    return self._logits(h), self.value_head(h.astype(jnp.float32))[..., 0]


def init_from_lm(rm_params: dict, lm_params: dict) -> dict:
  """Reward-model params whose backbone is copied from a language model's params."""
  if jax.tree_util.tree_structure(rm_params["decoder"]) != jax.tree_util.tree_structure(
      lm_params["decoder"]):
    raise ValueError("init_from_lm: the language model's decoder does not match the reward model's")
  return {**rm_params, "decoder": lm_params["decoder"]}
