"""A decoder-only transformer backbone with logical axis names on every parameter.

RMSNorm, rotary positions, causal (grouped-query) attention, gated (SwiGLU) MLP, tied or untied
embeddings. Every size comes from the model config (see `warm_jax.configs.model_config`).

The fields of `warm_jax.configs.DECODER_DEFAULTS` add what the Hugging Face families need
(`warm_jax.pretrained`): an explicit head width, query/key/value biases, query/key RMSNorm,
Gemma's (1 + scale) norms, scaled embeddings and GeGLU, attention and final-logit soft-capping,
sliding-window attention on a pattern of local layers with their own RoPE base, sandwich norms,
llama3 and linear RoPE scaling. A config without them computes exactly what it computed before.

Every parameter is created through `nn.with_logical_partitioning`, so `model.init` returns
`nn.Partitioned` boxes that carry names such as ('embed', 'mlp'); `warm_jax.sharding` maps those
names to mesh axes with the rules table of the config. Stored and averaged parameters are the plain
(unboxed) pytree: a nested dict of arrays.

With config.model.scan_layers the layers run under nn.scan (one layer, or one period of a
local/global pattern, compiled once: compile time and program size stay flat in depth), their
parameters stacked along a leading 'layers' axis; `stack_layers` / `unstack_layers` convert
between the layouts, which compute the same function. config.model.remat_policy names what
rematerialisation keeps (`REMAT_POLICIES`).

Inputs are token ids [batch, length] with `pad_id` (0) marking padding; `mask` and `positions`
default to what right-padding implies but can be passed explicitly (left-padded prompts in
sampling).
"""

from __future__ import annotations

from typing import Any

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from warm_jax.configs import head_dim, is_local_layer, model_field
from warm_jax.models import precision

Array = jax.Array

PAD_ID = 0


_dtype = precision.compute_dtype


def _kernel_init(axes: tuple[str | None, ...]):
  # DenseGeneral initialises the flattened [fan_in, fan_out] kernel, then reshapes it.
  init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
  return nn.with_logical_partitioning(init, axes)


class RMSNorm(nn.Module):
  """RMSNorm over the last axis, in float32: y * scale, or y * (1 + scale) with `plus_one`
  (Gemma's, whose stored scale starts at 0). `axis_name`: the logical name of the scale's axis."""
  eps: float = 1e-6
  dtype: Any = jnp.float32
  plus_one: bool = False
  axis_name: str = "embed"

  @nn.compact
  def __call__(self, x: Array) -> Array:
    init = nn.initializers.zeros if self.plus_one else nn.initializers.ones
    scale = self.param("scale", nn.with_logical_partitioning(init, (self.axis_name,)),
                       (x.shape[-1],), jnp.float32)
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    if self.plus_one:
      return (y * (1.0 + scale.astype(jnp.float32))).astype(self.dtype)
    return (y * scale).astype(self.dtype)


def rope_frequencies(half: int, theta: float, scaling: str = "", factor: float = 1.0,
                     low_freq_factor: float = 1.0, high_freq_factor: float = 4.0,
                     original_max_len: int = 8192) -> np.ndarray:
  """Inverse RoPE frequencies [half] (float32) of base `theta`, scaled as transformers'
  `modeling_rope_utils` scales them: 'linear' divides all by `factor`; 'llama3' divides the low
  frequencies (wavelength above original_max_len / low_freq_factor) by `factor`, keeps the high
  ones (wavelength below original_max_len / high_freq_factor) and interpolates in between."""
  dim = 2 * half
  inv = np.float32(1.0) / (np.float32(theta) ** (np.arange(0, dim, 2).astype(np.float32)
                                                 / np.float32(dim)))
  if scaling == "linear":
    return (inv / np.float32(factor)).astype(np.float32)
  if scaling != "llama3":
    raise ValueError(f"unknown rope scaling {scaling!r}")
  low_wavelen = original_max_len / low_freq_factor
  high_wavelen = original_max_len / high_freq_factor
  wavelen = np.float32(2 * math.pi) / inv
  scaled = np.where(wavelen > low_wavelen, inv / np.float32(factor), inv)
  smooth = (original_max_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
  smoothed = (1 - smooth) * scaled / np.float32(factor) + smooth * scaled
  medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
  return np.where(medium, smoothed, scaled).astype(np.float32)


def layer_rope(cfg: ml_collections.ConfigDict, local: bool) -> tuple[float, np.ndarray | None]:
  """(theta, inverse frequencies or None for plain RoPE of base theta) of a global or local layer:
  local layers with their own base (rope_local_theta) are unscaled; all others use rope_theta and
  the config's scaling."""
  if local and model_field(cfg, "rope_local_theta"):
    return cfg.rope_local_theta, None
  scaling = model_field(cfg, "rope_scaling")
  if not scaling:
    return cfg.rope_theta, None
  return cfg.rope_theta, rope_frequencies(
      head_dim(cfg) // 2, cfg.rope_theta, scaling, model_field(cfg, "rope_scaling_factor"),
      model_field(cfg, "rope_low_freq_factor"), model_field(cfg, "rope_high_freq_factor"),
      model_field(cfg, "rope_original_max_len"))


def _inverse_frequencies(half: int, theta: float, freq: np.ndarray | None) -> np.ndarray:
  """`freq`, or unscaled RoPE's theta ** (-i / half), as float32."""
  if freq is not None:
    return np.asarray(freq, np.float32)
  return (np.float32(theta) ** (-np.arange(half, dtype=np.float32) / np.float32(half))).astype(
      np.float32)


@functools.lru_cache(maxsize=64)
def _rope_table(length: int, half: int, theta: float, freq: tuple | None) -> np.ndarray:
  """[2, length, half] float32: cos and sin of position * frequency for positions 0 .. length-1
  (the angle in float32, as `rotary` computes it, then cos and sin correctly rounded)."""
  inv = _inverse_frequencies(half, theta, None if freq is None else np.asarray(freq, np.float32))
  angle = (np.arange(length, dtype=np.float32)[:, None] * inv[None, :]).astype(np.float64)
  return np.stack([np.cos(angle), np.sin(angle)]).astype(np.float32)


def rotary(x: Array, positions: Array, theta: float, freq: np.ndarray | None = None,
           table_len: int = 0) -> Array:
  """Applies rotary position embeddings. x: [B, T, N, H] (H even); positions: [B, T]; `freq`:
  the H/2 inverse frequencies (default: theta ** (-i / (H/2)), unscaled RoPE).

  `table_len` > 0 promises 0 <= positions < table_len: cos and sin then come from a table built
  once at trace time and gathered per position (a position outside it gives NaN, never a wrong
  angle); XLA:CPU would otherwise evaluate both for every element of x, inside the fused
  rotation, which costs several times the rotation itself. 0: computed from the positions."""
  half = x.shape[-1] // 2
  if table_len:
    table = _rope_table(int(table_len), half, float(theta),
                        None if freq is None else tuple(np.asarray(freq, np.float32).tolist()))
    cos, sin = (jnp.take(jnp.asarray(t), positions, axis=0, mode="fill", fill_value=jnp.nan)
                for t in table)
  else:
    angle = positions[..., None].astype(jnp.float32) * jnp.asarray(
        _inverse_frequencies(half, theta, freq))  # [B, T, half]
    cos, sin = jnp.cos(angle), jnp.sin(angle)
  sin, cos = sin[:, :, None, :], cos[:, :, None, :]
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)


_MASKED = -0.7 * float(jnp.finfo(jnp.float32).max)  # a masked logit (finite: no NaN rows)


def causal_attention(q: Array, k: Array, v: Array, key_mask: Array, blocks: int = 1,
                     scale: float | None = None, softcap: float = 0.0, window: int = 0) -> Array:
  """Causal softmax attention, q: [B, T, N, H], k and v: [B, T, K, H] (K divides N: grouped-query
  attention), key_mask: [B, T] (False hides a padded key) -> [B, T, N, H].

  `scale` multiplies the logits (default H ** -0.5); `softcap` > 0 maps them to
  softcap * tanh(logits / softcap) before masking; `window` > 0 lets query i see keys
  i - window + 1 .. i only (a sliding window; a block then reads only the keys its window spans).

  The queries are cut into `blocks` row blocks; block i attends to the keys up to its own end
  only, so the blocks above the diagonal, which the causal mask would zero, are never computed
  (with 4 blocks, 10/16 of the full T x T work). Each block normalises after the value matmul
  (one division of [B, t, N, H] rather than of the probabilities). The gradient is flash
  attention's: the forward keeps only the output and each query's log-sum-exp, and the backward
  recomputes each block's probabilities from them (`_attention_bwd`), so no [t, T] array lives
  between the passes. Queries, keys and values are laid out heads-major ([B, K, G, T, H]) once
  per call, so every block's matmuls read contiguous slices. Logits and the softmax are float32
  whatever the input dtype; both matmuls of each product accumulate in float32. A query whose
  keys are all masked averages the values of its block's keys (its output is padding anyway).
  """
  blocks = max(1, min(int(blocks), q.shape[1]))
  scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
  return _attention(q, k, v, key_mask.astype(bool), blocks, scale, float(softcap), int(window))


def _dot(spec: str, a: Array, b: Array) -> Array:
  """einsum accumulated (and returned) in float32, whatever the operands' dtype."""
  return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)


def _block_spans(t: int, blocks: int, window: int) -> list[tuple[int, int, int]]:
  """(first query, end, first key) of each query block: its keys run from the first its window
  reaches (0 without a window) to its own end."""
  bounds = [round(t * i / blocks) for i in range(blocks + 1)]
  return [(lo, hi, max(0, lo - window + 1) if window else 0)
          for lo, hi in zip(bounds[:-1], bounds[1:])]


def _block_logits(qh: Array, kh: Array, key_mask: Array, lo: int, hi: int, klo: int,
                  softcap: float, window: int) -> tuple[Array, Array, Array | None]:
  """Masked float32 logits [B, K, G, t, s] of queries lo..hi-1 against keys klo..hi-1, where
  they are allowed, and tanh(logits / softcap) (None without soft-capping) for the gradient."""
  logits = _dot("bkgth,bksh->bkgts", qh[:, :, :, lo:hi], kh[:, :, klo:hi])
  capped = None
  if softcap:
    capped = jnp.tanh(logits / softcap)
    logits = softcap * capped
  k_idx, q_idx = jnp.arange(klo, hi)[None, :], jnp.arange(lo, hi)[:, None]
  allowed = k_idx <= q_idx
  if window:
    allowed = allowed & (k_idx > q_idx - window)
  allowed = allowed[None, None, None] & key_mask[:, None, None, None, klo:hi]
  return jnp.where(allowed, logits, _MASKED), allowed, capped


def _heads_major(x: Array, n_kv: int) -> Array:
  """[B, T, N, H] -> [B, K, G, T, H] (N = K * G)."""
  b, t, n, h = x.shape
  return x.reshape(b, t, n_kv, n // n_kv, h).transpose(0, 2, 3, 1, 4)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7))
def _attention(q, k, v, key_mask, blocks, scale, softcap, window):
  return _attention_fwd(q, k, v, key_mask, blocks, scale, softcap, window)[0]


def _attention_fwd(q, k, v, key_mask, blocks, scale, softcap, window):
  b, t, n, h = q.shape
  n_kv = k.shape[2]
  qh = _heads_major(q * jnp.asarray(scale, q.dtype), n_kv)  # [B, K, G, T, H]
  kh, vh = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # [B, K, T, H]
  outs, lses = [], []
  for lo, hi, klo in _block_spans(t, blocks, window):
    logits = _block_logits(qh, kh, key_mask, lo, hi, klo, softcap, window)[0]
    m = jnp.max(logits, axis=-1, keepdims=True)
    p = jnp.exp(logits - m)
    denom = jnp.sum(p, axis=-1, keepdims=True)  # [B, K, G, t, 1]
    out = _dot("bkgts,bksh->bkgth", p.astype(v.dtype), vh[:, :, klo:hi]) / denom
    outs.append(out.astype(q.dtype))
    lses.append(m + jnp.log(denom))
  oh = jnp.concatenate(outs, axis=3)  # [B, K, G, T, H]
  out = oh.transpose(0, 3, 1, 2, 4).reshape(b, t, n, h)
  return out, (qh, kh, vh, oh, jnp.concatenate(lses, axis=3), key_mask)


def _attention_bwd(blocks, scale, softcap, window, res, g):
  qh, kh, vh, oh, lse, key_mask = res
  b, n_kv, groups, t, h = qh.shape
  dt = qh.dtype
  doh = _heads_major(g.astype(dt), n_kv)
  # d logits = p * (dp - rowsum(dp * p)), and rowsum(dp * p) = rowsum(d out * out).
  delta = jnp.sum(doh.astype(jnp.float32) * oh.astype(jnp.float32), axis=-1, keepdims=True)
  dqs, dk, dv = [], jnp.zeros(kh.shape, jnp.float32), jnp.zeros(vh.shape, jnp.float32)
  for lo, hi, klo in _block_spans(t, blocks, window):
    logits, allowed, capped = _block_logits(qh, kh, key_mask, lo, hi, klo, softcap, window)
    p = jnp.exp(logits - lse[:, :, :, lo:hi])
    do = doh[:, :, :, lo:hi]
    dv_block = _dot("bkgts,bkgth->bksh", p.astype(dt), do)
    dp = _dot("bkgth,bksh->bkgts", do, vh[:, :, klo:hi])
    ds = p * (dp - delta[:, :, :, lo:hi])
    if softcap:
      ds = ds * (1.0 - capped * capped)
    ds = jnp.where(allowed, ds, 0.0).astype(dt)  # a fully masked query passes nothing back
    dqs.append(_dot("bkgts,bksh->bkgth", ds, kh[:, :, klo:hi]))
    dk_block = _dot("bkgts,bkgth->bksh", ds, qh[:, :, :, lo:hi])
    dk = dk.at[:, :, klo:hi].add(dk_block)
    dv = dv.at[:, :, klo:hi].add(dv_block)
  dq = (jnp.concatenate(dqs, axis=3) * scale).transpose(0, 3, 1, 2, 4).reshape(b, t, -1, h)
  return (dq.astype(dt), dk.transpose(0, 2, 1, 3).astype(dt), dv.transpose(0, 2, 1, 3).astype(dt),
          None)


_attention.defvjp(_attention_fwd, _attention_bwd)


def dense_attention(q: Array, k: Array, v: Array, mask: Array, scale: float | None = None,
                    softcap: float = 0.0) -> Array:
  """Softmax attention under a [B, 1, Tq, Tk] boolean mask (True: allowed), q: [B, Tq, N, H], k
  and v: [B, Tk, K, H]. In float32 without soft-capping it is `jax.nn.dot_product_attention`
  (scale None: H ** -0.5); otherwise the same computed here (float32 logits and softmax, both
  matmuls accumulated in float32, see `precision`)."""
  if not softcap and q.dtype == jnp.float32:
    return jax.nn.dot_product_attention(q, k, v, mask=mask, scale=scale)
  b, t, n, h = q.shape
  n_kv = k.shape[2]
  scale = h ** -0.5 if scale is None else scale
  qg = q.reshape(b, t, n_kv, n // n_kv, h) * jnp.asarray(scale, q.dtype)
  logits = precision.einsum("btkgh,bskh->bkgts", qg, k, jnp.float32)
  if softcap:
    logits = softcap * jnp.tanh(logits / softcap)
  logits = jnp.where(mask[:, :, None].astype(bool), logits, _MASKED)
  p = jax.nn.softmax(logits, axis=-1)
  out = precision.einsum("bkgts,bskh->btkgh", p.astype(v.dtype), v, jnp.float32)
  return out.reshape(b, t, n, h).astype(q.dtype)


class Attention(nn.Module):
  """Grouped-query self-attention of one layer; `local`: through the sliding window."""
  cfg: ml_collections.ConfigDict
  local: bool = False

  def _weight(self, name: str, shape: tuple[int, ...], axes: tuple[str, ...], fan_in: int,
              init=None) -> Array:
    init = init or nn.initializers.truncated_normal(fan_in ** -0.5)
    w = self.param(name, nn.with_logical_partitioning(init, axes), shape, jnp.float32)
    return w.astype(_dtype(self.cfg.dtype))

  def _project(self, x: Array, w: Array, name: str, axes: tuple[str, str]) -> Array:
    """x @ w ([B, T, N, H]), plus the projection's bias `<name>_bias` when the config has them."""
    y = precision.einsum("btd,dnh->btnh", x.astype(w.dtype), w)
    if model_field(self.cfg, "qkv_bias"):
      y = y + self._weight(f"{name}_bias", w.shape[1:], axes, 1, nn.initializers.zeros)
    return y

  def _norm(self, y: Array, name: str) -> Array:
    """RMSNorm over head_dim of queries or keys (`<name>_norm`) when the config has it."""
    if not model_field(self.cfg, "qk_norm"):
      return y
    return RMSNorm(self.cfg.norm_eps, _dtype(self.cfg.dtype), model_field(self.cfg, "norm_plus_one"),
                   "head_dim", name=f"{name}_norm")(y)

  @nn.compact
  def __call__(self, x: Array, positions: Array, token_mask: Array, deterministic: bool,
               decode: bool = False) -> Array:
    cfg = self.cfg
    d, n = cfg.d_model, cfg.n_heads
    h = head_dim(cfg)
    n_kv = cfg.n_kv_heads or n
    wq = self._weight("query", (d, n, h), ("embed", "heads", "head_dim"), d)
    wk = self._weight("key", (d, n_kv, h), ("embed", "kv_heads", "head_dim"), d)
    wv = self._weight("value", (d, n_kv, h), ("embed", "kv_heads", "head_dim"), d)
    wo = self._weight("out", (n, h, d), ("heads", "head_dim", "embed"), d)
    theta, freq = layer_rope(cfg, self.local)
    # Outside decoding, positions count real tokens (default_positions): below the length.
    table_len = 0 if decode else x.shape[1]
    q = rotary(self._norm(self._project(x, wq, "query", ("heads", "head_dim")), "query"),
               positions, theta, freq, table_len)
    k = rotary(self._norm(self._project(x, wk, "key", ("kv_heads", "head_dim")), "key"),
               positions, theta, freq, table_len)
    v = self._project(x, wv, "value", ("kv_heads", "head_dim"))
    q = nn.with_logical_constraint(q, ("batch", "length", "act_heads", "head_dim"))
    pre_scalar = model_field(cfg, "query_pre_attn_scalar")
    scale = pre_scalar ** -0.5 if pre_scalar else None
    softcap = model_field(cfg, "attn_logit_softcap")
    window = model_field(cfg, "sliding_window") if self.local else 0
    # Named scopes: profiles (xprof, benchmarks/step_profile.py) tell the KV cache and the attention
    # core (scores, softmax, weighted sum) from the projections around them.
    if decode:
      with jax.named_scope("kv_cache"):
        k, v, mask = self._update_cache(k, v, token_mask, window)
      # mask: [B, 1, Tq, Tk] boolean, True where attention is allowed.
      with jax.named_scope("attention_core"):
        out = dense_attention(q, k, v, mask, scale, softcap)
    else:
      blocks = cfg.get("attention_blocks", 0)
      with jax.named_scope("attention_core"):
        if blocks:
          out = causal_attention(q, k, v, token_mask, blocks, scale, softcap, window)
        else:  # the library's own attention over the full T x T (on GPU it may pick cuDNN's)
          out = dense_attention(q, k, v, attention_mask(token_mask, window), scale, softcap)
    out = nn.with_logical_constraint(out, ("batch", "length", "act_heads", "head_dim"))
    out = precision.einsum("btnh,nhd->btd", out, wo)
    return nn.Dropout(cfg.dropout_rate)(out, deterministic=deterministic)


  def _update_cache(self, k: Array, v: Array, token_mask: Array, window: int = 0):
    """KV cache for incremental decoding: writes this call's T keys/values at slot `index`.

    The cache (collection 'cache') has `cfg.max_len` slots shared by the batch; rows are aligned
    by slot (prompts are left-padded), so one index serves every row, and `mask` records which
    slots hold real tokens. Initialise it with `model.init(..., decode=True)` on [B, max_len]
    tokens, then prefill with the prompt and feed one token per call. `window` > 0: a query sees
    the slots of its last `window` tokens only (real tokens fill consecutive slots).
    """
    b, t, n_kv, h = k.shape
    s = self.cfg.max_len
    initialised = self.has_variable("cache", "key")
    # float32: stored [B, K, H, S], the slots last, the layout both attention matmuls read the
    # keys and values in, so each step writes its own slots and nothing copies the whole cache
    # (stored [B, S, K, H], XLA transposes all of it for every layer and token). Other dtypes keep
    # [B, S, K, H]: read in place, the bfloat16 x bfloat16 -> float32 matmuls would fall to
    # XLA:CPU's plain dot, which has no such kernel.
    slots_last = k.dtype == jnp.float32
    shape = (b, n_kv, h, s) if slots_last else (b, s, n_kv, h)
    ck = self.variable("cache", "key", jnp.zeros, shape, k.dtype)
    cv = self.variable("cache", "value", jnp.zeros, shape, v.dtype)
    cm = self.variable("cache", "mask", jnp.zeros, (b, s), bool)
    ci = self.variable("cache", "index", lambda: jnp.zeros((), jnp.int32))
    if not initialised:  # model.init: shapes only
      return k, v, attention_mask(token_mask, window)
    idx = ci.value
    if slots_last:  # [B, T, K, H] -> [B, K, H, T], written from slot idx of the last axis
      stored, at = (lambda x: jnp.transpose(x, (0, 2, 3, 1))), (0, 0, 0, idx)
    else:
      stored, at = (lambda x: x), (0, idx, 0, 0)
    ck.value = jax.lax.dynamic_update_slice(ck.value, stored(k), at)
    cv.value = jax.lax.dynamic_update_slice(cv.value, stored(v), at)
    cm.value = jax.lax.dynamic_update_slice(cm.value, token_mask.astype(bool), (0, idx))
    ci.value = idx + t
    q_slot = idx + jnp.arange(t)
    causal = jnp.arange(s)[None, :] <= q_slot[:, None]  # [T, S]
    if window:
      causal = causal & (jnp.arange(s)[None, :] > q_slot[:, None] - window)
    as_tokens = (lambda x: jnp.transpose(x, (0, 3, 1, 2))) if slots_last else (lambda x: x)
    return (as_tokens(ck.value), as_tokens(cv.value),  # [B, S, K, H]
            causal[None, None] & cm.value[:, None, None, :])


class GatedMLP(nn.Module):
  cfg: ml_collections.ConfigDict

  @nn.compact
  def __call__(self, x: Array, deterministic: bool) -> Array:
    cfg = self.cfg
    dtype = _dtype(cfg.dtype)
    dense = lambda feats, axes, name: nn.Dense(feats, use_bias=False, dtype=dtype, name=name,
                                               kernel_init=_kernel_init(axes),
                                               dot_general=precision.dot_general())
    gate = dense(cfg.d_ff, ("embed", "mlp"), "gate")(x)
    up = dense(cfg.d_ff, ("embed", "mlp"), "up")(x)
    if model_field(cfg, "mlp_activation") == "gelu_tanh":
      gate = jax.nn.gelu(gate, approximate=True)
    else:
      gate = nn.silu(gate)
    h = nn.with_logical_constraint(gate * up, ("batch", "length", "act_mlp"))
    out = dense(cfg.d_model, ("mlp", "embed"), "down")(h)
    return nn.Dropout(cfg.dropout_rate)(out, deterministic=deterministic)


class Block(nn.Module):
  """Pre-norm attention and MLP with residuals; `post_norms` also normalises each output before
  it is added (Gemma 2/3's sandwich); `local`: the attention uses the sliding window."""
  cfg: ml_collections.ConfigDict
  local: bool = False

  @nn.compact
  def __call__(self, x: Array, positions: Array, token_mask: Array, deterministic: bool,
               decode: bool = False) -> Array:
    dtype = _dtype(self.cfg.dtype)
    plus_one = model_field(self.cfg, "norm_plus_one")
    post = model_field(self.cfg, "post_norms")
    norm = lambda name: RMSNorm(self.cfg.norm_eps, dtype, plus_one, name=name)
    y = Attention(self.cfg, self.local, name="attn")(
        norm("attn_norm")(x), positions, token_mask, deterministic, decode)
    x = x + (norm("post_attn_norm")(y) if post else y)
    y = GatedMLP(self.cfg, name="mlp")(norm("mlp_norm")(x), deterministic)
    x = x + (norm("post_mlp_norm")(y) if post else y)
    return nn.with_logical_constraint(x, ("batch", "length", "act_embed"))


def default_positions(mask: Array) -> Array:
  """Positions counting only real tokens: arange for right padding, shifted for left padding."""
  return jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=-1) - 1, 0)


def attention_mask(mask: Array, window: int = 0) -> Array:
  """[B, T] validity -> [B, 1, T, T] causal mask that also hides padded keys; `window` > 0 also
  hides keys `window` or more tokens back (a sliding window)."""
  t = mask.shape[-1]
  causal = jnp.tril(jnp.ones((t, t), dtype=bool))
  if window:
    causal = causal & ~jnp.tril(jnp.ones((t, t), dtype=bool), -window)
  return causal[None, None] & mask[:, None, None, :].astype(bool)


# config.model.remat_policy -> the jax.checkpoint policy (None: nn.remat's default, which saves
# nothing: the same as jax.checkpoint_policies.nothing_saveable).
REMAT_POLICIES = {
    "nothing_saveable": None,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "everything_saveable": jax.checkpoint_policies.everything_saveable,
}
SCANNED = "layers"  # the decoder's scanned layers (params decoder/layers/sub_<j>/..., [groups, ...])


def block_class(cfg: ml_collections.ConfigDict, scanned: bool = False):
  """Block, or Block under rematerialisation (config.model.remat) with config.model.remat_policy;
  `scanned`: inside nn.scan, where CSE cannot merge the recomputation across iterations anyway."""
  if not cfg.remat:
    return Block
  policy = REMAT_POLICIES[model_field(cfg, "remat_policy")]
  return nn.remat(Block, static_argnums=(4, 5), policy=policy, prevent_cse=not scanned)


def layer_period(cfg: ml_collections.ConfigDict) -> int:
  """The smallest p such that layer i is local exactly when layer i - p is (1 without a
  sliding-window pattern; Gemma 2's 2, Gemma 3's 6): the layers a scanned group holds."""
  local = [is_local_layer(cfg, i) for i in range(cfg.n_layers)]
  return next(p for p in range(1, cfg.n_layers + 1)
              if all(local[i] == local[i - p] for i in range(p, cfg.n_layers)))


def scan_groups(cfg: ml_collections.ConfigDict) -> tuple[int, int]:
  """(groups, period) of a scanned decoder: layers 0 .. groups * period - 1 run as `groups`
  iterations of one group of `period` layers; the rest (n_layers % period) run unscanned."""
  p = layer_period(cfg)
  return cfg.n_layers // p, p


class LayerGroup(nn.Module):
  """One iteration of the scanned decoder: `period` consecutive layers (sub_0 .. sub_{p-1}), with
  the local/global attention of the first period; `(x, ...) -> (x, None)` as nn.scan wants."""
  cfg: ml_collections.ConfigDict
  local: tuple[bool, ...]

  @nn.compact
  def __call__(self, x: Array, positions: Array, token_mask: Array, deterministic: bool,
               decode: bool = False):
    block = block_class(self.cfg, scanned=True)
    for j, local in enumerate(self.local):
      x = block(self.cfg, local, name=f"sub_{j}")(x, positions, token_mask, deterministic, decode)
    return x, None


class Decoder(nn.Module):
  """Token ids -> final hidden states [B, T, d_model]; `embed` is exposed for tied LM heads.

  Layers are `block_0` .. `block_{n-1}`, or with config.model.scan_layers one nn.scan over
  groups of `layer_period` layers (`layers`: each parameter and KV-cache entry stacked along a
  leading axis named 'layers', replicated by the sharding rules) followed by the remaining
  `block_<i>`; both compute the same function (`stack_layers` / `unstack_layers` convert)."""
  cfg: ml_collections.ConfigDict

  def setup(self):
    cfg = self.cfg
    self.embed = nn.Embed(
        cfg.vocab_size, cfg.d_model, dtype=_dtype(cfg.dtype),
        embedding_init=nn.with_logical_partitioning(nn.initializers.normal(1.0), ("vocab", "embed")))
    first = 0
    if model_field(cfg, "scan_layers"):
      groups, period = scan_groups(cfg)
      first = groups * period
      self.layers = nn.scan(
          LayerGroup, variable_axes={"params": 0, "cache": 0},
          split_rngs={"params": True, "dropout": True}, in_axes=(nn.broadcast,) * 4,
          length=groups, metadata_params={nn.PARTITION_NAME: "layers"},
      )(cfg, tuple(is_local_layer(cfg, j) for j in range(period)), name=SCANNED)
    block = block_class(cfg)
    self.blocks = [block(cfg, is_local_layer(cfg, i), name=f"block_{i}")
                   for i in range(first, cfg.n_layers)]
    self.final_norm = RMSNorm(cfg.norm_eps, _dtype(cfg.dtype), model_field(cfg, "norm_plus_one"))
    self.dropout = nn.Dropout(cfg.dropout_rate)

  def __call__(self, tokens: Array, mask: Array | None = None, positions: Array | None = None,
               deterministic: bool = True, decode: bool = False) -> Array:
    """`decode=True` uses and updates the KV cache (see `Attention._update_cache`); positions
    must then be given, as the absolute position of each new token in its row. Outside decoding,
    explicit positions must lie in [0, length) (as `default_positions` of any mask does): the
    rotary angles come from a table of that length, and a position outside it yields NaN."""
    if mask is None:
      mask = tokens != PAD_ID
    if positions is None:
      if decode and tokens.shape[1] == 1:
        raise ValueError("decoding one token at a time needs explicit positions")
      positions = default_positions(mask)
    x = self.embed(tokens)
    if model_field(self.cfg, "scale_embeddings"):  # the factor in float32, then the compute dtype
      x = x * jnp.asarray(np.float32(math.sqrt(self.cfg.d_model)), x.dtype)
    x = self.dropout(x, deterministic=deterministic)
    x = nn.with_logical_constraint(x, ("batch", "length", "act_embed"))
    if model_field(self.cfg, "scan_layers"):
      x, _ = self.layers(x, positions, mask, deterministic, decode)
    for block in self.blocks:
      x = block(x, positions, mask, deterministic, decode)
    return self.final_norm(x)


# ------------------------------------------------------------------------- the two layer layouts

def is_scanned(decoder_params: dict) -> bool:
  """Whether a decoder's params (or any tree with its keys) are in the scanned layout."""
  return SCANNED in decoder_params


def stack_layers(decoder_params: dict, cfg: ml_collections.ConfigDict) -> dict:
  """Unscanned decoder params (block_0 .. block_{n-1}) -> the scanned layout of `cfg`: layer
  g * period + j becomes index g of layers/sub_j; the layers past the last whole group stay."""
  groups, period = scan_groups(cfg)
  out = {k: v for k, v in decoder_params.items()
         if not (k.startswith("block_") and int(k[6:]) < groups * period)}
  out[SCANNED] = {f"sub_{j}": jax.tree.map(
      lambda *xs: jnp.stack(xs), *[decoder_params[f"block_{g * period + j}"] for g in range(groups)])
      for j in range(period)}
  return out


def unstack_layers(decoder_params: dict, cfg: ml_collections.ConfigDict) -> dict:
  """Scanned decoder params -> the unscanned layout (block_0 .. block_{n-1}); the inverse of
  `stack_layers`."""
  groups, period = scan_groups(cfg)
  out = {k: v for k, v in decoder_params.items() if k != SCANNED}
  for j in range(period):
    sub = decoder_params[SCANNED][f"sub_{j}"]
    for g in range(groups):
      out[f"block_{g * period + j}"] = jax.tree.map(lambda x: x[g], sub)
  return out


def convert_layers(params: dict, cfg: ml_collections.ConfigDict) -> dict:
  """Model params (a tree holding 'decoder') in the layer layout `cfg` asks for
  (config.model.scan_layers), whichever layout they are in."""
  decoder = params["decoder"]
  want = bool(model_field(cfg, "scan_layers"))
  if is_scanned(decoder) == want:
    return params
  return {**params, "decoder": stack_layers(decoder, cfg) if want else unstack_layers(decoder, cfg)}
