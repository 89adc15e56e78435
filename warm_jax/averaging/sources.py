"""The sources of a streamed average: which checkpoints, at which steps, with which weights, and
whether they can be averaged at all (same architecture, same parameters), before any array is
read or anything is written.

    sources, weights = plan(["runs/rm0", "runs/rm1@200"], [1, 1], out="runs/warm")

A `Source` is one checkpoint: its resolved directory, step, metadata and parameter shapes.
Architectures are compared on config['model'] without the training-only fields
(`TRAINING_ONLY_MODEL_FIELDS`: WARM averages runs with diverse dropout).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Sequence

import jax
import numpy as np

from warm_jax import checkpoints
from warm_jax.averaging.tree import _check_leaves_floating, check_weights
from warm_jax.checkpoints import resolve_checkpoint_dir, tree_mismatch
from warm_jax.configs import DECODER_DEFAULTS
from warm_jax.errors import MissingInput

# Fields of config['model'] that only change how a model is trained or computed, not its parameters
# or the function it computes; checkpoints that differ only in them have the same architecture
# (WARM averages runs with diverse dropout, for instance).
TRAINING_ONLY_MODEL_FIELDS = ("dropout_rate", "remat", "remat_policy", "attention_blocks")


def _model_section(config: dict | None) -> dict | None:
  if config is None:
    return None
  model = config.get("model")
  return None if model is None else dict(model)


def _architecture(model: dict) -> dict:
  """The fields of a model section that define the function: training-only fields dropped, and
  so are decoder fields at their default (configs.DECODER_DEFAULTS), which configs saved before
  those fields existed lack: both mean the same model."""
  def is_default(k, v):
    return k in DECODER_DEFAULTS and _normalise_json(v) == _normalise_json(DECODER_DEFAULTS[k])
  return {k: v for k, v in model.items()
          if k not in TRAINING_ONLY_MODEL_FIELDS and not is_default(k, v)}


def model_fingerprint(config: dict | None) -> str | None:
  """sha256 (16 hex digits) of the architecture fields of config['model'] (training-only fields
  such as dropout_rate excluded, decoder fields at their default left out), or None without a
  config."""
  model = _model_section(config)
  if model is None:
    return None
  arch = _architecture(model)
  blob = json.dumps(arch, sort_keys=True, default=str).encode()
  return hashlib.sha256(blob).hexdigest()[:16]


def _normalise_json(x):
  # Configs read back from JSON hold lists where the live config held tuples.
  if isinstance(x, dict):
    return {k: _normalise_json(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_normalise_json(v) for v in x]
  return x


def _compare_model_configs(a: dict | None, b: dict | None, na: str, nb: str) -> str | None:
  ma, mb = _model_section(a), _model_section(b)
  if ma is None and mb is None:
    return None
  if ma is None or mb is None:
    return f"config.model: {'missing' if ma is None else 'present'} in {na} vs " \
           f"{'missing' if mb is None else 'present'} in {nb}"
  ma, mb = _architecture(ma), _architecture(mb)
  for key in sorted(set(ma) | set(mb)):
    va, vb = _normalise_json(ma.get(key, "<missing>")), _normalise_json(mb.get(key, "<missing>"))
    if va != vb:
      return f"config.model.{key}: {va!r} in {na} vs {vb!r} in {nb}"
  return None


class Source:
  """One checkpoint to average: its resolved directory, step, metadata and parameter shapes."""

  def __init__(self, path: str, step: int | None = None):
    self.given = path
    self.path = resolve_checkpoint_dir(path)
    self.meta = checkpoints.read_meta(self.path, step)  # FileNotFoundError: no complete step
    self.step = int(self.meta.get("step", step if step is not None else -1))
    self.params_meta = checkpoints.params_metadata(self.path, self.step)
    self.config = self.meta.get("config")
    self.item_dir = os.path.join(self.path, str(self.step), checkpoints.PARAMS)
    if not os.path.isdir(self.item_dir):
      raise MissingInput(f"{path}: step {self.step} has no parameter directory {self.item_dir}")

  @property
  def nbytes(self) -> int:
    return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
               for x in jax.tree.leaves(self.params_meta))


def plan(paths: Sequence[str], weights: Sequence[float] | None = None,
         steps: Sequence[int | None] | None = None, normalize: bool = True,
         out: str | None = None) -> tuple[list[Source], np.ndarray]:
  """Validates an averaging job without reading any array: returns (sources, weights).

  Checks: at least one path; one weight per path (non-negative, not all zero when normalised);
  every path holds a complete checkpoint (at `steps[i]`, else its latest); their configs agree on
  the model architecture and their parameter trees on paths, shapes and dtypes; `out`, if given,
  is new or empty (`checkpoints.output_conflict`: not a file, a checkpoint or a run's workdir)."""
  paths = list(paths)
  if not paths:
    raise ValueError("nothing to average: no checkpoint paths given")
  w = check_weights(weights, len(paths), normalize)
  steps = [None] * len(paths) if steps is None else list(steps)
  if len(steps) != len(paths):
    raise ValueError(f"got {len(steps)} steps for {len(paths)} checkpoints")
  if out is not None:
    why = checkpoints.output_conflict(os.path.abspath(out))
    if why:
      raise FileExistsError(f"output {out}: {why}; refusing to overwrite: choose a new directory")
  sources = []
  for p, s in zip(paths, steps):
    if not os.path.exists(p):
      raise MissingInput(f"checkpoint path {p} does not exist")
    sources.append(Source(p, s))
  first = sources[0]
  for i, src in enumerate(sources[1:], start=1):
    na, nb = f"checkpoint 0 ({first.given})", f"checkpoint {i} ({src.given})"
    why = _compare_model_configs(first.config, src.config, na, nb)
    if why:
      raise ValueError(f"cannot average checkpoints with different architectures: {why}")
    why = tree_mismatch(first.params_meta, src.params_meta, (na, nb))
    if why:
      raise ValueError(f"cannot average checkpoints with different parameters: {why}")
  if out is not None:
    out_abs = os.path.abspath(out)
    for src in sources:
      if os.path.commonpath([out_abs, src.path]) == src.path:
        raise ValueError(f"output {out} lies inside the source checkpoint {src.given}")
  _check_leaves_floating(first.params_meta, f"checkpoint 0 ({first.given})")
  return sources, w
