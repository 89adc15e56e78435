"""Hugging Face model families: their config.json <-> warm_jax model configs.

Families: llama (Llama 2, 3, 3.1, 3.2), mistral, qwen2 (Qwen2, Qwen2.5), qwen3, gemma, gemma2,
gemma3_text (and the text part of a multimodal gemma3 config). `model_config_from_hf` reads a
config.json the way transformers 5.x reads it (a missing key means the config class's default;
both the older keys `rope_theta` / `rope_scaling` / `rope_local_base_freq` /
`sliding_window_pattern` and the newer `rope_parameters` / `layer_types` are understood) and
returns the warm_jax model config that computes the same function. A key warm_jax does not know, or
knows only at some values (rope types other than default/linear/llama3, mlp_bias, an
attention_bias that would also bias the output projection, a bidirectional Gemma, a Qwen sliding
window on some layers only, ...), fails naming the file, the key and its value. Keys that do not
change the function (architectures, dtype, token ids, generation defaults, ...) are accepted.

`hf_config_from_model` goes the other way for export: the config.json transformers 5.24 writes
for the family (the same keys, in the same layout), with `architectures` naming the
`*ForCausalLM` or `*ForSequenceClassification` class. `infer_family` picks the family of a warm_jax
model from its fields (a model trained here, Llama-like, is llama) and `check_exportable` refuses a
field the family cannot express.

The produced warm_jax configs are canonical: a field equal to what its default means is stored
as the default (head_dim = d_model / n_heads as 0, n_kv_heads = n_heads as 0, ...), so the same
function has the same architecture fingerprint however it was described.
"""

from __future__ import annotations

import math
from typing import Any

import ml_collections

from warm_jax import configs
from warm_jax.errors import InputError
from warm_jax.pretrained.layout import LM, RM

LAYOUT_VERSION = "5.24.0"  # the transformers version whose config.json layout export writes

# name -> (*ForCausalLM, *ForSequenceClassification) of the export
CLASSES = {
    "llama": ("LlamaForCausalLM", "LlamaForSequenceClassification"),
    "mistral": ("MistralForCausalLM", "MistralForSequenceClassification"),
    "qwen2": ("Qwen2ForCausalLM", "Qwen2ForSequenceClassification"),
    "qwen3": ("Qwen3ForCausalLM", "Qwen3ForSequenceClassification"),
    "gemma": ("GemmaForCausalLM", "GemmaForSequenceClassification"),
    "gemma2": ("Gemma2ForCausalLM", "Gemma2ForSequenceClassification"),
    "gemma3_text": ("Gemma3ForCausalLM", "Gemma3TextForSequenceClassification"),
}
FAMILIES = tuple(CLASSES)
GEMMAS = ("gemma", "gemma2", "gemma3_text")
SANDWICH = ("gemma2", "gemma3_text")  # post-attention / post-MLP norms, soft-capping, windows

_BASE = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
             num_attention_heads=32, num_key_value_heads=None, head_dim=None, hidden_act="silu",
             max_position_embeddings=2048, rms_norm_eps=1e-6, tie_word_embeddings=False,
             rope_theta=10_000.0, attention_bias=False)
# The defaults of transformers' config classes for the keys read here: what a config.json
# without the key means (configs saved by transformers 4.x omit some keys equal to them, and a
# multimodal gemma3 config's text_config lists only a few).
HF_DEFAULTS = {
    "llama": dict(_BASE, mlp_bias=False),
    "mistral": dict(_BASE, intermediate_size=14336, num_key_value_heads=8,
                    max_position_embeddings=131072, sliding_window=4096),
    "qwen2": dict(_BASE, vocab_size=151936, intermediate_size=22016, num_key_value_heads=32,
                  max_position_embeddings=32768, use_sliding_window=False, sliding_window=4096,
                  max_window_layers=28),
    "qwen3": dict(_BASE, vocab_size=151936, intermediate_size=22016, num_key_value_heads=32,
                  head_dim=128, max_position_embeddings=32768, use_sliding_window=False,
                  sliding_window=4096, max_window_layers=28),
    "gemma": dict(_BASE, vocab_size=256000, hidden_size=3072, intermediate_size=24576,
                  num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=16,
                  head_dim=256, hidden_act="gelu_pytorch_tanh", max_position_embeddings=8192,
                  tie_word_embeddings=True),
    "gemma2": dict(_BASE, vocab_size=256000, hidden_size=2304, intermediate_size=9216,
                   num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4,
                   head_dim=256, hidden_act=None, hidden_activation="gelu_pytorch_tanh",
                   max_position_embeddings=8192, tie_word_embeddings=True,
                   query_pre_attn_scalar=256, sliding_window=4096, final_logit_softcapping=30.0,
                   attn_logit_softcapping=50.0),
    "gemma3_text": dict(_BASE, vocab_size=262208, hidden_size=2304, intermediate_size=9216,
                        num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4,
                        head_dim=256, hidden_act=None, hidden_activation="gelu_pytorch_tanh",
                        max_position_embeddings=131072, tie_word_embeddings=True,
                        query_pre_attn_scalar=256, sliding_window=4096,
                        final_logit_softcapping=None, attn_logit_softcapping=None,
                        rope_theta=1_000_000.0, rope_local_base_freq=10_000.0,
                        sliding_window_pattern=6),
}

# Keys that never change the function a checkpoint computes: accepted whatever their value.
NEUTRAL_KEYS = frozenset("""
architectures model_type transformers_version dtype torch_dtype _name_or_path initializer_range
use_cache bos_token_id eos_token_id pad_token_id sep_token_id decoder_start_token_id
attention_dropout id2label label2id num_labels problem_type tokenizer_class pretraining_tp
return_dict output_hidden_states output_attentions torchscript use_bfloat16 tf_legacy_loss
chunk_size_feed_forward is_decoder cross_attention_hidden_size tie_encoder_decoder finetuning_task
prefix task_specific_params max_length min_length do_sample early_stopping num_beams
num_beam_groups diversity_penalty temperature top_k top_p typical_p repetition_penalty
length_penalty no_repeat_ngram_size encoder_no_repeat_ngram_size bad_words_ids
num_return_sequences output_scores return_dict_in_generate forced_bos_token_id
forced_eos_token_id remove_invalid_values exponential_decay_length_penalty suppress_tokens
begin_suppress_tokens cache_implementation attn_implementation _attn_implementation
_attn_implementation_autoset max_window_layers
""".split())
# Keys that must hold one of these values (None: absent/null).
REQUIRED_VALUES = {
    "is_encoder_decoder": (False, None), "add_cross_attention": (False, None),
    "pruned_heads": ({}, None), "use_bidirectional_attention": (False, None),
    "mlp_bias": (False, None), "partial_rotary_factor": (1.0, None), "use_mrope": (False, None),
}
_COMMON_KEYS = frozenset("""
vocab_size hidden_size intermediate_size num_hidden_layers num_attention_heads
num_key_value_heads head_dim rms_norm_eps tie_word_embeddings max_position_embeddings
rope_parameters rope_theta rope_scaling hidden_act attention_bias
""".split())
ARCH_KEYS = {
    "llama": _COMMON_KEYS,
    "mistral": _COMMON_KEYS | {"sliding_window", "layer_types"},
    "qwen2": _COMMON_KEYS | {"use_sliding_window", "sliding_window", "layer_types"},
    "qwen3": _COMMON_KEYS | {"use_sliding_window", "sliding_window", "layer_types"},
    "gemma": _COMMON_KEYS | {"hidden_activation"},
    "gemma2": _COMMON_KEYS | {"hidden_activation", "query_pre_attn_scalar", "sliding_window",
                              "layer_types", "final_logit_softcapping", "attn_logit_softcapping"},
    "gemma3_text": _COMMON_KEYS | {"hidden_activation", "query_pre_attn_scalar", "sliding_window",
                                   "layer_types", "final_logit_softcapping",
                                   "attn_logit_softcapping", "rope_local_base_freq",
                                   "sliding_window_pattern", "_sliding_window_pattern"},
}
_ROPE_KEYS = {"rope_type", "type", "rope_theta", "factor", "low_freq_factor", "high_freq_factor",
              "original_max_position_embeddings", "partial_rotary_factor"}
_GELU_TANH = ("gelu_pytorch_tanh", "gelu_tanh")


class ConfigError(InputError):
  """A config.json warm_jax cannot read as it is meant: names the file, the key and its value."""


def _fail(where: str, key: str, value, why: str):
  raise ConfigError(f"{where}: {key}={value!r}: {why}")


class _Reader:
  """Reads the keys of one family's config.json: present values, else the class defaults."""

  def __init__(self, hf: dict, family: str, where: str):
    self.hf, self.family, self.where = hf, family, where
    self.defaults = HF_DEFAULTS[family]

  def __call__(self, key: str):
    return self.hf[key] if key in self.hf else self.defaults.get(key)

  def fail(self, key: str, why: str, value: Any = "<from the key>"):
    _fail(self.where, key, self(key) if value == "<from the key>" else value, why)

  def int(self, key: str, lo: int = 1) -> int:
    v = self(key)
    if not (isinstance(v, int) and not isinstance(v, bool) and v >= lo):
      self.fail(key, f"must be an integer >= {lo}")
    return v

  def number(self, key: str, value=None, positive: bool = True) -> float:
    v = self(key) if value is None else value
    if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and (v > 0 or not positive)):
      self.fail(key, "must be a positive finite number", v)
    return float(v)


def check_keys(hf: dict, family: str, where: str) -> None:
  """Every key is one the family's converter reads, one that does not change the function, or
  one with an allowed value; anything else fails naming it."""
  for key, value in sorted(hf.items()):
    if key in REQUIRED_VALUES:
      if value not in REQUIRED_VALUES[key]:
        _fail(where, key, value, f"warm_jax supports only {REQUIRED_VALUES[key][0]!r} here")
    elif key not in ARCH_KEYS[family] and key not in NEUTRAL_KEYS:
      _fail(where, key, value, f"not a field warm_jax knows for model_type {family!r}; it may "
            "change the function, so the checkpoint is refused")


def _rope_one(r: _Reader, params: dict, key: str) -> dict:
  """One RoPE parameter dict (rope_type/type, rope_theta, scaling keys) -> warm_jax fields."""
  if not isinstance(params, dict):
    r.fail(key, "must be an object of RoPE parameters", params)
  unknown = sorted(set(params) - _ROPE_KEYS)
  if unknown:
    _fail(r.where, f"{key}.{unknown[0]}", params[unknown[0]], "not a RoPE parameter warm_jax "
          "supports")
  if params.get("partial_rotary_factor", 1.0) != 1.0:
    _fail(r.where, f"{key}.partial_rotary_factor", params["partial_rotary_factor"],
          "warm_jax rotates the whole head (only 1.0 is supported)")
  kind = params.get("rope_type", params.get("type", "default"))
  theta = r.number(f"{key}.rope_theta", params.get("rope_theta"))
  out = dict(rope_theta=theta, rope_scaling="", rope_scaling_factor=1.0)
  if kind == "default":
    return out
  if kind not in ("linear", "llama3"):
    _fail(r.where, f"{key}.rope_type", kind, "warm_jax supports RoPE types default, linear and "
          "llama3 only")
  out.update(rope_scaling=kind, rope_scaling_factor=r.number(f"{key}.factor", params.get("factor")))
  if kind == "llama3":
    low = r.number(f"{key}.low_freq_factor", params.get("low_freq_factor"))
    high = r.number(f"{key}.high_freq_factor", params.get("high_freq_factor"))
    if high <= low:
      _fail(r.where, f"{key}.high_freq_factor", high, f"must exceed low_freq_factor={low}")
    orig = params.get("original_max_position_embeddings", r("max_position_embeddings"))
    if not (isinstance(orig, int) and orig > 0):
      _fail(r.where, f"{key}.original_max_position_embeddings", orig, "must be a positive integer")
    out.update(rope_low_freq_factor=low, rope_high_freq_factor=high, rope_original_max_len=orig)
  return out


def _rope_params(r: _Reader) -> tuple[dict, str]:
  """The effective RoPE dict of a one-RoPE family, as transformers merges it: `rope_scaling`
  (older configs) wins over `rope_parameters`; `rope_theta` fills a missing base."""
  scaling = r.hf.get("rope_scaling")
  if scaling:
    params, key = dict(scaling), "rope_scaling"
  else:
    params, key = dict(r.hf.get("rope_parameters") or {}), "rope_parameters"
  params.setdefault("rope_theta", r("rope_theta"))
  return params, key


def _rope_fields(r: _Reader) -> dict:
  if r.family != "gemma3_text":
    params, key = _rope_params(r)
    return _rope_one(r, params, key)
  # Gemma 3: full_attention layers (rope_theta, scaled by rope_scaling) and sliding_attention
  # layers (rope_local_base_freq, unscaled); newer configs nest both under rope_parameters.
  nested = r.hf.get("rope_parameters")
  if nested and set(nested) <= {"full_attention", "sliding_attention"}:
    full = dict(nested.get("full_attention") or {})
    local = dict(nested.get("sliding_attention") or {})
  elif nested:
    _fail(r.where, "rope_parameters", nested, "a gemma3 config nests its RoPE parameters by layer "
          "type (full_attention, sliding_attention)")
  else:
    full, local = {}, {}
  if r.hf.get("rope_scaling"):
    full.update(r.hf["rope_scaling"])
  full.setdefault("rope_theta", r("rope_theta"))
  local.setdefault("rope_theta", r("rope_local_base_freq"))
  out = _rope_one(r, full, "rope_parameters.full_attention")
  local_fields = _rope_one(r, local, "rope_parameters.sliding_attention")
  if local_fields["rope_scaling"]:
    _fail(r.where, "rope_parameters.sliding_attention.rope_type", local_fields["rope_scaling"],
          "warm_jax scales the RoPE of global layers only")
  same = local_fields["rope_theta"] == out["rope_theta"] and not out["rope_scaling"]
  out["rope_local_theta"] = 0.0 if same else local_fields["rope_theta"]
  return out


def _layer_types(r: _Reader, n_layers: int) -> tuple[list[bool], int]:
  """(is_sliding per layer, window) as transformers decides them for the family; window 0: none."""
  fam, given = r.family, r.hf.get("layer_types")
  if given is not None and (not isinstance(given, list) or len(given) != n_layers or not set(
      given) <= {"full_attention", "sliding_attention"}):
    r.fail("layer_types", f"must list 'full_attention' / 'sliding_attention' for each of the "
           f"{n_layers} layers")
  if fam in ("llama", "gemma"):
    return [False] * n_layers, 0
  if fam == "mistral":  # transformers' Mistral ignores layer_types: every layer or none
    window = r("sliding_window") or 0
    if given is not None and set(given) != {"sliding_attention" if window else "full_attention"}:
      r.fail("layer_types", "MistralModel applies sliding_window to every layer (or none), "
             "whatever layer_types says; this one disagrees")
    return [bool(window)] * n_layers, window
  if fam in ("qwen2", "qwen3"):
    if not r("use_sliding_window"):
      if given is not None and "sliding_attention" in given:
        r.fail("layer_types", "lists sliding layers but use_sliding_window is false")
      return [False] * n_layers, 0
    sliding = ([t == "sliding_attention" for t in given] if given is not None else
               [i >= r.int("max_window_layers", 0) for i in range(n_layers)])
    return sliding, r.int("sliding_window")
  if given is not None:
    sliding = [t == "sliding_attention" for t in given]
  else:
    pattern = 2 if fam == "gemma2" else (r.hf.get("sliding_window_pattern")
                                         or r.hf.get("_sliding_window_pattern")
                                         or r.defaults["sliding_window_pattern"])
    sliding = [bool((i + 1) % pattern) for i in range(n_layers)]
  return sliding, (r.int("sliding_window") if any(sliding) else 0)


def window_pattern(sliding: list[bool]) -> int | None:
  """warm_jax's sliding_window_pattern for a per-layer list (0: every layer local; P: layer i
  global iff (i + 1) % P == 0), or None when no pattern gives the list."""
  n = len(sliding)
  if all(sliding):
    return 0
  for p in range(1, n + 1):
    if [bool((i + 1) % p) for i in range(n)] == list(sliding):
      return p
  return None


def _activation(r: _Reader) -> str:
  if r.family in GEMMAS:
    # Gemma 1 configs say hidden_act "gelu" and mean the tanh approximation (transformers maps it).
    for key in ("hidden_act", "hidden_activation"):
      if r(key) is not None and r(key) not in _GELU_TANH + ("gelu",):
        r.fail(key, "Gemma's MLP is GeGLU with the tanh approximation (gelu_pytorch_tanh)")
    return "gelu_tanh"
  if r("hidden_act") != "silu":
    r.fail("hidden_act", "warm_jax's MLP of this family is SwiGLU: only 'silu' is supported")
  return "silu"


def _softcap(r: _Reader, key: str) -> float:
  v = r(key)
  return 0.0 if v is None else r.number(key)


def model_config_from_hf(hf: dict, family: str, where: str, dtype: str = "float32",
                         max_len: int | None = None) -> ml_collections.ConfigDict:
  """The warm_jax model config of a family's config.json (`where` names it in errors); dtype is
  the compute dtype, max_len the decode cache size (default: max_position_embeddings)."""
  check_keys(hf, family, where)
  r = _Reader(hf, family, where)
  d, n_heads, n_layers = r.int("hidden_size"), r.int("num_attention_heads"), r.int("num_hidden_layers")
  n_kv = r("num_key_value_heads") or n_heads
  if not (isinstance(n_kv, int) and n_heads % n_kv == 0):
    r.fail("num_key_value_heads", f"must divide num_attention_heads={n_heads}")
  hd = r("head_dim") or d // n_heads
  if not (isinstance(hd, int) and hd > 0 and hd % 2 == 0):
    r.fail("head_dim", "must be a positive even integer (rotary embeddings)", hd)
  if r("attention_bias") and family != "qwen2":
    r.fail("attention_bias", f"{family} then biases the output projection too, which warm_jax's "
           "attention does not have (only q/k/v biases, as Qwen2's)")
  sliding, window = _layer_types(r, n_layers)
  window = window if any(sliding) else 0
  pattern = window_pattern(sliding) if window else 0
  if pattern is None:
    r.fail("layer_types", "warm_jax's local layers follow a period (every layer, or all but "
           "each P-th); this per-layer list has none", ["sliding" if s else "full" for s in sliding])
  fields = dict(
      vocab_size=r.int("vocab_size"), d_model=d, n_layers=n_layers, n_heads=n_heads,
      n_kv_heads=0 if n_kv == n_heads else n_kv, d_ff=r.int("intermediate_size"),
      max_len=max_len or r.int("max_position_embeddings"), dropout_rate=0.0,
      tie_embeddings=bool(r("tie_word_embeddings")), norm_eps=r.number("rms_norm_eps"),
      dtype=dtype, remat=False, attention_blocks=4)
  fields.update(configs.DECODER_DEFAULTS)
  fields.update(_rope_fields(r))
  qpas = r("query_pre_attn_scalar") if family in SANDWICH else None
  fields.update(
      head_dim=0 if (hd == d // n_heads and d % n_heads == 0) else hd,
      qkv_bias=family == "qwen2",
      qk_norm=family in ("qwen3", "gemma3_text"),
      norm_plus_one=family in GEMMAS, scale_embeddings=family in GEMMAS,
      mlp_activation=_activation(r),
      attn_logit_softcap=_softcap(r, "attn_logit_softcapping") if family in SANDWICH else 0.0,
      final_logit_softcap=_softcap(r, "final_logit_softcapping") if family in SANDWICH else 0.0,
      sliding_window=window, sliding_window_pattern=pattern if window else 0,
      post_norms=family in SANDWICH,
      query_pre_attn_scalar=0.0 if qpas is None or qpas == hd else r.number("query_pre_attn_scalar"),
      scale_tied_logits=False, reward_head_bias=False)
  cfg = ml_collections.ConfigDict(fields)
  configs.validate_model(cfg)
  return cfg


# ----------------------------------------------------------------------------------------------
# Export: warm_jax model config -> config.json.


def infer_family(cfg: ml_collections.ConfigDict) -> str:
  """The family whose layout expresses a warm_jax model: Gemma's by their (1 + w) norms, Qwen3 by
  q/k norms, Qwen2 by q/k/v biases, Mistral by a window on every layer; Llama otherwise (models
  trained here)."""
  f = lambda name: configs.model_field(cfg, name)
  if f("norm_plus_one"):
    if not f("post_norms"):
      return "gemma"
    return "gemma3_text" if f("qk_norm") else "gemma2"
  if f("qk_norm"):
    return "qwen3"
  if f("qkv_bias"):
    return "qwen2"
  if f("sliding_window"):
    return "mistral"
  return "llama"


def check_exportable(cfg: ml_collections.ConfigDict, family: str) -> None:
  """Fails naming the first field of `cfg` that the family's transformers model cannot express."""
  if family not in CLASSES:
    raise ValueError(f"unknown family {family!r}; choose one of {FAMILIES}")
  f = lambda name: configs.model_field(cfg, name)
  gemma, sandwich = family in GEMMAS, family in SANDWICH
  hd = configs.head_dim(cfg)
  need = dict(
      norm_plus_one=gemma, scale_embeddings=gemma,
      mlp_activation="gelu_tanh" if gemma else "silu", post_norms=sandwich,
      qk_norm=family in ("qwen3", "gemma3_text"), qkv_bias=family == "qwen2")
  for name, value in need.items():
    if f(name) != value:
      raise ValueError(f"config.model.{name}={f(name)!r}: {CLASSES[family][0]} needs {value!r}")
  if not sandwich:
    for name in ("attn_logit_softcap", "final_logit_softcap"):
      if f(name):
        raise ValueError(f"config.model.{name}={f(name)!r}: {family} has no soft-capping")
    if f("query_pre_attn_scalar") not in (0, hd):
      raise ValueError(f"config.model.query_pre_attn_scalar={f('query_pre_attn_scalar')!r}: "
                       f"{family} scales attention by head_dim ** -0.5")
  if f("sliding_window") and family not in ("mistral",) + SANDWICH:
    raise ValueError(f"config.model.sliding_window={f('sliding_window')!r}: {family} has no "
                     "sliding window")
  if family == "mistral" and f("sliding_window") and f("sliding_window_pattern"):
    raise ValueError(f"config.model.sliding_window_pattern={f('sliding_window_pattern')!r}: "
                     "Mistral applies its window to every layer (pattern 0)")
  if f("rope_local_theta") and family != "gemma3_text":
    raise ValueError(f"config.model.rope_local_theta={f('rope_local_theta')!r}: only gemma3 has a "
                     "RoPE base of its own for local layers")


def _rope_dict(theta: float, cfg, scaled: bool = True) -> dict:
  f = lambda name: configs.model_field(cfg, name)
  out = {"rope_theta": float(theta), "rope_type": "default"}
  if scaled and f("rope_scaling"):
    out.update(rope_type=f("rope_scaling"), factor=float(f("rope_scaling_factor")))
    if f("rope_scaling") == "llama3":
      out.update(low_freq_factor=float(f("rope_low_freq_factor")),
                 high_freq_factor=float(f("rope_high_freq_factor")),
                 original_max_position_embeddings=int(f("rope_original_max_len")))
  return dict(sorted(out.items()))


def hf_config_from_model(cfg: ml_collections.ConfigDict, family: str, kind: str, *,
                         tie_word_embeddings: bool, dtype: str,
                         overrides: dict[str, Any] | None = None,
                         legacy_keys: bool = False) -> dict:
  """config.json of a warm_jax model exported as the family's *ForCausalLM (kind 'lm') or
  *ForSequenceClassification with one label (kind 'rm'): the keys transformers 5.24 writes,
  architecture from `cfg`, the rest at transformers' defaults; `overrides` sets keys the
  architecture does not decide (token ids, max_position_embeddings). `legacy_keys` also writes
  the RoPE keys of transformers 4.x (rope_theta, rope_scaling; for gemma3 rope_local_base_freq and
  sliding_window_pattern), which readers pinned to 4.x need and 5.x reads consistently."""
  f = lambda name: configs.model_field(cfg, name)
  hd = configs.head_dim(cfg)
  n = cfg.n_layers
  local = [configs.is_local_layer(cfg, i) for i in range(n)]
  out = dict(
      architectures=[CLASSES[family][0 if kind == LM else 1]], attention_dropout=0.0,
      bos_token_id=None, eos_token_id=None, pad_token_id=None, dtype=dtype,
      hidden_size=cfg.d_model, initializer_range=0.02, intermediate_size=cfg.d_ff,
      max_position_embeddings=cfg.max_len, model_type=family, num_attention_heads=cfg.n_heads,
      num_hidden_layers=n, num_key_value_heads=cfg.n_kv_heads or cfg.n_heads,
      rms_norm_eps=float(cfg.norm_eps), rope_parameters=_rope_dict(cfg.rope_theta, cfg),
      tie_word_embeddings=tie_word_embeddings, transformers_version=LAYOUT_VERSION,
      use_cache=True, vocab_size=cfg.vocab_size)
  if family != "qwen2":
    out["head_dim"] = hd
  elif hd != cfg.d_model // cfg.n_heads or cfg.d_model % cfg.n_heads:
    out["head_dim"] = hd  # read by transformers' Qwen2Attention when present
  if family in ("llama", "mistral", "qwen2", "qwen3"):
    out["hidden_act"] = "silu"
  if family in ("llama", "qwen3") or family in GEMMAS:
    out["attention_bias"] = False
  if family == "llama":
    out.update(mlp_bias=False, pretraining_tp=1)
  if family == "mistral":
    out["sliding_window"] = f("sliding_window") or None
  if family in ("qwen2", "qwen3"):
    out.update(layer_types=["full_attention"] * n, max_window_layers=28, sliding_window=None,
               use_sliding_window=False)
  if family == "gemma":
    out.update(hidden_act="gelu_pytorch_tanh", use_bidirectional_attention=None)
  if family in SANDWICH:
    out.update(
        hidden_activation="gelu_pytorch_tanh",
        attn_logit_softcapping=float(f("attn_logit_softcap")) or None,
        final_logit_softcapping=float(f("final_logit_softcap")) or None,
        query_pre_attn_scalar=_int_if_whole(f("query_pre_attn_scalar") or hd),
        sliding_window=f("sliding_window") or 4096,
        layer_types=["sliding_attention" if s else "full_attention" for s in local],
        use_bidirectional_attention=None if family == "gemma2" else False)
  if family == "gemma3_text":
    pattern = f("sliding_window_pattern")
    out["_sliding_window_pattern"] = pattern if pattern >= 1 else 6
    local_theta = f("rope_local_theta")
    out["rope_parameters"] = {
        "full_attention": _rope_dict(cfg.rope_theta, cfg),
        "sliding_attention": (_rope_dict(local_theta, cfg, scaled=False) if local_theta else
                              _rope_dict(cfg.rope_theta, cfg))}
  if kind == RM:
    out.update(id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})
  if legacy_keys:
    out.update(_legacy_rope_keys(cfg, family))
  for key, value in (overrides or {}).items():
    out[key] = value
  return dict(sorted(out.items()))


def _legacy_rope_keys(cfg: ml_collections.ConfigDict, family: str) -> dict:
  """The same RoPE in transformers 4.x's keys: rope_theta and rope_scaling (null when unscaled);
  gemma3 adds its local layers' base and its layer pattern."""
  f = lambda name: configs.model_field(cfg, name)
  scaling = _rope_dict(cfg.rope_theta, cfg)
  scaling.pop("rope_theta")
  out = {"rope_theta": float(cfg.rope_theta),
         "rope_scaling": scaling if scaling["rope_type"] != "default" else None}
  if family == "gemma3_text":
    if f("rope_local_theta") == 0 and f("rope_scaling"):
      raise ValueError("config.model.rope_local_theta=0 with rope_scaling: transformers 4.x's "
                       "gemma3 keys cannot scale local layers; export without legacy_keys")
    pattern = f("sliding_window_pattern") if f("sliding_window") else 1  # 1: every layer global
    out.update(rope_local_base_freq=float(f("rope_local_theta") or cfg.rope_theta),
               sliding_window_pattern=pattern or cfg.n_layers + 1)  # n + 1: every layer local
  if family == "gemma2" and f("sliding_window") and f("sliding_window_pattern") != 2:
    raise ValueError(f"config.model.sliding_window_pattern={f('sliding_window_pattern')!r}: "
                     "transformers 4.x's gemma2 alternates local and global layers (pattern 2); "
                     "export without legacy_keys")
  return out


def _int_if_whole(x: float):
  return int(x) if float(x).is_integer() else float(x)


def family_of(hf: dict, where: str) -> str:
  """The family of a (text) config.json from its model_type."""
  model_type = hf.get("model_type")
  if model_type not in CLASSES:
    _fail(where, "model_type", model_type, f"not a family warm_jax imports; supported: "
          f"{', '.join(FAMILIES)} (and gemma3's text model)")
  return model_type
