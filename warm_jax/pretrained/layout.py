"""Where each warm_jax parameter lives in a Hugging Face checkpoint, and how its layout differs.

All seven families name their tensors alike (`model.layers.<i>.self_attn.q_proj.weight`, ...);
what differs is which tensors exist (q/k/v biases, q/k norms, sandwich norms, an untied
`lm_head`, the classifier's `score`), and that follows from the warm_jax model config. Each
`TensorMap` says: warm_jax param = transpose(reshape(hf_tensor, split), perm), e.g. a query kernel
[d, n, h] is q_proj.weight [n*h, d] reshaped to [n, h, d] and transposed by (2, 0, 1). Import
applies that to mmap'd views (so each device shard reads only its slice); export applies the
inverse.
"""

from __future__ import annotations

import dataclasses
import math

import ml_collections
import numpy as np

from warm_jax import configs

LM, RM = "lm", "rm"


@dataclasses.dataclass(frozen=True)
class TensorMap:
  path: tuple[str, ...]  # the warm_jax param path, e.g. ('decoder', 'block_0', 'attn', 'query')
  name: str  # the HF tensor name
  split: tuple[int, ...]  # the HF tensor reshaped (its true shape is hf_shape)
  perm: tuple[int, ...]  # then transposed into the warm_jax layout
  hf_shape: tuple[int, ...]

  @property
  def shape(self) -> tuple[int, ...]:
    """The warm_jax parameter's shape."""
    return tuple(self.split[p] for p in self.perm)

  def to_warm(self, hf_array: np.ndarray) -> np.ndarray:
    """The warm_jax view of an HF tensor (a view: no copy while hf_array is one)."""
    return hf_array.reshape(self.split).transpose(self.perm)

  def to_hf(self, warm_array: np.ndarray) -> np.ndarray:
    """The HF tensor of a warm_jax parameter."""
    return np.asarray(warm_array).transpose(np.argsort(self.perm)).reshape(self.hf_shape)

  @property
  def where(self) -> str:
    return "/".join(self.path)


def _map(path, name, split, perm, hf_shape=None) -> TensorMap:
  return TensorMap(tuple(path), name, tuple(split), tuple(perm),
                   tuple(hf_shape) if hf_shape is not None else tuple(split))


def _as_is(path, name, shape) -> TensorMap:
  return _map(path, name, shape, tuple(range(len(shape))))


def _linear(path, name, d_in, d_out) -> TensorMap:
  """nn.Dense kernel [in, out] <- torch Linear weight [out, in]."""
  return _map(path, name, (d_out, d_in), (1, 0))


def tensor_layout(cfg: ml_collections.ConfigDict, kind: str) -> list[TensorMap]:
  """Every parameter of a warm_jax LanguageModel (kind 'lm'; its PPO value head aside) or
  RewardModel (kind 'rm') with its HF tensor, in HF's usual order."""
  f = lambda name: configs.model_field(cfg, name)
  d, n, ff, v = cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.vocab_size
  h = configs.head_dim(cfg)
  n_kv = cfg.n_kv_heads or n
  out = [_as_is(("decoder", "embed", "embedding"), "model.embed_tokens.weight", (v, d))]
  for i in range(cfg.n_layers):
    p, w = f"model.layers.{i}.", ("decoder", f"block_{i}")
    a = w + ("attn",)
    norm = lambda sub, name, width=d: _as_is(w + sub + ("scale",), p + name, (width,))
    out.append(norm(("attn_norm",), "input_layernorm.weight"))
    for proj, heads in (("query", n), ("key", n_kv), ("value", n_kv)):
      hf = p + f"self_attn.{proj[0]}_proj."
      out.append(_map(a + (proj,), hf + "weight", (heads, h, d), (2, 0, 1), (heads * h, d)))
      if f("qkv_bias"):
        out.append(_map(a + (f"{proj}_bias",), hf + "bias", (heads, h), (0, 1), (heads * h,)))
    if f("qk_norm"):
      out.append(norm(("attn", "query_norm"), "self_attn.q_norm.weight", h))
      out.append(norm(("attn", "key_norm"), "self_attn.k_norm.weight", h))
    out.append(_map(a + ("out",), p + "self_attn.o_proj.weight", (d, n, h), (1, 2, 0), (d, n * h)))
    if f("post_norms"):
      out.append(norm(("post_attn_norm",), "post_attention_layernorm.weight"))
      out.append(norm(("mlp_norm",), "pre_feedforward_layernorm.weight"))
      out.append(norm(("post_mlp_norm",), "post_feedforward_layernorm.weight"))
    else:
      out.append(norm(("mlp_norm",), "post_attention_layernorm.weight"))
    out.append(_linear(w + ("mlp", "gate", "kernel"), p + "mlp.gate_proj.weight", d, ff))
    out.append(_linear(w + ("mlp", "up", "kernel"), p + "mlp.up_proj.weight", d, ff))
    out.append(_linear(w + ("mlp", "down", "kernel"), p + "mlp.down_proj.weight", ff, d))
  out.append(_as_is(("decoder", "final_norm", "scale"), "model.norm.weight", (d,)))
  if kind == LM and not cfg.tie_embeddings:
    out.append(_linear(("lm_head", "kernel"), "lm_head.weight", d, v))
  if kind == RM:
    out.append(_linear(("reward_head", "kernel"), "score.weight", d, 1))
  return out


def check_layout(layout: list[TensorMap], abstract_params: dict) -> None:
  """The layout covers exactly the model's parameters, with their shapes (an internal check:
  a failure is a bug of this module, not of the checkpoint)."""
  flat = {}

  def walk(tree, prefix):
    for k, val in tree.items():
      if isinstance(val, dict):
        walk(val, prefix + (k,))
      else:
        flat[prefix + (k,)] = tuple(val.shape)
  walk(abstract_params, ())
  mapped = {m.path: m.shape for m in layout}
  missing = sorted(set(flat) - set(mapped) - {("reward_head", "bias")})
  extra = sorted(set(mapped) - set(flat))
  wrong = sorted(p for p in set(flat) & set(mapped) if flat[p] != mapped[p])
  if missing or extra or wrong:
    raise AssertionError(f"layout vs model: unmapped {missing}, unknown {extra}, shapes {wrong}")
  assert all(math.prod(m.split) == math.prod(m.hf_shape) for m in layout)
