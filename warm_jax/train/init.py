"""Starting a run from another run's checkpoint or from a Hugging Face model: where every path a
config names for its initial params is resolved.

    lm_params = init.load_lm_params("runs/sft", config.model, setup.mesh, setup.rules)
    rm_params = init.reward_model_from_lm("runs/pretrain", setup)   # backbone copied, fresh head
    rm_params = init.reward_model_from_lm("runs/sft", setup, step=200)   # WARM's Baklava
    config = init.pretrained_config(config)        # init_from=hf:DIR: config.model from DIR
    lm_params = init.load_lm_params("hf:/models/gemma-2-2b", config.model, mesh, rules)

Paths may be a run directory (holding `checkpoints/`) or a checkpoint directory; the latest complete
step is used unless `step` names a kept one. Parameters are restored straight onto the target mesh,
in the layer layout of the target config (config.model.scan_layers) whichever layout the
checkpoint holds. A checkpoint of another model shape fails naming the first differing parameter.

A Hugging Face directory (`hf:DIR`, or a directory with config.json and safetensors weights:
`warm_jax.pretrained.hf_dir`) is imported tensor by tensor onto the mesh (`pretrained.load_hf`),
in float32 (the parameters a run trains; config.model.dtype is the compute dtype). A run starting
from one takes its architecture and tokenizer from it (`pretrained_config`): config.model's
architecture fields are replaced by those of DIR's config.json, and only the fields of how this
run computes (`RUN_MODEL_FIELDS`: max_len, dtype, dropout_rate, remat, remat_policy,
attention_blocks, scan_layers) are kept from the config; config.data.tokenizer becomes hf:DIR. A
*ForCausalLM gives a language model, and a reward model its decoder with a fresh (zero) head; a
*ForSequenceClassification gives a reward model whole (decoder and score head).
"""

from __future__ import annotations

import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from warm_jax import checkpoints, configs
from warm_jax import sharding as shd
from warm_jax.errors import InputError
from warm_jax.models import LanguageModel, transformer
from warm_jax.models.heads import init_from_lm

# What a run decides for itself when it starts from a Hugging Face model (the rest of config.model
# is the checkpoint's architecture): its sequence length (the decode cache), compute dtype,
# dropout, rematerialisation and attention blocking.
RUN_MODEL_FIELDS = ("max_len", "dtype", "dropout_rate", "remat", "remat_policy",
                    "attention_blocks", "scan_layers")


def resolve(path: str) -> str:
  """A run's workdir or a checkpoint directory -> the checkpoint directory (must exist)."""
  if not path:
    raise ValueError("no checkpoint path given")
  if not os.path.exists(path):
    raise FileNotFoundError(f"checkpoint path {path} does not exist")
  return checkpoints.resolve_checkpoint_dir(path)


def hf_dir(path: str) -> str | None:
  """The Hugging Face directory `path` names (see `warm_jax.pretrained.hf_dir`), or None."""
  from warm_jax import pretrained
  return pretrained.hf_dir(path)


def abstract_params(model: nn.Module, mesh, rules) -> Any:
  """ShapeDtypeStructs (with shardings on `mesh` from the params' logical names) of `model`'s
  params: a restore target. Nothing is computed (the params do not depend on sequence length)."""
  dummy = jnp.ones((1, 8), jnp.int32)
  boxed = jax.eval_shape(lambda: model.init(jax.random.key(0), dummy)["params"])
  return shd.abstract(nn.unbox(boxed), shd.tree_shardings(boxed, mesh, rules))


def pretrained_model_config(model_cfg: ml_collections.ConfigDict,
                            directory: str) -> ml_collections.ConfigDict:
  """config.model of a run starting from the Hugging Face model in `directory`: the architecture
  of its config.json, with `RUN_MODEL_FIELDS` taken from `model_cfg`."""
  from warm_jax import pretrained
  spec = pretrained.read_spec(directory, dtype=model_cfg.dtype, max_len=model_cfg.max_len)
  out = ml_collections.ConfigDict(spec.model_cfg.to_dict())
  for name in RUN_MODEL_FIELDS:
    if name in model_cfg:
      out[name] = model_cfg[name]
  configs.validate_model(out)
  return out


def pretrained_config(config: ml_collections.ConfigDict, field: str = "init_from",
                      verbose: bool = True) -> ml_collections.ConfigDict:
  """`config` itself unless config.<field> names a Hugging Face directory; then a copy whose
  config.model is that model's (`pretrained_model_config`: its architecture, this run's
  RUN_MODEL_FIELDS) and whose config.data.tokenizer is hf:DIR, its tokenizer checked against the
  model's vocabulary. `verbose`: prints which architecture fields of config.model it replaced."""
  from warm_jax import pretrained
  directory = hf_dir(configs.get(config, field))
  if directory is None:
    return config
  out = ml_collections.ConfigDict(config.to_dict())
  model = pretrained_model_config(config.model, directory)
  replaced = sorted(k for k in set(config.model) | set(model) if k not in RUN_MODEL_FIELDS
                    and config.model.get(k, configs.DECODER_DEFAULTS.get(k)) != model.get(k))
  out.model = model
  out.data.tokenizer = pretrained.HF_PREFIX + directory
  pretrained.load_tokenizer(directory, model_vocab_size=model.vocab_size)  # fails naming both
  if verbose and replaced and jax.process_index() == 0:
    print(f"config.model from {directory}/config.json ({', '.join(replaced)} replaced; "
          f"{', '.join(RUN_MODEL_FIELDS)} kept from the config); tokenizer: {directory}",
          flush=True)
  return out


def load_hf_params(path: str, model_cfg: ml_collections.ConfigDict, mesh, rules,
                   kind: str | None = None) -> tuple[Any, str]:
  """(params, kind) of the Hugging Face model `path` names, float32 on `mesh`: kind 'lm' for a
  *ForCausalLM, 'rm' for a *ForSequenceClassification (`kind`, when given, must be what the
  directory holds). Fails naming the first parameter whose shape differs from those of
  `model_cfg` (a config.model not made by `pretrained_config` for this directory)."""
  from warm_jax import pretrained
  pre = pretrained.load_hf(hf_dir(path), mesh=mesh, rules=rules, dtype="float32",
                           compute_dtype=model_cfg.dtype, max_len=model_cfg.max_len, kind=kind)
  unscanned = ml_collections.ConfigDict({**model_cfg.to_dict(), "scan_layers": False})
  want = abstract_params(type(pre.model())(unscanned), mesh, rules)
  why = checkpoints.tree_mismatch(pre.params, want, (path, "config.model"))
  if why:
    raise InputError(f"{path} does not fit config.model: {why} (a run starting from a Hugging "
                     "Face model takes config.model from it: warm_jax.train.init.pretrained_config)")
  if not model_cfg.get("scan_layers", False):
    return pre.params, pre.kind
  target = abstract_params(type(pre.model())(model_cfg), mesh, rules)
  shardings = jax.tree.map(lambda x: x.sharding, target)
  return jax.jit(lambda p: transformer.convert_layers(p, model_cfg),
                 out_shardings=shardings)(pre.params), pre.kind


def load_lm_params(path: str, model_cfg: ml_collections.ConfigDict, mesh, rules,
                   step: int | None = None) -> Any:
  """The language model's params of a run (pre-training, SFT, RL, DPO) at `step` (None: latest),
  or of a Hugging Face *ForCausalLM (`path` = hf:DIR), on `mesh`; a PPO policy's value head is
  left out (not read). A checkpoint saved in the other layer layout (config.model.scan_layers) is
  restored in its own and converted."""
  if hf_dir(path) is not None:
    _no_step(path, step)
    return load_hf_params(path, model_cfg, mesh, rules, kind="lm")[0]
  ckpt = resolve(path)
  target = abstract_params(LanguageModel(model_cfg), mesh, rules)
  saved = checkpoints.params_metadata(ckpt, step)
  want = transformer.is_scanned(target["decoder"])
  if "decoder" not in saved or transformer.is_scanned(saved["decoder"]) == want:
    return checkpoints.restore_params(ckpt, step, target=target, skip=("value_head",))
  as_saved = ml_collections.ConfigDict({**model_cfg.to_dict(), "scan_layers": not want})
  params = checkpoints.restore_params(
      ckpt, step, target=abstract_params(LanguageModel(as_saved), mesh, rules), skip=("value_head",))
  shardings = jax.tree.map(lambda x: x.sharding, target)
  return jax.jit(lambda p: transformer.convert_layers(p, model_cfg), out_shardings=shardings)(params)


def reward_model_from_lm(path: str, setup, step: int | None = None) -> Any:
  """Reward-model params (for `setup`, a loop.Setup of a RewardModel) whose decoder is the
  language model's at `path` (checkpoint `step`, None: latest); the scalar head is freshly
  initialised (to zero: every RM started this way shares its head, as WARM's do). A Hugging Face
  `path`: a *ForCausalLM's decoder with that fresh head, or a *ForSequenceClassification whole."""
  rm_params = jax.jit(lambda rng: nn.unbox(setup.init_params(rng)),
                      out_shardings=setup.shardings.params)(jax.random.key(0))
  if hf_dir(path) is not None:
    _no_step(path, step)
    params, kind = load_hf_params(path, setup.model.cfg, setup.mesh, setup.rules)
    return params if kind == "rm" else init_from_lm(rm_params, params)
  lm_params = load_lm_params(path, setup.model.cfg, setup.mesh, setup.rules, step)
  return init_from_lm(rm_params, lm_params)


def _no_step(path: str, step: int | None) -> None:
  if step is not None:
    raise InputError(f"{path} is a Hugging Face directory, which holds one set of weights: no "
                     f"checkpoint step {step} to choose (config.init_step=-1)")
