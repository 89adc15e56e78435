"""Does an experiment fit a TPU slice, and if not, what would: the rows of `python -m warm_jax.aot`.

For each model the experiment trains (`aot.experiments`), on the slice's devices, every program
of its trainer (`aot.programs`) is compiled as configured and measured (`aot.budget`). A stage
that does not fit is tried again with, in turn, the parameters and optimiser state sharded over
every device (FSDP), rematerialisation, and halved per-device batches, each compiled, until one
fits; that one is reported as overrides of the experiment's config.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterator

import jax
import ml_collections

from warm_jax import configs
from warm_jax.aot import programs as programs_lib
from warm_jax.aot.budget import Budget, measure
from warm_jax.aot.experiments import Trained
from warm_jax.aot.topologies import Slice
from warm_jax.pretrained.presets import preset_model_config

# Model fields that say how a model is trained or compiled, not its shape: an experiment's
# values are kept when its model is replaced by a preset.
TRAINING_FIELDS = ("dropout_rate", "remat", "remat_policy", "scan_layers", "attention_blocks")


def with_model(config: ml_collections.ConfigDict, preset: str) -> ml_collections.ConfigDict:
  """`config` (a trainer's) with its model replaced by a preset architecture at the config's
  dtype and max_len, keeping its TRAINING_FIELDS; '' keeps the config's own model."""
  if not preset:
    return config
  model = preset_model_config(preset, dtype=config.model.dtype, max_len=config.model.max_len)
  for name in TRAINING_FIELDS:
    if name in config.model:
      model[name] = config.model[name]
  out = ml_collections.ConfigDict(config.to_dict())
  out.model = model
  return out


def batch_ways(config: ml_collections.ConfigDict, mesh: tuple[int, ...]) -> int:
  """How many ways the mesh axes that logical 'batch' maps to (config.sharding.rules) split it."""
  sizes = dict(zip(config.mesh.axes, mesh))
  ways = 1
  for logical, mesh_axes in config.sharding.rules:
    if logical == "batch":
      for a in (mesh_axes,) if isinstance(mesh_axes, str) else tuple(mesh_axes or ()):
        ways *= sizes.get(a, 1)
      break
  return ways


@dataclasses.dataclass(frozen=True)
class Setting:
  """How a stage is laid out: what the rows show and what a fix overrides."""
  mesh: tuple[int, ...]
  remat: str  # 'off' or the policy
  batch: int  # global batch (prompts for a policy)
  ways: int  # how many ways the batch is split

  @staticmethod
  def of(config: ml_collections.ConfigDict, devices: int) -> "Setting":
    shape = [int(s) for s in config.mesh.shape]
    if -1 in shape:
      shape[shape.index(-1)] = devices // -math.prod(shape)
    remat = configs.model_field(config.model, "remat_policy") if config.model.remat else "off"
    return Setting(tuple(shape), remat, config.data.batch_size, batch_ways(config, tuple(shape)))

  def describe(self) -> str:
    return f"mesh {self.mesh}, remat {self.remat}, batch {self.batch}"

  def overrides(self, section: str, since: "Setting") -> list[str]:
    """The --config overrides that turn `since` into this setting."""
    at = f"--config.{section + '.' if section else ''}"
    out = []
    if self.mesh != since.mesh:
      out.append(f"{at}mesh.shape='{self.mesh}'".replace(" ", ""))
    if self.remat != since.remat:
      out.append(f"{at}model.remat=True")
      if self.remat != "nothing_saveable":
        out.append(f"{at}model.remat_policy={self.remat}")
    if self.batch != since.batch:
      out.append(f"{at}data.batch_size={self.batch}")
    return out


def apply(config: ml_collections.ConfigDict, setting: Setting) -> ml_collections.ConfigDict:
  out = ml_collections.ConfigDict(config.to_dict())
  out.mesh.shape = setting.mesh
  out.model.remat = setting.remat != "off"
  if out.model.remat:
    out.model.remat_policy = setting.remat
  out.data.batch_size = setting.batch
  return out


def fixes(config: ml_collections.ConfigDict, devices: int) -> Iterator[Setting]:
  """Settings to try when `config` does not fit, each using more of what saves memory: FSDP
  over every device (keeping the tensor axis), then rematerialisation (nothing saved), then
  the global batch halved while every device keeps at least one row."""
  s = Setting.of(config, devices)
  axes = tuple(config.mesh.axes)
  sizes = dict(zip(axes, s.mesh))
  if "fsdp" in sizes and sizes["fsdp"] * sizes.get("tensor", 1) < devices:
    tensor = sizes.get("tensor", 1)
    mesh = tuple(devices // tensor if a == "fsdp" else tensor if a == "tensor" else 1 for a in axes)
    wider = dataclasses.replace(s, mesh=mesh, ways=batch_ways(config, mesh))
    if wider.batch % wider.ways == 0:  # else the batch cannot be split that many ways
      s = wider
      yield s
  if s.remat != "nothing_saveable":
    s = dataclasses.replace(s, remat="nothing_saveable")
    yield s
  while s.batch // 2 >= s.ways and (s.batch // 2) % s.ways == 0:
    s = dataclasses.replace(s, batch=s.batch // 2)
    yield s


@dataclasses.dataclass(frozen=True)
class Row:
  stage: str
  program: str
  model: str
  params: int
  setting: Setting
  budget: Budget
  suggested: bool = False  # a fix, not the experiment as configured


def measure_stage(t: Trained, config: ml_collections.ConfigDict, sl: Slice, devices: list,
                  model_name: str, suggested: bool = False) -> list[Row]:
  """The rows of every program of one stage under `config` (the trainer's) on the slice."""
  setting = Setting.of(config, len(devices))
  progs = programs_lib.programs(t.kind, config, devices)
  params = sum(x.size for x in jax.tree.leaves(progs[0].args[0].params))  # the train state's
  return [Row(t.label, p.name, model_name, params, setting, measure(p, sl.chip.hbm_bytes),
              suggested) for p in progs]


def check_stage(t: Trained, config: ml_collections.ConfigDict, sl: Slice, devices: list,
                model_name: str, suggest: bool = True,
                log: Callable[[str], None] = lambda _: None) -> tuple[list[Row], list[str] | None]:
  """Rows of the stage as configured and, when it does not fit and `suggest`, of the first fix
  that does; plus that fix's overrides ([] when it fits as it is, None when nothing tried fits).
  `log(line)` before each setting is compiled."""
  base = Setting.of(config, len(devices))
  log(f"as configured: {base.describe()}")
  rows = measure_stage(t, config, sl, devices, model_name)
  if all(r.budget.fits(sl.chip) for r in rows):
    return rows, []
  if not suggest:
    return rows, None
  for s in fixes(config, len(devices)):
    log(f"does not fit; trying {s.describe()}")
    tried = measure_stage(t, apply(config, s), sl, devices, model_name, suggested=True)
    if all(r.budget.fits(sl.chip) for r in tried):
      return rows + tried, s.overrides(t.section, base)
  return rows, None

