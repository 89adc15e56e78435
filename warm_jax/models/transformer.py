"""A decoder-only transformer backbone with logical axis names on every parameter.

RMSNorm, rotary positions, causal (grouped-query) attention, gated (SwiGLU) MLP, tied or untied
embeddings. Every size comes from the model config (see `warm_jax.configs.model_config`).

Every parameter is created through `nn.with_logical_partitioning`, so `model.init` returns
`nn.Partitioned` boxes that carry names such as ('embed', 'mlp'); `warm_jax.sharding` maps those
names to mesh axes with the rules table of the config. Stored and averaged parameters are the plain
(unboxed) pytree: a nested dict of arrays.

Inputs are token ids [batch, length] with `pad_id` (0) marking padding; `mask` and `positions`
default to what right-padding implies but can be passed explicitly (left-padded prompts in
sampling).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

Array = jax.Array

PAD_ID = 0


def _dtype(name: str) -> Any:
  return {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}[name]


def _kernel_init(axes: tuple[str | None, ...]):
  # DenseGeneral initialises the flattened [fan_in, fan_out] kernel, then reshapes it.
  init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
  return nn.with_logical_partitioning(init, axes)


class RMSNorm(nn.Module):
  eps: float = 1e-6
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                       (x.shape[-1],), jnp.float32)
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return (y * scale).astype(self.dtype)


def rotary(x: Array, positions: Array, theta: float) -> Array:
  """Applies rotary position embeddings. x: [B, T, N, H] (H even); positions: [B, T]."""
  half = x.shape[-1] // 2
  freq = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angle = positions[..., None].astype(jnp.float32) * freq  # [B, T, half]
  sin, cos = jnp.sin(angle)[:, :, None, :], jnp.cos(angle)[:, :, None, :]
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)


_MASKED = -0.7 * float(jnp.finfo(jnp.float32).max)  # a masked logit (finite: no NaN rows)


def causal_attention(q: Array, k: Array, v: Array, key_mask: Array, blocks: int = 1) -> Array:
  """Causal softmax attention, q: [B, T, N, H], k and v: [B, T, K, H] (K divides N: grouped-query
  attention), key_mask: [B, T] (False hides a padded key) -> [B, T, N, H].

  The queries are cut into `blocks` row blocks; block i attends to the keys up to its own end
  only, so the blocks above the diagonal, which the causal mask would zero, are never computed
  (with 4 blocks, 10/16 of the full T x T work). Each block normalises after the value matmul
  (flash-attention style: one division of [B, t, N, H] rather than of the [B, N, t, T]
  probabilities). Logits and the softmax are float32 whatever the input dtype. A query whose
  keys are all masked averages the values of its block's keys (its output is padding anyway).
  """
  b, t, n, h = q.shape
  n_kv = k.shape[2]
  blocks = max(1, min(int(blocks), t))
  qg = q.reshape(b, t, n_kv, n // n_kv, h) * jnp.asarray(h ** -0.5, q.dtype)
  bounds = [round(t * i / blocks) for i in range(blocks + 1)]
  outs = []
  for lo, hi in zip(bounds[:-1], bounds[1:]):
    logits = jnp.einsum("btkgh,bskh->bkgts", qg[:, lo:hi], k[:, :hi],
                        preferred_element_type=jnp.float32)
    allowed = (jnp.arange(hi)[None, :] <= jnp.arange(lo, hi)[:, None])[None, None, None]
    allowed = allowed & key_mask[:, None, None, None, :hi].astype(bool)
    logits = jnp.where(allowed, logits, _MASKED)
    # The max only keeps exp in range; softmax does not depend on it, so no gradient flows.
    p = jnp.exp(logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True)))
    denom = jnp.sum(p, axis=-1)  # [B, K, G, t]
    out = jnp.einsum("bkgts,bskh->btkgh", p.astype(v.dtype), v[:, :hi],
                     preferred_element_type=jnp.float32)
    outs.append(out / jnp.transpose(denom, (0, 3, 1, 2))[..., None])
  return jnp.concatenate(outs, axis=1).reshape(b, t, n, h).astype(q.dtype)


class Attention(nn.Module):
  cfg: ml_collections.ConfigDict

  def _weight(self, name: str, shape: tuple[int, ...], axes: tuple[str, ...], fan_in: int) -> Array:
    init = nn.initializers.truncated_normal(fan_in ** -0.5)
    w = self.param(name, nn.with_logical_partitioning(init, axes), shape, jnp.float32)
    return w.astype(_dtype(self.cfg.dtype))

  @nn.compact
  def __call__(self, x: Array, positions: Array, token_mask: Array, deterministic: bool,
               decode: bool = False) -> Array:
    cfg = self.cfg
    d, n = cfg.d_model, cfg.n_heads
    h = d // n
    n_kv = cfg.n_kv_heads or n
    wq = self._weight("query", (d, n, h), ("embed", "heads", "head_dim"), d)
    wk = self._weight("key", (d, n_kv, h), ("embed", "kv_heads", "head_dim"), d)
    wv = self._weight("value", (d, n_kv, h), ("embed", "kv_heads", "head_dim"), d)
    wo = self._weight("out", (n, h, d), ("heads", "head_dim", "embed"), d)
    q = rotary(jnp.einsum("btd,dnh->btnh", x, wq), positions, cfg.rope_theta)
    k = rotary(jnp.einsum("btd,dnh->btnh", x, wk), positions, cfg.rope_theta)
    v = jnp.einsum("btd,dnh->btnh", x, wv)
    q = nn.with_logical_constraint(q, ("batch", "length", "act_heads", "head_dim"))
    if decode:
      k, v, mask = self._update_cache(k, v, token_mask)
      # mask: [B, 1, Tq, Tk] boolean, True where attention is allowed.
      out = jax.nn.dot_product_attention(q, k, v, mask=mask)
    else:
      blocks = cfg.get("attention_blocks", 0)
      if blocks:
        out = causal_attention(q, k, v, token_mask, blocks)
      else:  # the library's own attention over the full T x T (on GPU it may pick cuDNN's)
        out = jax.nn.dot_product_attention(q, k, v, mask=attention_mask(token_mask))
    out = nn.with_logical_constraint(out, ("batch", "length", "act_heads", "head_dim"))
    out = jnp.einsum("btnh,nhd->btd", out, wo)
    return nn.Dropout(cfg.dropout_rate)(out, deterministic=deterministic)


  def _update_cache(self, k: Array, v: Array, token_mask: Array):
    """KV cache for incremental decoding: writes this call's T keys/values at slot `index`.

    The cache (collection 'cache') has `cfg.max_len` slots shared by the batch; rows are aligned
    by slot (prompts are left-padded), so one index serves every row, and `mask` records which
    slots hold real tokens. Initialise it with `model.init(..., decode=True)` on [B, max_len]
    tokens, then prefill with the prompt and feed one token per call.
    """
    b, t, n_kv, h = k.shape
    s = self.cfg.max_len
    initialised = self.has_variable("cache", "key")
    ck = self.variable("cache", "key", jnp.zeros, (b, s, n_kv, h), k.dtype)
    cv = self.variable("cache", "value", jnp.zeros, (b, s, n_kv, h), v.dtype)
    cm = self.variable("cache", "mask", jnp.zeros, (b, s), bool)
    ci = self.variable("cache", "index", lambda: jnp.zeros((), jnp.int32))
    if not initialised:  # model.init: shapes only
      return k, v, attention_mask(token_mask)
    idx = ci.value
    ck.value = jax.lax.dynamic_update_slice(ck.value, k, (0, idx, 0, 0))
    cv.value = jax.lax.dynamic_update_slice(cv.value, v, (0, idx, 0, 0))
    cm.value = jax.lax.dynamic_update_slice(cm.value, token_mask.astype(bool), (0, idx))
    ci.value = idx + t
    q_slot = idx + jnp.arange(t)
    causal = jnp.arange(s)[None, :] <= q_slot[:, None]  # [T, S]
    return ck.value, cv.value, causal[None, None] & cm.value[:, None, None, :]


class GatedMLP(nn.Module):
  cfg: ml_collections.ConfigDict

  @nn.compact
  def __call__(self, x: Array, deterministic: bool) -> Array:
    cfg = self.cfg
    dtype = _dtype(cfg.dtype)
    dense = lambda feats, axes, name: nn.Dense(feats, use_bias=False, dtype=dtype, name=name,
                                               kernel_init=_kernel_init(axes))
    gate = dense(cfg.d_ff, ("embed", "mlp"), "gate")(x)
    up = dense(cfg.d_ff, ("embed", "mlp"), "up")(x)
    h = nn.with_logical_constraint(nn.silu(gate) * up, ("batch", "length", "act_mlp"))
    out = dense(cfg.d_model, ("mlp", "embed"), "down")(h)
    return nn.Dropout(cfg.dropout_rate)(out, deterministic=deterministic)


class Block(nn.Module):
  cfg: ml_collections.ConfigDict

  @nn.compact
  def __call__(self, x: Array, positions: Array, token_mask: Array, deterministic: bool,
               decode: bool = False) -> Array:
    dtype = _dtype(self.cfg.dtype)
    x = x + Attention(self.cfg, name="attn")(
        RMSNorm(self.cfg.norm_eps, dtype, name="attn_norm")(x), positions, token_mask,
        deterministic, decode)
    x = x + GatedMLP(self.cfg, name="mlp")(
        RMSNorm(self.cfg.norm_eps, dtype, name="mlp_norm")(x), deterministic)
    return nn.with_logical_constraint(x, ("batch", "length", "act_embed"))


def default_positions(mask: Array) -> Array:
  """Positions counting only real tokens: arange for right padding, shifted for left padding."""
  return jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=-1) - 1, 0)


def attention_mask(mask: Array) -> Array:
  """[B, T] validity -> [B, 1, T, T] causal mask that also hides padded keys."""
  t = mask.shape[-1]
  causal = jnp.tril(jnp.ones((t, t), dtype=bool))
  return causal[None, None] & mask[:, None, None, :].astype(bool)


class Decoder(nn.Module):
  """Token ids -> final hidden states [B, T, d_model]; `embed` is exposed for tied LM heads."""
  cfg: ml_collections.ConfigDict

  def setup(self):
    cfg = self.cfg
    self.embed = nn.Embed(
        cfg.vocab_size, cfg.d_model, dtype=_dtype(cfg.dtype),
        embedding_init=nn.with_logical_partitioning(nn.initializers.normal(1.0), ("vocab", "embed")))
    block = nn.remat(Block, static_argnums=(4, 5)) if cfg.remat else Block
    self.blocks = [block(cfg, name=f"block_{i}") for i in range(cfg.n_layers)]
    self.final_norm = RMSNorm(cfg.norm_eps, _dtype(cfg.dtype))
    self.dropout = nn.Dropout(cfg.dropout_rate)

  def __call__(self, tokens: Array, mask: Array | None = None, positions: Array | None = None,
               deterministic: bool = True, decode: bool = False) -> Array:
    """`decode=True` uses and updates the KV cache (see `Attention._update_cache`); positions
    must then be given, as the absolute position of each new token in its row."""
    if mask is None:
      mask = tokens != PAD_ID
    if positions is None:
      if decode and tokens.shape[1] == 1:
        raise ValueError("decoding one token at a time needs explicit positions")
      positions = default_positions(mask)
    x = self.embed(tokens)
    x = self.dropout(x, deterministic=deterministic)
    x = nn.with_logical_constraint(x, ("batch", "length", "act_embed"))
    for block in self.blocks:
      x = block(x, positions, mask, deterministic, decode)
    return self.final_norm(x)
