"""Shared pieces of experiment configs (ml_collections) and their validation.

Each experiment file under `experiments/` has a `get_config(variant)` that assembles these sections
and sets every number it uses; `validate(config)` checks them before any compute, and every error
names the offending field (e.g. `config.optim.lr`).
"""

from __future__ import annotations

import math

import ml_collections

# Logical axis name -> mesh axis (or tuple of mesh axes, or None = replicated).
# Parameters use 'embed', 'mlp', 'heads', 'kv_heads', 'head_dim', 'vocab', 'scalar';
# activations use 'batch', 'length' and the 'act_*' names, so that one mesh axis is never asked
# to shard two dimensions of the same array.
DEFAULT_RULES = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("embed", "fsdp"),
    ("vocab", "tensor"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("scalar", None),
    ("act_embed", None),
    ("act_mlp", "tensor"),
    ("act_heads", "tensor"),
)

MODEL_SIZES = {
    # name: (d_model, n_layers, n_heads, d_ff)
    "tiny": (32, 2, 2, 64),
    "small": (64, 2, 4, 128),
    "cpu": (128, 3, 4, 384),
    # Approximates PaLM-XXS-class reward models of the WARM paper (the exact PaLM sizes are not
    # public); see README "Scale variants".
    "paper": (1024, 12, 16, 4096),
}


# Decoder fields added for the Hugging Face families (warm_jax.pretrained: Gemma 1/2/3, Llama
# 2/3.x, Mistral, Qwen2/2.5/3) and their defaults. Each default is what the decoder computed before
# the field existed, so a config without the field computes exactly as before. `model_config`
# leaves them out unless asked, so the configs it makes (and their stage and averaging
# fingerprints) are those of before; configs made by `warm_jax.pretrained` hold them all. Read
# them with `model_field`.
DECODER_DEFAULTS = dict(
    head_dim=0,  # width of one attention head; 0: d_model // n_heads
    qkv_bias=False,  # biases on the query, key and value projections (Qwen2)
    qk_norm=False,  # RMSNorm over head_dim of queries and keys, before rotary (Qwen3, Gemma 3)
    norm_plus_one=False,  # every RMSNorm multiplies by (1 + scale), scale stored as is (Gemma)
    scale_embeddings=False,  # embeddings times sqrt(d_model) rounded to the compute dtype (Gemma)
    mlp_activation="silu",  # gate activation: 'silu' (SwiGLU) or 'gelu_tanh' (GeGLU: Gemma)
    attn_logit_softcap=0.0,  # attention logits -> cap * tanh(logits / cap); 0: none (Gemma 2)
    final_logit_softcap=0.0,  # the same on the LM head's logits; 0: none (Gemma 2)
    sliding_window=0,  # local layers attend to their last `sliding_window` tokens; 0: none
    # with a window: 0 makes every layer local (Mistral); P >= 1 makes layer i global when
    # (i + 1) % P == 0 and local otherwise (Gemma 2: 2, Gemma 3: 6)
    sliding_window_pattern=0,
    rope_local_theta=0.0,  # RoPE base of local layers, unscaled (Gemma 3); 0: as global layers
    post_norms=False,  # RMSNorm on the attention and MLP outputs before the residual add (Gemma 2/3)
    query_pre_attn_scalar=0.0,  # attention logits scaled by its -1/2 power; 0: head_dim (Gemma 2/3)
    rope_scaling="",  # '' (none), 'linear' (Gemma 3 global layers) or 'llama3' (Llama 3.1/3.2)
    rope_scaling_factor=1.0,  # both scalings: frequencies divided by it (llama3: the low ones)
    rope_low_freq_factor=1.0,  # llama3 only
    rope_high_freq_factor=4.0,  # llama3 only
    rope_original_max_len=8192,  # llama3 only: the context length of pre-training
    scale_tied_logits=True,  # a tied LM head divides the logits by sqrt(d_model) (HF's do not)
    reward_head_bias=True,  # the reward model's scalar head has a bias (HF's `score` has none)
)
MLP_ACTIVATIONS = ("silu", "gelu_tanh")
ROPE_SCALINGS = ("", "linear", "llama3")


def model_field(cfg, name: str):
  """config.model.<name>, or its default from DECODER_DEFAULTS when the config lacks it."""
  return cfg.get(name, DECODER_DEFAULTS[name])


def head_dim(cfg) -> int:
  """Width of one attention head: config.model.head_dim, or d_model // n_heads when it is 0."""
  return model_field(cfg, "head_dim") or cfg.d_model // cfg.n_heads


def is_local_layer(cfg, i: int) -> bool:
  """Whether layer i attends through the sliding window (see DECODER_DEFAULTS)."""
  if not model_field(cfg, "sliding_window"):
    return False
  pattern = model_field(cfg, "sliding_window_pattern")
  return pattern == 0 or (i + 1) % pattern != 0


def full_model_config(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of a model config holding every decoder field (the missing ones at their defaults)."""
  out = ml_collections.ConfigDict(cfg.to_dict())
  for name, value in DECODER_DEFAULTS.items():
    if name not in out:
      out[name] = value
  return out


def model_config(size: str = "tiny", vocab_size: int = 512, max_len: int = 128,
                 **decoder_fields) -> ml_collections.ConfigDict:
  """config.model of a size; `decoder_fields` (names of DECODER_DEFAULTS, e.g. sliding_window=4)
  are held explicitly, the others are left out and mean their defaults."""
  if size not in MODEL_SIZES:
    raise ValueError(f"unknown model size {size!r}; choose one of {sorted(MODEL_SIZES)}")
  unknown = sorted(set(decoder_fields) - set(DECODER_DEFAULTS))
  if unknown:
    raise ValueError(f"model_config: {unknown} are not decoder fields; choose from "
                     f"{sorted(DECODER_DEFAULTS)}")
  d_model, n_layers, n_heads, d_ff = MODEL_SIZES[size]
  return ml_collections.ConfigDict(dict(
      vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
      n_kv_heads=0,  # 0 = same as n_heads (plain multi-head attention)
      d_ff=d_ff, max_len=max_len, dropout_rate=0.0, tie_embeddings=True, rope_theta=10_000.0,
      norm_eps=1e-6, dtype="float32", remat=False,
      # causal attention in 4 query blocks (models.transformer.causal_attention; 0: the full
      # T x T with jax.nn.dot_product_attention, as before this field existed)
      attention_blocks=4, **decoder_fields))


def mesh_config(shape=(-1, 1, 1), axes=("data", "fsdp", "tensor")) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(axes=tuple(axes), shape=tuple(shape)))


def experiment_config(variant: str, variants: tuple[str, ...], name: str) -> ml_collections.ConfigDict:
  """The head every experiment config shares: variant (checked), seed, mesh, sharding rules."""
  if variant not in variants:
    raise ValueError(f"unknown variant {variant!r} of {name}; choose one of {variants}")
  return ml_collections.ConfigDict(dict(
      variant=variant, seed=0, mesh=mesh_config(),
      sharding=ml_collections.ConfigDict({"rules": DEFAULT_RULES})))


# Records per split of the embedded task at `tiny` scale (tests: seconds).
TINY_TASK_SIZES = dict(train=64, validation=32, test=32, ood=32, corpus=64, sft=64,
                       corpus_validation=32, sft_validation=32)


def embedded_data_config(max_len: int = 112, batch_size: int = 32,
                         eval_batch_size: int = 64) -> ml_collections.ConfigDict:
  """config.data for the embedded task. max_len 112 covers the longest OOD prompt + response."""
  from warm_jax.data import embedded
  return ml_collections.ConfigDict(dict(
      name="embedded_tldr", task=embedded.default_config(),
      tokenizer="",  # '' = the committed sentencepiece model of the embedded task
      seed=0,  # order of the training examples
      max_len=max_len, batch_size=batch_size, eval_batch_size=eval_batch_size))


def make_tiny(data: ml_collections.ConfigDict, max_len: int = 64) -> None:
  """Shrinks an embedded-task data config to the `tiny` scale of the tests (in place)."""
  data.task.sizes.update(TINY_TASK_SIZES)
  data.update(dict(max_len=max_len, batch_size=8, eval_batch_size=16))


OPTIMIZERS = ("adamw", "rmsprop")  # config.optim.name (absent = adamw)


def optim_config(lr: float = 1e-4, warmup_steps: int = 10, weight_decay: float = 0.0,
                 clip_norm: float = 1.0) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      lr=lr, end_lr_fraction=0.1, warmup_steps=warmup_steps, weight_decay=weight_decay,
      b1=0.9, b2=0.999, eps=1e-8, clip_norm=clip_norm))


def rl_config(algorithm: str = "reinforce", kl_coef: float = 0.05, samples_per_prompt: int = 2,
              max_new_tokens: int = 32) -> ml_collections.ConfigDict:
  """KL-regularised RL settings (warm_jax.train.policy); PPO fields are ignored by the others."""
  return ml_collections.ConfigDict(dict(
      algorithm=algorithm, kl_coef=kl_coef, samples_per_prompt=samples_per_prompt,
      max_new_tokens=max_new_tokens, temperature=1.0, whiten_advantages=True, seed=0,
      ppo_epochs=2, ppo_minibatches=2, clip_eps=0.2, value_clip=0.2, vf_coef=0.5, gamma=1.0,
      gae_lambda=0.95))


def _fail(field: str, value, why: str):
  raise ValueError(f"config.{field}={value!r}: {why}")


def is_int(x) -> bool:
  """An int that is not a bool (True is an int to python, never a count to a config)."""
  return isinstance(x, int) and not isinstance(x, bool)


def _is_finite(x) -> bool:
  """A finite real number: int or float, not bool, not nan / inf."""
  if is_int(x):
    return True
  return isinstance(x, float) and math.isfinite(x)


def check_int(value, field: str, lo: int = 1, hi: int | None = None) -> None:
  """`value` (of config.<field>) is an int (not a bool) in [lo, hi) (no upper bound: hi None)."""
  if is_int(value) and value >= lo and (hi is None or value < hi):
    return
  if hi is not None:
    why = f"must be an integer in [{lo}, {hi})"
  elif lo == 1:
    why = "must be a positive integer"
  else:
    why = f"must be an integer >= {lo}"
  _fail(field, value, why)


def check_float(value, field: str, lo: float | None = None, hi: float | None = None, *,
                lo_open: bool = False, hi_open: bool = False, why: str = "") -> None:
  """`value` (of config.<field>) is a finite number in the interval lo..hi (None: unbounded;
  *_open: the bound itself is excluded)."""
  ok = _is_finite(value)
  if ok and lo is not None:
    ok = value > lo if lo_open else value >= lo
  if ok and hi is not None:
    ok = value < hi if hi_open else value <= hi
  if ok:
    return
  if not why:
    if lo == 0 and lo_open and hi is None:
      why = "must be positive and finite"
    elif hi is None:
      why = f"must be a finite number >= {lo}"
    else:
      why = f"must be in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
  _fail(field, value, why)


def check_choice(value, field: str, choices) -> None:
  if not isinstance(value, str) or value not in choices:
    _fail(field, value, f"must be one of {tuple(choices)}")


def check_bool(value, field: str) -> None:
  if not isinstance(value, bool):
    _fail(field, value, "must be True or False")


SEED_LIMIT = 2**32


def check_seed(value, field: str) -> None:
  check_int(value, field, lo=0, hi=SEED_LIMIT)


DTYPES = ("float32", "bfloat16", "float16")


def validate_model(cfg: ml_collections.ConfigDict, prefix: str = "model") -> None:
  for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_len"):
    check_int(cfg[name], f"{prefix}.{name}")
  if "head_dim" in cfg:
    check_int(cfg.head_dim, f"{prefix}.head_dim", lo=0)
  if model_field(cfg, "head_dim"):
    if cfg.head_dim % 2:
      _fail(f"{prefix}.head_dim", cfg.head_dim, "must be even (rotary embeddings)")
  elif cfg.d_model % cfg.n_heads:
    _fail(f"{prefix}.n_heads", cfg.n_heads,
          f"must divide d_model={cfg.d_model} (config.{prefix}.d_model)")
  elif (cfg.d_model // cfg.n_heads) % 2:
    _fail(f"{prefix}.n_heads", cfg.n_heads, f"config.{prefix}.d_model={cfg.d_model} / n_heads "
          "must be even (rotary embeddings)")
  n_kv = cfg.n_kv_heads
  if not is_int(n_kv) or n_kv < 0 or (n_kv and cfg.n_heads % n_kv):
    _fail(f"{prefix}.n_kv_heads", n_kv,
          f"must be 0 or divide n_heads={cfg.n_heads} (config.{prefix}.n_heads)")
  if "attention_blocks" in cfg:  # absent from configs saved before it existed: 0
    check_int(cfg.attention_blocks, f"{prefix}.attention_blocks", lo=0)
  check_float(cfg.dropout_rate, f"{prefix}.dropout_rate", 0.0, 1.0, hi_open=True)
  check_float(cfg.rope_theta, f"{prefix}.rope_theta", 0.0, lo_open=True)
  check_float(cfg.norm_eps, f"{prefix}.norm_eps", 0.0, lo_open=True)
  for name in ("tie_embeddings", "remat"):
    check_bool(cfg[name], f"{prefix}.{name}")
  if cfg.dtype not in DTYPES:
    _fail(f"{prefix}.dtype", cfg.dtype, "must be float32, bfloat16 or float16")
  _validate_decoder_fields(cfg, prefix)


def _validate_decoder_fields(cfg: ml_collections.ConfigDict, prefix: str) -> None:
  """The fields of DECODER_DEFAULTS that the config holds (a missing one is its default)."""
  has = lambda name: name in cfg
  for name in ("qkv_bias", "qk_norm", "norm_plus_one", "scale_embeddings", "post_norms",
               "scale_tied_logits", "reward_head_bias"):
    if has(name):
      check_bool(cfg[name], f"{prefix}.{name}")
  if has("mlp_activation"):
    check_choice(cfg.mlp_activation, f"{prefix}.mlp_activation", MLP_ACTIVATIONS)
  for name in ("attn_logit_softcap", "final_logit_softcap", "rope_local_theta",
               "query_pre_attn_scalar"):
    if has(name):
      check_float(cfg[name], f"{prefix}.{name}", 0.0, why="must be 0 (off) or a positive finite number")
  for name in ("sliding_window", "sliding_window_pattern"):
    if has(name):
      check_int(cfg[name], f"{prefix}.{name}", lo=0)
  if has("rope_scaling"):
    check_choice(cfg.rope_scaling, f"{prefix}.rope_scaling", ROPE_SCALINGS)
  for name in ("rope_scaling_factor", "rope_low_freq_factor", "rope_high_freq_factor"):
    if has(name):
      check_float(cfg[name], f"{prefix}.{name}", 0.0, lo_open=True)
  if has("rope_original_max_len"):
    check_int(cfg.rope_original_max_len, f"{prefix}.rope_original_max_len")
  if model_field(cfg, "rope_scaling") == "llama3":
    low, high = model_field(cfg, "rope_low_freq_factor"), model_field(cfg, "rope_high_freq_factor")
    if high <= low:
      _fail(f"{prefix}.rope_high_freq_factor", high,
            f"must exceed config.{prefix}.rope_low_freq_factor={low} (llama3 rope scaling)")


def validate_data(cfg: ml_collections.ConfigDict, prefix: str = "data") -> None:
  """The fields of config.data every trainer uses (how long, how many, in which order); the data
  set itself (name, task, splits) is checked when it is loaded."""
  for name in ("max_len", "batch_size", "eval_batch_size"):
    check_int(cfg[name], f"{prefix}.{name}")
  check_seed(cfg.seed, f"{prefix}.seed")


def validate_head(config: ml_collections.ConfigDict) -> None:
  """What every trainer's validate_config checks first: config.seed and config.data."""
  check_seed(config.seed, "seed")
  validate_data(config.data)


def validate_optim(cfg: ml_collections.ConfigDict, prefix: str = "optim") -> None:
  check_float(cfg.lr, f"{prefix}.lr", 0.0, lo_open=True)
  check_int(cfg.warmup_steps, f"{prefix}.warmup_steps", lo=0)
  check_float(cfg.weight_decay, f"{prefix}.weight_decay", 0.0)
  check_float(cfg.end_lr_fraction, f"{prefix}.end_lr_fraction", 0.0, 1.0)
  if cfg.clip_norm is not None:
    check_float(cfg.clip_norm, f"{prefix}.clip_norm", 0.0, lo_open=True,
                why="must be positive and finite (or None for no clipping)")
  for name in ("b1", "b2"):
    check_float(cfg[name], f"{prefix}.{name}", 0.0, 1.0, hi_open=True)
  check_float(cfg.eps, f"{prefix}.eps", 0.0, lo_open=True)
  name = cfg.get("name", "adamw")
  check_choice(name, f"{prefix}.name", OPTIMIZERS)
  if "rmsprop_decay" in cfg:  # used by rmsprop only, but never left holding a bad value
    check_float(cfg.rmsprop_decay, f"{prefix}.rmsprop_decay", 0.0, 1.0, lo_open=True,
                hi_open=True)
  if name == "rmsprop" and cfg.weight_decay:
    _fail(f"{prefix}.weight_decay", cfg.weight_decay,
          "rmsprop is used without weight decay here; set it to 0")


NONFINITE_MODES = ("stop", "skip")
# What every run's config.train holds unless told otherwise (also read for configs made without
# `train_config`).
TRAIN_DEFAULTS = dict(on_nonfinite="stop", max_nonfinite_skips=10)


def train_config(**fields) -> ml_collections.ConfigDict:
  """config.train of a trainer: the given fields (num_steps, log_every, eval_every, eval_batches,
  ckpt_every, keep, eval_splits, ...) plus what every run shares: what a non-finite loss or
  gradient does ('stop': the run stops naming the step, the last good checkpoint kept; 'skip': the
  step leaves the state unchanged and the run goes on, up to max_nonfinite_skips in a row)."""
  return ml_collections.ConfigDict({**TRAIN_DEFAULTS, **fields})


def train_setting(cfg: ml_collections.ConfigDict, name: str):
  """config.train.<name>, or its default from TRAIN_DEFAULTS."""
  return cfg.get(name, TRAIN_DEFAULTS[name])


def validate_train(cfg: ml_collections.ConfigDict, prefix: str = "train") -> None:
  for name in ("num_steps", "log_every", "eval_every", "ckpt_every", "keep"):
    check_int(cfg[name], f"{prefix}.{name}")
  check_int(cfg.eval_batches, f"{prefix}.eval_batches", lo=0)
  check_choice(train_setting(cfg, "on_nonfinite"), f"{prefix}.on_nonfinite", NONFINITE_MODES)
  check_int(train_setting(cfg, "max_nonfinite_skips"), f"{prefix}.max_nonfinite_skips", lo=0)
  if "eval_at_start" in cfg:
    check_bool(cfg.eval_at_start, f"{prefix}.eval_at_start")
