"""Shared pieces of experiment configs (ml_collections) and the rules that validate them.

Each experiment file under `experiments/` has a `get_config(variant)` that assembles these sections
and sets every number it uses. What each field accepts is declared once, as `Rule`s: the shared
sections' here (`COMMON_RULES`), each trainer's next to it (`train.reward_model.RULES`, ...), each
study's next to it. `check(config, rules)` applies them before any compute and raises
`errors.InputError` naming the field (e.g. `config.optim.lr=-0.001: must be positive and
finite`); the fuzz tests draw values against the same rules.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import types
from typing import Any, Callable, Sequence

import ml_collections

from warm_jax.errors import InputError, MissingInput

# experiments/ of this checkout (the config files; `load_experiment` finds them by name).
EXPERIMENTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               "experiments")
_LOADED: dict[str, types.ModuleType] = {}


def load_experiment(name: str) -> types.ModuleType:
  """The config module of an experiment: a name ('reward_model': experiments/reward_model.py of
  this checkout) or the path of a config file, loaded as ml_collections' `--config=path.py` loads
  it (by path; nothing is added to sys.path). Configs that build on others (the WARM job on its
  stages, RLP on RL and the reward model) call `load_experiment(name).get_config(variant)`."""
  path = name if name.endswith(".py") else os.path.join(EXPERIMENTS_DIR, f"{name}.py")
  path = os.path.realpath(path)
  if path not in _LOADED:
    if not os.path.exists(path):
      raise InputError(f"no experiment config {name!r} ({path} does not exist)")
    stem = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(f"warm_jax_experiments.{stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _LOADED[path] = module
  return _LOADED[path]

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
    # public); the paper variants are for a GPU host or a TPU slice.
    "paper": (1024, 12, 16, 4096),
}


# Decoder fields added for the Hugging Face families (warm_jax.pretrained: Gemma 1/2/3, Llama
# 2/3.x, Mistral, Qwen2/2.5/3) and for compiling at scale (scan_layers, remat_policy), and their
# defaults. Each default is what the decoder computed before the field existed, so a config
# without the field computes exactly as before. `model_config` leaves them out unless asked, so
# the configs it makes (and their stage and averaging fingerprints) are those of before; configs
# made by `warm_jax.pretrained` hold them all. Read them with `model_field`.
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
    # How the layers are compiled, not what they compute: under nn.scan, one layer (one period of
    # the local/global pattern) is compiled once and looped, its parameters stacked under
    # decoder/layers with a leading 'layers' axis (models.transformer.Decoder; the paper variants
    # turn it on); and what rematerialisation keeps when config.model.remat is on (a
    # jax.checkpoint_policies name; nothing_saveable: recompute everything, as nn.remat does).
    scan_layers=False,
    remat_policy="nothing_saveable",
)
MLP_ACTIVATIONS = ("silu", "gelu_tanh")
REMAT_POLICIES = ("nothing_saveable", "dots_saveable", "dots_with_no_batch_dims_saveable",
                  "everything_saveable")
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
    raise InputError(f"unknown variant {variant!r} of {name}; choose one of {variants}")
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


# ---------------------------------------------------------------------------------------------
# Rules: what each field accepts.


@dataclasses.dataclass(frozen=True)
class Rule:
  """What config.<field> accepts. `accepts(value, config)` is total (False, never an exception,
  for a value of any type); `must` says in words what a valid value is; `reads` names the other
  fields the rule depends on (it is checked after every field's own rules, and its error shows
  their values too); an `optional` field may be absent (configs saved before it existed)."""
  field: str
  accepts: Callable[[Any, Any], bool]
  must: str
  reads: tuple[str, ...] = ()
  optional: bool = False

  def message(self, config, value, prefix: str = "") -> str:
    others = [f"config.{prefix}{r}={_short(get(config, r))}" for r in self.reads
              if get(config, r) is not MISSING]
    return (f"config.{prefix}{self.field}={_short(value)}: must be {self.must}"
            + (f" ({', '.join(others)})" if others else ""))


def _short(value) -> str:
  """repr of a config value, a section shown as <section> (its fields have their own rules)."""
  return "<section>" if hasattr(value, "keys") else repr(value)


MISSING = object()


def get(config, path: str):
  """config.<path> (dotted), or MISSING when a section or the field is absent."""
  node = config
  for key in path.split("."):
    if not hasattr(node, "keys") or key not in node:
      return MISSING
    node = node[key]
  return node


def violation(config, rules: Sequence[Rule], prefix: str = "") -> str | None:
  """The message of the first rule `config` breaks (each field's own rules first, then the rules
  that read other fields), or None. `prefix`: where `config` sits in the whole config (e.g.
  'rm.' for the reward-model section of RLP's), so the message names the field as the user
  sets it."""
  for cross in (False, True):
    for rule in rules:
      if bool(rule.reads) != cross:
        continue
      value = get(config, rule.field)
      if value is MISSING:
        if rule.optional:
          continue
        return f"config.{prefix}{rule.field} is missing"
      if not rule.accepts(value, config):
        return rule.message(config, value, prefix)
  return None


def check(config, rules: Sequence[Rule], prefix: str = "") -> None:
  """Raises InputError naming the first field `config` gets wrong (see `violation`)."""
  why = violation(config, rules, prefix)
  if why:
    raise InputError(why)


def require(config, inputs: dict[str, str]) -> None:
  """Raises MissingInput for the first of `inputs` (config field -> what it must name, e.g.
  {'init_from': 'the SFT run, e.g. --config.init_from=runs/sft'}) left empty: the paths a study
  reads, which no default can fill."""
  for field, what in inputs.items():
    if not get(config, field):
      raise MissingInput(f"config.{field} is empty: give {what}")


def is_int(x) -> bool:
  """An int that is not a bool (True is an int to python, never a count to a config)."""
  return isinstance(x, int) and not isinstance(x, bool)


def is_number(x) -> bool:
  """A finite real number: int or float, not bool, not nan / inf."""
  return is_int(x) or (isinstance(x, float) and math.isfinite(x))


def integer(field: str, lo: int = 1, hi: int | None = None, **kw) -> Rule:
  """An int in [lo, hi) (no upper bound: hi None)."""
  must = (f"an integer in [{lo}, {hi})" if hi is not None else
          "a positive integer" if lo == 1 else f"an integer >= {lo}")
  return Rule(field, lambda v, c: is_int(v) and v >= lo and (hi is None or v < hi), must, **kw)


def number(field: str, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           hi_open: bool = False, must: str = "", **kw) -> Rule:
  """A finite number in the interval lo..hi (None: unbounded; *_open: the bound excluded)."""
  def ok(v, c):
    if not is_number(v):
      return False
    if lo is not None and not (v > lo if lo_open else v >= lo):
      return False
    return hi is None or (v < hi if hi_open else v <= hi)
  if not must:
    if lo == 0 and lo_open and hi is None:
      must = "positive and finite"
    elif hi is None:
      must = f"a finite number >= {lo}"
    else:
      must = f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
  return Rule(field, ok, must, **kw)


def choice(field: str, choices: Sequence[str], **kw) -> Rule:
  return Rule(field, lambda v, c: isinstance(v, str) and v in choices,
              f"one of {tuple(choices)}", **kw)


def boolean(field: str, **kw) -> Rule:
  return Rule(field, lambda v, c: isinstance(v, bool), "True or False", **kw)


SEED_LIMIT = 2**32


def seed(field: str, **kw) -> Rule:
  return integer(field, lo=0, hi=SEED_LIMIT, **kw)


def text(field: str, **kw) -> Rule:
  return Rule(field, lambda v, c: isinstance(v, str) and v.strip() != "", "a non-empty string",
              **kw)


HF_PREFIX = "hf:"  # how a config names a Hugging Face directory (read by warm_jax.pretrained.hf_dir)


def init_source(field: str, **kw) -> Rule:
  """Where a run starts from: '' (nothing), a warm_jax run or checkpoint directory, or hf:DIR (a
  Hugging Face model directory). Whether it exists is checked where it is read."""
  def ok(v, c):
    if not isinstance(v, str) or v != v.strip():
      return False
    return not v.startswith(HF_PREFIX) or v[len(HF_PREFIX):].strip() != ""
  return Rule(field, ok, "'' (none), a run or checkpoint directory, or hf:DIR (a Hugging Face "
              "model directory), without surrounding spaces", **kw)


def sequence(field: str, item: Callable[[Any], bool], must: str, min_len: int = 1,
             distinct: bool = False, **kw) -> Rule:
  """A tuple or list of at least `min_len` items, each accepted by `item` (distinct, if asked)."""
  def ok(v, c):
    if not isinstance(v, (tuple, list)) or len(v) < min_len or not all(item(x) for x in v):
      return False
    return not distinct or len(set(v)) == len(v)
  return Rule(field, ok, must, **kw)


def distinct_numbers(field: str, lo: float, hi: float, min_len: int = 1, **kw) -> Rule:
  """A sequence of at least min_len distinct finite numbers in [lo, hi]."""
  return sequence(field, lambda x: is_number(x) and lo <= x <= hi,
                  f"{min_len} or more distinct numbers in [{lo}, {hi}]", min_len, True, **kw)


def fits_model(field: str, *parts: str) -> Rule:
  """config.<field> + the other `parts` (token counts) fit in config.model.max_len."""
  def ok(v, c):
    others = [get(c, p) for p in parts]
    return not all(is_int(x) for x in (v, *others)) or v + sum(others) <= c.model.max_len
  return Rule(field, ok, f"small enough for {' + '.join((field, *parts))} <= model.max_len",
              reads=(*parts, "model.max_len"))


DTYPES = ("float32", "bfloat16", "float16")


def _heads_divide(v, c) -> bool:
  """With head_dim 0 the heads split d_model: n_heads must divide it, leaving an even width."""
  d = get(c, "model.d_model")
  if model_field(c.model, "head_dim") or not (is_int(d) and is_int(v) and v > 0):
    return True
  return d % v == 0 and (d // v) % 2 == 0


def _llama3_ordered(v, c) -> bool:
  return (model_field(c.model, "rope_scaling") != "llama3"
          or v > model_field(c.model, "rope_low_freq_factor"))


def validate_model(cfg: ml_collections.ConfigDict) -> None:
  """A model config alone (e.g. one made from a Hugging Face config.json): `MODEL_RULES`."""
  check(ml_collections.ConfigDict({"model": cfg}), MODEL_RULES)


_SOFT = "0 (off) or a positive finite number"
MODEL_RULES = (
    integer("model.vocab_size"), integer("model.d_model"), integer("model.n_layers"),
    integer("model.n_heads"), integer("model.d_ff"), integer("model.max_len"),
    integer("model.n_kv_heads", lo=0),
    Rule("model.n_heads", _heads_divide,
         "a divisor of d_model leaving an even head size (rotary embeddings), unless head_dim is "
         "set", reads=("model.d_model", "model.head_dim")),
    Rule("model.n_kv_heads", lambda v, c: v == 0 or c.model.n_heads % v == 0,
         "0 (= n_heads) or a divisor of n_heads", reads=("model.n_heads",)),
    integer("model.attention_blocks", lo=0, optional=True),  # absent from older configs: 0
    number("model.dropout_rate", 0.0, 1.0, hi_open=True),
    number("model.rope_theta", 0.0, lo_open=True), number("model.norm_eps", 0.0, lo_open=True),
    boolean("model.tie_embeddings"), boolean("model.remat"),
    choice("model.dtype", DTYPES),
    # The decoder fields of the Hugging Face families (DECODER_DEFAULTS): optional, a missing one
    # is its default.
    integer("model.head_dim", lo=0, optional=True),
    Rule("model.head_dim", lambda v, c: v % 2 == 0, "even (rotary embeddings)", optional=True),
    *(boolean(f"model.{n}", optional=True) for n in (
        "qkv_bias", "qk_norm", "norm_plus_one", "scale_embeddings", "post_norms",
        "scale_tied_logits", "reward_head_bias")),
    choice("model.mlp_activation", MLP_ACTIVATIONS, optional=True),
    *(number(f"model.{n}", 0.0, must=_SOFT, optional=True) for n in (
        "attn_logit_softcap", "final_logit_softcap", "rope_local_theta", "query_pre_attn_scalar")),
    integer("model.sliding_window", lo=0, optional=True),
    integer("model.sliding_window_pattern", lo=0, optional=True),
    choice("model.rope_scaling", ROPE_SCALINGS, optional=True),
    *(number(f"model.{n}", 0.0, lo_open=True, optional=True) for n in (
        "rope_scaling_factor", "rope_low_freq_factor", "rope_high_freq_factor")),
    integer("model.rope_original_max_len", optional=True),
    boolean("model.scan_layers", optional=True),
    choice("model.remat_policy", REMAT_POLICIES, optional=True),
    Rule("model.remat_policy", lambda v, c: v == "nothing_saveable" or c.model.remat is True,
         "'nothing_saveable' (its default) unless config.model.remat is True (it names what "
         "rematerialisation keeps)", optional=True, reads=("model.remat",)),
    Rule("model.rope_high_freq_factor", _llama3_ordered,
         "above rope_low_freq_factor (llama3 rope scaling)", optional=True,
         reads=("model.rope_low_freq_factor", "model.rope_scaling")),
)

DATA_RULES = (
    seed("seed"), integer("data.max_len"), integer("data.batch_size"),
    integer("data.eval_batch_size"), seed("data.seed"),
)

OPTIMIZERS = ("adamw", "rmsprop")  # config.optim.name (absent = adamw)
OPTIM_RULES = (
    number("optim.lr", 0.0, lo_open=True), integer("optim.warmup_steps", lo=0),
    number("optim.weight_decay", 0.0), number("optim.end_lr_fraction", 0.0, 1.0),
    Rule("optim.clip_norm", lambda v, c: v is None or (is_number(v) and v > 0),
         "positive and finite (or None for no clipping)"),
    number("optim.b1", 0.0, 1.0, hi_open=True), number("optim.b2", 0.0, 1.0, hi_open=True),
    number("optim.eps", 0.0, lo_open=True), choice("optim.name", OPTIMIZERS, optional=True),
    number("optim.rmsprop_decay", 0.0, 1.0, lo_open=True, hi_open=True, optional=True),
    Rule("optim.weight_decay", lambda v, c: c.optim.get("name", "adamw") != "rmsprop" or v == 0,
         "0 under rmsprop (it is used without weight decay here)", reads=("optim.name",)),
)

NONFINITE_MODES = ("stop", "skip")
# What every run's config.train holds unless told otherwise (also read for configs made without
# `train_config`).
TRAIN_DEFAULTS = dict(on_nonfinite="stop", max_nonfinite_skips=10)
TRAIN_RULES = (
    integer("train.num_steps"), integer("train.log_every"), integer("train.eval_every"),
    integer("train.ckpt_every"), integer("train.keep"), integer("train.eval_batches", lo=0),
    choice("train.on_nonfinite", NONFINITE_MODES, optional=True),
    integer("train.max_nonfinite_skips", lo=0, optional=True),
    boolean("train.eval_at_start", optional=True),
)


def _new_tokens(c) -> int:
  """What a trainer generates after its prompts (RL's responses), on top of data.max_len."""
  n = get(c, "rl.max_new_tokens")
  return n if is_int(n) else 0


COMMON_RULES = (*DATA_RULES, *MODEL_RULES, *OPTIM_RULES, *TRAIN_RULES, Rule(
    "data.max_len", lambda v, c: v + _new_tokens(c) <= c.model.max_len,
    "at most config.model.max_len (minus rl.max_new_tokens: the responses)",
    reads=("model.max_len", "rl.max_new_tokens")),
    init_source("init_from", optional=True))  # where a run starts (absent from DPO's: its reference)


def train_config(**fields) -> ml_collections.ConfigDict:
  """config.train of a trainer: the given fields (num_steps, log_every, eval_every, eval_batches,
  ckpt_every, keep, eval_splits, ...) plus what every run shares: what a non-finite loss or
  gradient does ('stop': the run stops naming the step, the last good checkpoint kept; 'skip': the
  step leaves the state unchanged and the run goes on, up to max_nonfinite_skips in a row)."""
  return ml_collections.ConfigDict({**TRAIN_DEFAULTS, **fields})


def train_setting(cfg: ml_collections.ConfigDict, name: str):
  """config.train.<name>, or its default from TRAIN_DEFAULTS."""
  return cfg.get(name, TRAIN_DEFAULTS[name])
