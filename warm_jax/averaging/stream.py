"""Streaming a weighted average over orbax checkpoints: `average_checkpoints`, `average_once`.

    params, meta = average_checkpoints(["runs/rm0", "runs/rm1", "runs/rm2"], out="runs/warm")

One checkpoint is read at a time into a running float32 sum, a group of arrays at a time
(`array_reader`: straight onto the target shardings, into two reused host buffers, the next group
read while this one is added, the disk asked for the two after it), so peak memory is the sum plus
two groups whatever the number of checkpoints. Everything is validated (`plan`) before any array is
read and before anything is written; every array read is checked against the digest recorded when
its checkpoint was saved, and the result must be finite; it is written with
`checkpoints.save_params`, which is atomic (orbax writes a temporary directory and renames it when
complete). A source that cannot be read is an `errors.DamagedInput` / `MissingInput` naming the
checkpoint, its step and what is wrong.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import os
import time
from typing import Any, Callable, Iterable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import warm_jax
from warm_jax import checkpoints, errors
from warm_jax.averaging import array_reader
from warm_jax.averaging.sources import Source, model_fingerprint, plan
from warm_jax.averaging.tree import _acc_dtype, _cached_jit, _cast_to
from warm_jax.checkpoints import tree_mismatch


def _as_nested_dicts(tree: Any) -> dict:
  """orbax's metadata tree (a custom pytree node) as the plain nested dict of its leaves."""
  out: dict = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    node = out
    keys = [getattr(k, "key", getattr(k, "idx", getattr(k, "name", None))) for k in path]
    for k in keys[:-1]:
      node = node.setdefault(k, {})
    node[keys[-1]] = leaf
  return out


def default_target(params_meta: Any, device: jax.Device | None = None) -> Any:
  """ShapeDtypeStructs of a checkpoint's params on one device (the restore target when none is
  given), as a plain nested dict."""
  from warm_jax import sharding
  return sharding.abstract(_as_nested_dicts(params_meta),
                           jax.sharding.SingleDeviceSharding(device or jax.devices()[0]))


def _leaf_start(x, w):
  dt = _acc_dtype(x.dtype)
  return w.astype(dt) * x.astype(dt)


def _leaf_add(acc, x, w):
  return acc + w.astype(acc.dtype) * x.astype(acc.dtype)


def _leaf_op(fn: Callable, sharding, donate: bool = False) -> Callable:
  """A jitted per-leaf op whose output keeps `sharding` (compiled once per shape and dtype)."""
  return _cached_jit(fn, (sharding, donate), out_shardings=sharding,
                     donate_argnums=(0,) if donate else ())


def _compile_ahead(abstract: list, pool: concurrent.futures.Executor) -> dict:
  """Compiles in `pool` the start and the add op of each distinct (shape, dtype, sharding) of
  `abstract`, start ops first (the first checkpoint needs them), so that compiling overlaps the
  first reads instead of holding up the adds; returns {(signature, is_start): future}. The
  jitted calls then hit jax's compilation cache."""
  w = jax.ShapeDtypeStruct((), jnp.float32)
  futures: dict = {}
  for first in (True, False):
    for a in abstract:
      key = (_signature(a), first)
      if key in futures:
        continue
      if first:
        futures[key] = pool.submit(lambda a=a: _leaf_op(_leaf_start, a.sharding).lower(a, w).compile())
      else:
        acc = jax.ShapeDtypeStruct(a.shape, _acc_dtype(a.dtype), sharding=a.sharding)
        futures[key] = pool.submit(lambda a=a, acc=acc: _leaf_op(_leaf_add, a.sharding, donate=True)
                                   .lower(acc, a, w).compile())
  return futures


def _signature(a) -> tuple:
  return tuple(a.shape), np.dtype(a.dtype), a.sharding


READ_AHEAD = 2  # reads whose bytes the disk is asked for beyond the one in flight


def _leaf_groups(leaves: list, group_bytes: int) -> list[list[int]]:
  """Consecutive leaf indices in groups of about `group_bytes` (one leaf may exceed it)."""
  groups, cur, size = [], [], 0
  for i, x in enumerate(leaves):
    n = int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
    if cur and size + n > group_bytes:
      groups.append(cur)
      cur, size = [], 0
    cur.append(i)
    size += n
  if cur:
    groups.append(cur)
  return groups


def _nest(keys: list[tuple], values: list) -> dict:
  out: dict = {}
  for path, v in zip(keys, values):
    node = out
    for k in path[:-1]:
      node = node.setdefault(k, {})
    node[path[-1]] = v
  return out


def _path_keys(path) -> tuple:
  return tuple(getattr(k, "key", getattr(k, "idx", getattr(k, "name", None))) for k in path)


_PYTREE_READER = None


def _restore_item(item_dir: str, keys: list[tuple], abstract: list) -> list:
  """Restores only the leaves at `keys` of the params item at `item_dir`, onto the shardings of
  `abstract` (orbax partial restore: only those arrays' bytes are read)."""
  import orbax.checkpoint as ocp
  global _PYTREE_READER
  if _PYTREE_READER is None:
    _PYTREE_READER = ocp.Checkpointer(checkpoints.array_handler())
  out = _PYTREE_READER.restore(item_dir, args=checkpoints.restore_args(_nest(keys, abstract),
                                                                       partial=True))
  values = []
  for path in keys:
    node = out
    for k in path:
      node = node[k]
    values.append(node)
  return values


def target_leaves(params_meta: Any, target: Any | None) -> tuple[list, Any]:
  """(flattened leaves with their paths, treedef) of the restore target of checkpoints whose
  params metadata is `params_meta`: `target` (checked against it: InputError naming the first
  differing parameter), or one device's (`default_target`) when None."""
  from warm_jax.errors import InputError
  if target is None:
    target = default_target(params_meta)
  else:
    why = tree_mismatch(params_meta, target, ("the checkpoints", "the target"))
    if why:
      raise InputError(f"the restore target does not match the checkpoints: {why}")
  return jax.tree_util.tree_flatten_with_path(target)


def group_reads(reader: array_reader.ArrayReader, keys: list,
                abstract: list) -> tuple[Callable, Callable, Callable]:
  """(start, finish, prefetch) of reading a group of leaves of a checkpoint's params:
  `start(source, leaves)` starts the read of the leaves (indices into `keys`) and returns at once
  (`reader`'s background read, or for a layout it does not know an orbax partial restore, which
  `finish` runs); `finish(pending, source)` returns the arrays, on the shardings of `abstract`,
  each checked against the digest its checkpoint recorded (a failure to read or a mismatch:
  DamagedInput naming the checkpoint); `prefetch(source, leaves)` has the disk start on a later
  read (`ArrayReader.prefetch`)."""
  def expected(source):
    return (source.meta.get("digests") or {}).get(checkpoints.PARAMS)

  def start(source, leaves: list[int]):
    ks, ab = [keys[j] for j in leaves], [abstract[j] for j in leaves]
    if reader.supports(source.item_dir):
      return reader.start(source.item_dir, ks, ab, expect=expected(source))
    return ("orbax", source.item_dir, ks, ab)  # another layout: an orbax restore

  def finish(pending, source) -> list:
    where = checkpoints.where(source.path, source.step)
    with errors.reading(f"{where} is damaged: {checkpoints.PARAMS}/ does not read",
                        "average another step, or re-create this one"):
      if pending[0] != "orbax":
        return reader.finish(pending)
      values = _restore_item(*pending[1:])
    checkpoints.check_digests(_nest(pending[2], values), expected(source), where,
                              checkpoints.PARAMS)
    return values

  def prefetch(source, leaves: list[int]) -> None:
    if reader.supports(source.item_dir):
      reader.prefetch(source.item_dir, [keys[j] for j in leaves], [abstract[j] for j in leaves])

  return start, finish, prefetch


class Read(NamedTuple):
  """One read of a streaming loop (`read_loop`): `start()` starts it (returns at once),
  `finish(pending)` returns its values, `take(values)` uses them. `prefetch`: for a read from
  disk (not the page cache), has the disk start on it ahead of time. `needed`: where given, the
  read is skipped if it returns False when the loop comes to it."""
  start: Callable
  finish: Callable
  take: Callable
  prefetch: Callable | None = None
  needed: Callable[[], bool] | None = None


def read_loop(reads: Iterable[Read], disk: Sequence[Callable] = ()) -> None:
  """Runs `reads` in order (an iterable: a generator may decide late what comes next): the next
  read overlaps this take (double-buffered), and when the d-th read from disk starts, the disk
  is asked for the READ_AHEAD after it (`disk`: every disk read's prefetch, in order), so that
  it keeps working while a take computes. A take must be done with its values (views of the
  buffer the read after next fills) when it returns."""
  reads = (r for r in reads if r.needed is None or r.needed())
  issued, started = 1, 0

  def start(read: Read):
    nonlocal issued, started
    if read.prefetch is not None:
      started += 1
      while issued < min(started + READ_AHEAD, len(disk)):
        disk[issued]()
        issued += 1
    return read.start()

  cur = next(reads, None)
  pending = start(cur) if cur is not None else None
  while cur is not None:
    values = cur.finish(pending)
    following = next(reads, None)
    if following is not None:
      pending = start(following)
    cur.take(values)
    del values
    cur = following


def _release_free_memory() -> None:
  """Returns freed heap pages to the OS (glibc keeps large freed buffers otherwise, and the RSS
  of a streaming average would creep up by a fraction of a model per checkpoint)."""
  try:
    import ctypes
    ctypes.CDLL("libc.so.6").malloc_trim(0)
  except (OSError, AttributeError):
    pass


def average_checkpoints(paths: Sequence[str], weights: Sequence[float] | None = None, *,
                        steps: Sequence[int | None] | None = None, normalize: bool = True,
                        target: Any | None = None, out: str | None = None,
                        on_read: Callable[[int, "Source", float], None] | None = None,
                        group_bytes: int = 32 << 20) -> tuple[Any, dict]:
  """Streams a weighted average of checkpoints: returns (params, meta), writes `out` if given.

  One checkpoint is read at a time, in groups of leaves of about `group_bytes`, by
  `array_reader.ArrayReader` (a background thread reading each group into one of two reused host
  buffers, straight onto `target`: a tree of ShapeDtypeStructs with shardings, default one
  device; orbax partial restores for items that are not OCDBT). The next group is read while this
  one is added into a float32 running sum updated in place (donated), and the disk is asked for
  the two groups after it (`read_loop`: into the page cache), so peak memory is the sum + two
  groups whatever len(paths), and nothing is allocated per checkpoint.
  Checkpoints with weight 0 are validated but not read. `on_read(i, source, seconds)` is called
  after each checkpoint (progress bars). All validation (see `plan`) happens before any array is
  read; every array read must match the digest its checkpoint recorded, and the result must be
  finite (else InputError, nothing written); `out` is written atomically by
  `checkpoints.save_params`, so an interrupted run never leaves a complete-looking checkpoint.
  The metadata records the sources, their steps, the weights, the architecture fingerprint and
  the source config (so the average loads like any other checkpoint)."""
  sources, w = plan(paths, weights, steps, normalize, out)
  flat, treedef = target_leaves(sources[0].params_meta, target)
  keys = [_path_keys(p) for p, _ in flat]
  abstract = [a for _, a in flat]
  groups = _leaf_groups(abstract, group_bytes)

  read = [i for i, wi in enumerate(w) if wi != 0.0]  # weight 0 contributes nothing: not read
  schedule = [(i, g) for i in read for g in range(len(groups))]

  with contextlib.ExitStack() as stack:
    reader = stack.enter_context(array_reader.ArrayReader())
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="warm_jax-compile")
    stack.callback(pool.shutdown, wait=True, cancel_futures=True)  # interrupted: no more compiles
    compiled = _compile_ahead(abstract, pool)

    start_group, finish, prefetch = group_reads(reader, keys, abstract)
    acc: list = [None] * len(abstract)
    t0 = [time.time()]

    def add(i: int, g: int, values: list) -> None:  # group g of checkpoint i into the sum
      wi32 = jnp.float32(w[i])
      for j, x in zip(groups[g], values):
        sh, first = abstract[j].sharding, acc[j] is None
        compiled[(_signature(abstract[j]), first)].result()
        acc[j] = (_leaf_op(_leaf_start, sh)(x, wi32) if first
                  else _leaf_op(_leaf_add, sh, donate=True)(acc[j], x, wi32))
      jax.block_until_ready([acc[j] for j in groups[g]])  # done with the reader's buffer
      if g == len(groups) - 1:  # checkpoint i is in the sum
        _release_free_memory()
        if on_read is not None:
          on_read(i, sources[i], time.time() - t0[0])
        t0[0] = time.time()

    reads = [Read(functools.partial(start_group, sources[i], groups[g]),
                  functools.partial(finish, source=sources[i]), functools.partial(add, i, g),
                  functools.partial(prefetch, sources[i], groups[g])) for i, g in schedule]
    read_loop(reads, [r.prefetch for r in reads])
  leaves = []
  for j, a in enumerate(acc):
    if a is None:  # nothing was read: every weight is 0 (normalize=False)
      a = jnp.zeros(abstract[j].shape, _acc_dtype(abstract[j].dtype), device=abstract[j].sharding)
    dt = np.dtype(abstract[j].dtype)
    leaves.append(a if a.dtype == dt else _leaf_op(_cast_to(dt), abstract[j].sharding)(a))
    acc[j] = None
  _check_finite(keys, leaves, w)
  result = jax.tree_util.tree_unflatten(treedef, leaves)

  meta = {
      "averaged": True,
      "sources": [{"path": s.path, "step": s.step, "weight": float(wi)}
                  for s, wi in zip(sources, w)],
      "paths": [s.path for s in sources],
      "steps": [s.step for s in sources],
      "weights": [float(x) for x in w],
      "normalized": bool(normalize),
      "model_fingerprint": model_fingerprint(sources[0].config),
      "source_versions": [s.meta.get("version") for s in sources],
      "averaged_with": warm_jax.__version__,
      "config": sources[0].config,
  }
  if out is not None:
    checkpoints.save_params(out, result, meta)
  return result, meta


def _all_finite(x):
  return jnp.isfinite(jnp.sum(x * 0, dtype=jnp.float32))  # inf * 0 and nan * 0 are nan


def _check_finite(keys: list[tuple], leaves: list, w: np.ndarray) -> None:
  """InputError naming the first leaf of an average that holds an inf or a NaN: weights large
  enough to overflow with these parameters (normalize=False), or a source holding them. One leaf
  at a time (one jitted reduction per shape), so no temporary of the whole model is made."""
  flags = [_cached_jit(_all_finite, ("all_finite", x.sharding))(x) for x in leaves]
  for k, ok in zip(keys, jax.device_get(flags)):
    if not ok:
      raise errors.InputError(
          f"the weighted average (weights {w.tolist()}) is not finite at "
          f"{'/'.join(map(str, k))}: the weights overflow float32 with these parameters, or a "
          "checkpoint holds non-finite values; nothing was written")


def average_once(path: str, sources: Sequence[str]) -> str:
  """The uniform weight average of the runs `sources`, written to `path` unless a complete one is
  there; an existing average must have been made from the same runs (any order; compared by run
  directory name, so a moved workdir still matches). Returns `path`."""
  from warm_jax.errors import InputError
  if not checkpoints.complete_steps(path):
    average_checkpoints(sources, out=path)
  meta = checkpoints.read_meta(path)
  run_name = lambda p: os.path.basename(os.path.dirname(os.path.normpath(p)))  # noqa: E731
  made_from = sorted(run_name(p) for p in meta.get("paths", []))
  wanted = sorted(run_name(checkpoints.resolve_checkpoint_dir(p)) for p in sources)
  if made_from != wanted:
    raise InputError(f"{path} holds an average of {meta.get('paths')}, not of {list(sources)}: "
                     "remove it to recompute")
  return path
