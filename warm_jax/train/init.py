"""Starting a run from another run's checkpoint: the shared pre-trained / SFT language model.

    lm_params = init.load_lm_params("runs/sft", config.model, setup.mesh, setup.rules)
    rm_params = init.reward_model_from_lm("runs/pretrain", setup)   # backbone copied, fresh head
    rm_params = init.reward_model_from_lm("runs/sft", setup, step=200)   # WARM's Baklava

Paths may be a run directory (holding `checkpoints/`) or a checkpoint directory; the latest complete
step is used unless `step` names a kept one. Parameters are restored straight onto the target mesh,
in the layer layout of the target config (config.model.scan_layers) whichever layout the
checkpoint holds. A checkpoint of another model shape fails naming the first differing parameter.
"""

from __future__ import annotations

import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from warm_jax import checkpoints
from warm_jax import sharding as shd
from warm_jax.models import LanguageModel, transformer
from warm_jax.models.heads import init_from_lm


def resolve(path: str) -> str:
  """A run's workdir or a checkpoint directory -> the checkpoint directory (must exist)."""
  if not path:
    raise ValueError("no checkpoint path given")
  if not os.path.exists(path):
    raise FileNotFoundError(f"checkpoint path {path} does not exist")
  return checkpoints.resolve_checkpoint_dir(path)


def abstract_params(model: nn.Module, mesh, rules) -> Any:
  """ShapeDtypeStructs (with shardings on `mesh` from the params' logical names) of `model`'s
  params: a restore target. Nothing is computed (the params do not depend on sequence length)."""
  dummy = jnp.ones((1, 8), jnp.int32)
  boxed = jax.eval_shape(lambda: model.init(jax.random.key(0), dummy)["params"])
  return shd.abstract(nn.unbox(boxed), shd.tree_shardings(boxed, mesh, rules))


def load_lm_params(path: str, model_cfg: ml_collections.ConfigDict, mesh, rules,
                   step: int | None = None) -> Any:
  """The language model's params of a run (pre-training, SFT, RL, DPO) at `step` (None: latest),
  on `mesh`; a PPO policy's value head is left out (not read). A checkpoint saved in the other
  layer layout (config.model.scan_layers) is restored in its own and converted."""
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
  initialised (to zero: every RM started this way shares its head, as WARM's do)."""
  rm_params = jax.jit(lambda rng: nn.unbox(setup.init_params(rng)),
                      out_shardings=setup.shardings.params)(jax.random.key(0))
  lm_params = load_lm_params(path, setup.model.cfg, setup.mesh, setup.rules, step)
  return init_from_lm(rm_params, lm_params)
