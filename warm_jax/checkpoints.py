"""Orbax checkpoints: save every k steps, keep n, atomic, resumable, restorable onto any mesh.

Layout of a run's checkpoint directory (one orbax CheckpointManager):

    <dir>/<step>/params/     the model parameters (orbax PyTree arrays; what averaging reads)
    <dir>/<step>/opt_state/  the optimizer state
    <dir>/<step>/meta/       JSON: step, data-iterator state, the config, warm_jax version

Orbax writes each step into a temporary directory and renames it when every item is complete, so
a step directory that is listed is always whole; a run killed mid-save leaves only a temporary
directory, which is ignored (and cleaned up on the next start).

Arrays are restored straight into the shardings of the target mesh (`jax.ShapeDtypeStruct` with a
`sharding`), so a checkpoint saved on (data=8) restores on (data=2, fsdp=2, tensor=2) or on one CPU.
No pickle is ever read: parameters are tensorstore arrays, metadata is JSON.

Every array is checksummed when it is saved (`array_digest`, recorded in `meta`) and checked when
it is read back, so damaged bytes are an error, never a silently different model (orbax stores the
arrays' bytes without a checksum of their own). Every failure to read a checkpoint (a missing
item, a truncated or overwritten file, a directory where a file should be) is an
`errors.DamagedInput` / `errors.MissingInput` naming the checkpoint directory, the step and what
is wrong. A run resumes only under the config it was saved with, but for the fields of
`RESUME_MAY_CHANGE` (`Checkpointer.check_config`).

Arrays are stored without zstd compression (orbax's default compresses): float weights barely
shrink, while decompression slows streaming checkpoints back (benchmarks/README.md has the
measurements). Compressed checkpoints of other tools restore all the same (the codec is recorded
in the array metadata).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

import warm_jax
from warm_jax import errors


# Orbax warns on every read-only CheckpointManager (how restores here open checkpoints): routine.
logging.getLogger("absl").addFilter(
    lambda r: not any(f in r.getMessage() for f in ("read_only=True, setting save_interval_steps",
                                                    "Given directory is read only")))

PARAMS, OPT_STATE, META = "params", "opt_state", "meta"


def _manager(directory: str, *, keep: int | None = None, read_only: bool = False,
             async_save: bool = True) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=not read_only,
      read_only=read_only, cleanup_tmp_directories=not read_only,
      enable_async_checkpointing=async_save)
  handlers = {PARAMS: array_handler(), OPT_STATE: array_handler(),
              META: ocp.JsonCheckpointHandler()}
  return ocp.CheckpointManager(os.path.abspath(directory), options=options, item_handlers=handlers)


def keystr(path) -> str:
  """'a/b/c' for a pytree key path."""
  return jax.tree_util.keystr(path, simple=True, separator="/")


def _describe(x) -> str:
  if hasattr(x, "shape") and hasattr(x, "dtype"):
    return f"{np.dtype(x.dtype).name}{list(x.shape)}"
  return type(x).__name__


def tree_mismatch(a: Any, b: Any, names: tuple[str, str] = ("a", "b"),
                  structure: bool = False) -> str | None:
  """The first path at which two pytrees differ in presence, shape or dtype (with both values),
  or None when they agree. Leaves need `.shape` and `.dtype` (arrays, ShapeDtypeStructs, orbax
  array metadata). `structure`: also require identical container types (in-memory trees)."""
  na, nb = names
  flat_a = {keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(a)[0]}
  flat_b = {keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(b)[0]}
  for path in sorted(set(flat_a) | set(flat_b)):
    if path not in flat_a:
      return f"{path}: missing in {na}, {_describe(flat_b[path])} in {nb}"
    if path not in flat_b:
      return f"{path}: {_describe(flat_a[path])} in {na}, missing in {nb}"
    x, y = flat_a[path], flat_b[path]
    if not (hasattr(x, "shape") and hasattr(y, "shape")):
      return f"{path}: {_describe(x)} in {na} vs {_describe(y)} in {nb} (leaves must be arrays)"
    if tuple(x.shape) != tuple(y.shape) or np.dtype(x.dtype) != np.dtype(y.dtype):
      return f"{path}: {_describe(x)} in {na} vs {_describe(y)} in {nb}"
  if structure and jax.tree_util.tree_structure(a) != jax.tree_util.tree_structure(b):
    return (f"tree structure: {jax.tree_util.tree_structure(a)} in {na} vs "
            f"{jax.tree_util.tree_structure(b)} in {nb}")
  return None


def first_mismatch(saved: Any, target: Any) -> str | None:
  """Names the first parameter path whose presence, shape or dtype differs between a checkpoint
  and a model (e.g. 'decoder/w: float32[4, 2] in the checkpoint vs float32[5, 2] in the model'),
  or None if they agree."""
  return tree_mismatch(saved, target, ("the checkpoint", "the model"))


def array_handler() -> ocp.PyTreeCheckpointHandler:
  """The handler of the array items (params, optimizer state): OCDBT, zarr3, uncompressed."""
  return ocp.PyTreeCheckpointHandler(use_ocdbt=True, use_zarr3=True, use_compression=False)


def restore_args(abstract: Any, partial: bool = False) -> ocp.args.PyTreeRestore:
  """Restore arguments putting each array of `abstract` (ShapeDtypeStructs with shardings) straight
  onto its sharding, in `abstract`'s tree structure. `partial`: `abstract` holds only some of the
  saved arrays, and only those are read."""
  def one(x):
    return ocp.ArrayRestoreArgs(sharding=x.sharding, global_shape=tuple(x.shape), dtype=x.dtype)
  return ocp.args.PyTreeRestore(item=abstract, restore_args=jax.tree.map(one, abstract),
                                partial_restore=partial)


class Checkpointer:
  """Saves and resumes one training run.

  `save(step, state, data_state)` writes when `step` is a multiple of `save_every` (or `force`);
  the decision is ours, not orbax's interval policy, so the steps on disk are predictable;
  `restore_latest(abstract_state)` returns (state, data_state, step) or None when there is none.
  """

  def __init__(self, directory: str, *, save_every: int, keep: int, config=None,
               async_save: bool = True):
    self.directory = directory
    self.config = config
    self.save_every = save_every
    with errors.reading(f"checkpoint directory {directory} does not read"):
      self._mngr = _manager(directory, keep=keep, async_save=async_save)
      self._last_saved = self._mngr.latest_step()

  def latest_step(self) -> int | None:
    return self._mngr.latest_step()

  def due(self, step: int) -> bool:
    """Whether a periodic (unforced) save happens at `step`."""
    return step % self.save_every == 0 and (self._last_saved is None or step > self._last_saved)

  def save(self, step: int, state, data_state: dict | None = None, force: bool = False) -> bool:
    """Saves when `step` is a multiple of save_every, or when forced (last step, pre-emption)."""
    if self._last_saved is not None and step <= self._last_saved:
      return False  # already saved (e.g. the periodic save of a step that is also the last)
    if not force and step % self.save_every:
      return False
    meta = {"step": int(step), "data_state": data_state or {}, "version": warm_jax.__version__,
            "config": self.config.to_dict() if self.config is not None else None,
            "digests": {PARAMS: digests(state.params), OPT_STATE: digests(state.opt_state)}}
    args = ocp.args.Composite(**{
        PARAMS: ocp.args.PyTreeSave(state.params),
        OPT_STATE: ocp.args.PyTreeSave(state.opt_state),
        META: ocp.args.JsonSave(jsonable(meta))})
    saved = self._mngr.save(int(step), args=args, force=True)
    if saved:
      self._last_saved = int(step)
    return saved

  def check_compatible(self, abstract_state, step: int | None = None) -> None:
    """Raises ValueError naming the first differing parameter if the checkpoint does not fit."""
    step = self.latest_step() if step is None else step
    saved = _saved_params(self._mngr, self.directory, step)
    mismatch = first_mismatch(saved, abstract_state.params)
    if mismatch:
      raise ValueError(f"checkpoint {self.directory} step {step} does not match the configured "
                       f"model: {mismatch}")

  def check_config(self, step: int | None = None) -> list[str]:
    """Refuses (InputError naming every differing field) to resume step `step` (default: the
    latest) under a config that differs from the one it was saved with in a field outside
    RESUME_MAY_CHANGE, unless $WARM_JAX_RESUME_CHANGED_CONFIG is 1; returns the differences it
    let through (all of them when forced). A checkpoint saved without a config is not checked."""
    step = self.latest_step() if step is None else step
    saved = _restore_meta(self._mngr, self.directory, step).get("config")
    if saved is None or self.config is None:
      return []
    changes = config_changes(saved, self.config.to_dict())
    if changes and os.environ.get(RESUME_CHANGED_CONFIG_ENV) != "1":
      raise errors.InputError(
          f"{where(self.directory, step)} was saved under another config; resuming it would "
          "change what the run computes or which run it is:\n  " + "\n  ".join(changes) +
          f"\nUse another --workdir, restore the config, or resume anyway with "
          f"--resume_changed_config ({RESUME_CHANGED_CONFIG_ENV}=1). Fields that may change on "
          f"resume: {', '.join(RESUME_MAY_CHANGE)}")
    return changes

  def restore(self, step: int, abstract_state):
    """Restores (state, data_state) onto the shardings carried by `abstract_state`'s leaves,
    checked against the digests recorded when it was saved."""
    self.check_compatible(abstract_state, step)
    _check_items(self.directory, step, (PARAMS, OPT_STATE, META))
    with errors.reading(f"{where(self.directory, step)} is damaged: it does not read", _FIX):
      out = self._mngr.restore(step, args=ocp.args.Composite(**{
          PARAMS: restore_args(abstract_state.params),
          OPT_STATE: restore_args(abstract_state.opt_state),
          META: ocp.args.JsonRestore()}))
    meta = out[META]
    if not isinstance(meta, dict):
      raise errors.DamagedInput(f"{where(self.directory, step)} is damaged: {META}/ holds "
                                f"{type(meta).__name__}, not the JSON object it should; {_FIX}")
    for item in (PARAMS, OPT_STATE):
      check_digests(out[item], (meta.get("digests") or {}).get(item), where(self.directory, step),
                    item)
    state = abstract_state.replace(step=jax.device_put(np.int32(step), abstract_state.step.sharding),
                                   params=out[PARAMS], opt_state=out[OPT_STATE])
    return state, meta.get("data_state", {})

  def restore_latest(self, abstract_state):
    step = self.latest_step()
    if step is None:
      return None
    state, data_state = self.restore(step, abstract_state)
    return state, data_state, step

  def wait(self) -> None:
    self._mngr.wait_until_finished()

  def close(self) -> None:
    self._mngr.wait_until_finished()
    self._mngr.close()


def jsonable(x):
  """x with numpy scalars made python numbers and tuples made lists (for json.dump)."""
  if isinstance(x, dict):
    return {str(k): jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [jsonable(v) for v in x]
  if isinstance(x, (np.integer,)):
    return int(x)
  if isinstance(x, (np.floating,)):
    return float(x)
  return x


def write_atomic(path: str, text: str) -> None:
  """Writes a small text file so that a crash leaves either the old file or the new one. In a
  multi-host run only process 0 writes (the workdir is shared)."""
  if jax.process_index() != 0:
    return
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def resolve_checkpoint_dir(path: str) -> str:
  """A run's workdir (holding `checkpoints/`) or a checkpoint directory itself -> the latter.

  A directory holding both `checkpoints/` and step directories is refused (InputError): which of
  the two it means cannot be told (e.g. a run's workdir that an average was written into)."""
  path = os.path.abspath(os.path.expanduser(path))
  sub = os.path.join(path, "checkpoints")
  if os.path.isdir(sub):
    steps = sorted(n for n in os.listdir(path) if n.isdigit())
    if steps:
      raise errors.InputError(
          f"{path} holds both a run's checkpoints/ and checkpoint steps {steps}: it is ambiguous "
          f"whether it means the run ({sub}) or the checkpoint ({path}); give one of those, and "
          "move the other out")
    return sub
  return path


def output_conflict(path: str) -> str | None:
  """Why a new checkpoint must not be written at `path`, or None: it exists and is not a
  directory, it already holds a complete checkpoint, or it holds anything but what an interrupted
  save into it leaves (orbax's '<step>.orbax-checkpoint-tmp-*' directories). A run's workdir (its
  checkpoints/, config.json, metrics) is thus never written into: it would then resolve to the
  new checkpoint instead of the run."""
  if not os.path.lexists(path):
    return None
  if not os.path.isdir(path):
    return f"{path} exists and is not a directory"
  steps = complete_steps(path)
  if steps:
    return f"{path} already holds a checkpoint (steps {steps})"
  others = sorted(n for n in os.listdir(path) if ".orbax-checkpoint-tmp" not in n)
  if others:
    shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
    run = " (a run's workdir)" if "checkpoints" in others or "config.json" in others else ""
    return (f"{path} is not empty{run}: it holds {shown}; a checkpoint written there would be "
            "what it resolves to")
  return None


def where(path: str, step) -> str:
  """'checkpoint <path> step <step>': how every error about one checkpoint names it."""
  return f"checkpoint {path} step {step}"


_FIX = "restore another step, or re-create this one"


def _check_items(path: str, step: int, items: tuple[str, ...]) -> None:
  """MissingInput naming the first of `items` the step directory lacks (orbax would raise a bare
  KeyError), DamagedInput if it is a file."""
  for item in items:
    d = os.path.join(path, str(step), item)
    if not os.path.exists(d):
      raise errors.MissingInput(f"{where(path, step)} is damaged: it has no {item}/ ({d}); {_FIX}")
    if not os.path.isdir(d):
      raise errors.DamagedInput(f"{where(path, step)} is damaged: {d} is not a directory; {_FIX}")


def _resolve(path: str, step: int | None) -> tuple[ocp.CheckpointManager, int]:
  if not os.path.isdir(path):
    raise errors.MissingInput(f"no checkpoint directory at {path}")
  with errors.reading(f"checkpoint directory {path} does not read"):
    mngr = _manager(path, read_only=True)
    step = mngr.latest_step() if step is None else step
    found = list(mngr.all_steps())
  if step is None or step not in found:
    raise errors.MissingInput(f"{path}: no complete checkpoint" + (
        f" for step {step}; complete steps: {found}" if found else ""))
  return mngr, step


def complete_steps(path: str) -> list[int]:
  """The complete (finalised) checkpoint steps in a checkpoint directory, ascending; [] if it
  holds none or does not exist."""
  if not os.path.isdir(path):
    return []
  with errors.reading(f"checkpoint directory {path} does not read"):
    return sorted(int(s) for s in _manager(path, read_only=True).all_steps())


def _restore_meta(mngr: ocp.CheckpointManager, path: str, step: int) -> dict:
  _check_items(path, step, (META,))
  with errors.reading(f"{where(path, step)} is damaged: {META}/ does not read", _FIX):
    meta = mngr.restore(step, args=ocp.args.Composite(**{META: ocp.args.JsonRestore()}))[META]
  if not isinstance(meta, dict):
    raise errors.DamagedInput(f"{where(path, step)} is damaged: {META}/ holds "
                              f"{type(meta).__name__}, not the JSON object it should; {_FIX}")
  return meta


def _saved_params(mngr: ocp.CheckpointManager, path: str, step: int) -> Any:
  _check_items(path, step, (PARAMS,))
  with errors.reading(f"{where(path, step)} is damaged: the metadata of {PARAMS}/ does not read",
                      _FIX):
    saved = mngr.item_metadata(step)[PARAMS]
  if not saved or not hasattr(saved, "items"):
    raise errors.DamagedInput(f"{where(path, step)} is damaged: the parameters' tree "
                              f"({PARAMS}/_METADATA) is missing or empty; {_FIX}")
  return saved


def read_meta(path: str, step: int | None = None) -> dict:
  """The JSON metadata (step, data state, config, version, digests) of a checkpoint; reads no
  arrays."""
  mngr, step = _resolve(path, step)
  return _restore_meta(mngr, path, step)


def params_metadata(path: str, step: int | None = None) -> Any:
  """Tree of the saved parameters' shapes/dtypes, without reading them."""
  mngr, step = _resolve(path, step)
  return _saved_params(mngr, path, step)


def restore_params(path: str, step: int | None = None, target: Any | None = None,
                   skip: tuple[str, ...] = ()) -> Any:
  """Restores only the parameters of a checkpoint (latest step by default), checked against the
  digests recorded when it was saved.

  `target`: a tree of `jax.ShapeDtypeStruct` with shardings (restore straight onto a mesh), or
  None for numpy arrays on the host. A target of another shape raises a ValueError
  naming the first differing path. `skip`: top-level parameter groups of the checkpoint that the
  target leaves out on purpose and that are not read (e.g. a PPO policy's 'value_head' when only
  the language model is wanted).
  """
  mngr, step = _resolve(path, step)
  saved = _saved_params(mngr, path, step)
  expected = saved_digests(path, step, PARAMS, mngr)
  partial = any(k in saved for k in skip)
  if target is not None:
    mismatch = first_mismatch({k: v for k, v in saved.items() if k not in skip}, target)
    if mismatch:
      raise ValueError(f"checkpoint {path} step {step} does not match the target: {mismatch}")
    args = restore_args(target, partial=partial)
  else:  # numpy arrays: independent of the devices the checkpoint was saved from
    args = ocp.args.PyTreeRestore(restore_args=jax.tree.map(
        lambda _: ocp.RestoreArgs(restore_type=np.ndarray), saved))
  with errors.reading(f"{where(path, step)} is damaged: {PARAMS}/ does not read", _FIX):
    params = mngr.restore(step, args=ocp.args.Composite(**{PARAMS: args}))[PARAMS]
  check_digests(params, expected, where(path, step), PARAMS)
  return params


# ------------------------------------------------------------------------------------- digests


def _host_digest(a: np.ndarray) -> tuple[int, int, int] | None:
  """(sum, xor, bits) of the elements of a host array read as unsigned integers of their width
  (of 8-byte words for wider elements): the sum modulo 2**32 (2**64 for 8-byte words). None for
  element sizes that are not whole words."""
  a = np.ascontiguousarray(a)
  size = a.dtype.itemsize
  word = 8 if size % 8 == 0 else size if size in (1, 2, 4) else None
  if word is None:
    return None
  words = a.reshape(-1).view(np.dtype(f"uint{8 * word}"))
  bits = 64 if word == 8 else 32
  if words.size == 0:
    return 0, 0, bits
  return (int(words.sum(dtype=np.dtype(f"uint{bits}"))), int(np.bitwise_xor.reduce(words)), bits)


class DigestParts:
  """`array_digest` of an array read in parts (row blocks): the digest's sum and xor add up over
  the parts, so `DigestParts.of([block, ...])` (blocks, or earlier DigestParts) digests them
  together; `array_digest` of it is the whole array's digest."""

  def __init__(self, total: int = 0, xor: int = 0, bits: int = 32, whole: bool = True):
    self.total, self.xor, self.bits, self.whole = total, xor, bits, whole

  @classmethod
  def of(cls, parts) -> "DigestParts":
    out = cls()
    for p in parts:
      d = (p.total, p.xor, p.bits) if isinstance(p, DigestParts) and p.whole else \
          None if isinstance(p, DigestParts) else _host_digest(np.asarray(p))
      if d is None:
        return cls(whole=False)
      out = cls(out.total + d[0], out.xor ^ d[1], d[2])
    return out

  def hex(self) -> str | None:
    return f"{self.total % (1 << self.bits):x}.{self.xor:x}" if self.whole else None


def array_digest(x) -> str | None:
  """A checksum of array `x`'s bytes, '<sum>.<xor>' (hex) of its elements read as unsigned
  integers: the same for a numpy array and for a jax array of any sharding (computed on the host
  from the distinct shards this process holds). It detects damaged bytes (not a permutation of
  whole elements). None when this process holds only part of `x` (multi-host) or its elements are
  not whole words (no checksum is then recorded or checked). `x` may be a `DigestParts`."""
  if isinstance(x, DigestParts):
    return x.hex()
  if isinstance(x, jax.Array):
    if not x.is_fully_addressable:
      return None
    parts = {}
    for shard in x.addressable_shards:
      bounds = tuple(s.indices(n)[:2] for s, n in zip(shard.index, x.shape))
      if bounds not in parts:
        parts[bounds] = np.asarray(shard.data)
    hosts = list(parts.values())
  else:
    hosts = [np.asarray(x)]
  return DigestParts.of(hosts).hex()


def digests(tree: Any) -> dict[str, str] | None:
  """{parameter path: `array_digest`} of every leaf of `tree`, or None if one has none."""
  out = {}
  for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
    d = array_digest(x)
    if d is None:
      return None
    out[keystr(p)] = d
  return out


def saved_digests(path: str, step: int, item: str,
                  mngr: ocp.CheckpointManager | None = None) -> dict[str, str] | None:
  """The digests of `item` ('params', 'opt_state') recorded in a checkpoint's meta, or None (a
  checkpoint saved without them: by another tool, an older version or a multi-host run)."""
  if not os.path.isdir(os.path.join(path, str(step), META)):
    return None  # a checkpoint without our metadata (another tool's): nothing to check against
  meta = _restore_meta(mngr or _resolve(path, step)[0], path, step)
  return (meta.get("digests") or {}).get(item)


def check_digests(tree: Any, expected: dict[str, str] | None, what: str, item: str) -> None:
  """DamagedInput naming `what` (`where`: 'checkpoint D step 4') and the first leaf of `tree` whose
  digest is not the one recorded at save time; leaves with no recorded digest are not checked."""
  if not expected:
    return
  for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
    key = keystr(p)
    want = expected.get(key)
    if want is not None and array_digest(x) not in (None, want):
      raise errors.DamagedInput(
          f"{what} is damaged: {item}/{key} does not match the checksum recorded when it was "
          f"saved; {_FIX}")


# ------------------------------------------------------------------------------ resume config

# The fields of a run's config that may differ when it resumes (a field, or a whole section):
# how long it runs, what it logs and evaluates and how often, how often it saves and how many
# steps it keeps, its policy on non-finite steps, and where it runs (the mesh, the sharding rules,
# where the data cache lives, remat and attention blocking). Any other difference changes the
# function being trained or the run's identity (a seed, a model field, the data, the optimiser,
# the starting checkpoint) and is refused unless forced (RESUME_CHANGED_CONFIG_ENV).
RESUME_MAY_CHANGE = (
    "train.num_steps", "train.log_every", "train.eval_every", "train.eval_batches",
    "train.eval_splits", "train.eval_at_start", "train.ckpt_every", "train.keep",
    "train.on_nonfinite", "train.max_nonfinite_skips", "data.eval_batch_size", "data.data_dir",
    "data.task.data_dir", "mesh", "sharding", "model.remat", "model.remat_policy",
    "model.attention_blocks", "train.store_norm",
)
# Set to 1 (the experiments' --resume_changed_config) to resume under a changed config anyway.
RESUME_CHANGED_CONFIG_ENV = "WARM_JAX_RESUME_CHANGED_CONFIG"


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
  out: dict[str, Any] = {}
  for k, v in d.items():
    if isinstance(v, dict) and v:
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def config_changes(saved: dict, config: dict,
                   may_change: tuple[str, ...] = RESUME_MAY_CHANGE) -> list[str]:
  """'config.<field>: <saved> in the checkpoint vs <now> now' for every field on which a saved
  config and the current one differ, but for the fields (or sections) of `may_change`. A decoder
  field the saved config lacks is compared with its default (configs saved before it existed)."""
  from warm_jax.configs import DECODER_DEFAULTS
  normal = lambda c: json.loads(json.dumps(jsonable(c), default=str))  # noqa: E731
  a, b = _flatten(normal(saved)), _flatten(normal(config))
  for k, v in DECODER_DEFAULTS.items():
    a.setdefault(f"model.{k}", normal(v))
    b.setdefault(f"model.{k}", normal(v))
  out = []
  for key in sorted(set(a) | set(b)):
    if any(key == f or key.startswith(f + ".") for f in may_change):
      continue
    va, vb = a.get(key, "<missing>"), b.get(key, "<missing>")
    if va != vb:
      out.append(f"config.{key}: {va!r} in the checkpoint vs {vb!r} now")
  return out


def save_params(path: str, params: Any, meta: dict, step: int = 0) -> None:
  """Writes a params-only checkpoint (e.g. an average) atomically, with JSON metadata.

  Refuses to write into anything `output_conflict` names (a checkpoint, a run, a file, a
  directory that is not empty but for the leftovers of an interrupted save).
  """
  why = output_conflict(path)
  if why:
    raise FileExistsError(f"{why}; refusing to overwrite: choose a new directory")
  mngr = _manager(path, async_save=False)
  meta = {"step": step, "version": warm_jax.__version__, **meta,
          "digests": {PARAMS: digests(params)}}
  mngr.save(step, args=ocp.args.Composite(**{
      PARAMS: ocp.args.PyTreeSave(params), META: ocp.args.JsonSave(jsonable(meta))}))
  mngr.wait_until_finished()
  mngr.close()
