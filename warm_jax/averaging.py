"""Weight averaging of reward models (WARM): in-memory, over a lambda/simplex grid, and streamed
from orbax checkpoints.

    avg = averaging.average([p1, p2, p3])                      # uniform mean of pytrees
    avg = averaging.average(trees, [1, 2, 1])                  # weights are normalised
    tau = averaging.average([base, d1, d2], [1, .5, .5], normalize=False)   # task-arithmetic sum
    mid = averaging.interpolate(a, b, 0.5)
    accs = averaging.sweep([a, b], averaging.lambda_grid(11), eval_fn, batch)
    params, meta = averaging.average_checkpoints([run1, run2, run3], out="runs/warm")

Every leaf is accumulated in float32 (or wider, for float64 leaves) and cast back to its own dtype,
so bfloat16 params are not summed in bfloat16. Sharded arrays stay sharded: the average is one
jitted elementwise computation whose output shardings are those of the inputs, so nothing is
gathered onto one device.

`average_checkpoints` reads one checkpoint at a time into a running float32 sum, a group of
arrays at a time (`array_reader`: straight onto the target shardings, into two reused host
buffers, the next group read while this one is added), so peak memory is the sum plus two groups
whatever the number of checkpoints. Everything is validated before any array is read
and before anything is written; the result is written with `checkpoints.save_params`, which is
atomic (orbax writes a temporary directory and renames it when complete).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import itertools
import json
import os
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import warm_jax
from warm_jax import array_reader, checkpoints
from warm_jax.configs import DECODER_DEFAULTS
from warm_jax.checkpoints import keystr as _keystr
from warm_jax.checkpoints import resolve_checkpoint_dir
from warm_jax.checkpoints import tree_mismatch

# Fields of config['model'] that only change how a model is trained or computed, not its parameters
# or the function it computes; checkpoints that differ only in them have the same architecture
# (WARM averages runs with diverse dropout, for instance).
TRAINING_ONLY_MODEL_FIELDS = ("dropout_rate", "remat", "attention_blocks")


# ----------------------------------------------------------------------------------------------
# Validation helpers.


def check_weights(weights: Sequence[float] | None, m: int, normalize: bool = True) -> np.ndarray:
  """The weights as float64 [m]: uniform when None; non-negative, finite, not all zero and
  normalised to sum to 1 when `normalize` (else returned as given, any sign: task arithmetic)."""
  if m <= 0:
    raise ValueError("nothing to average: the list of models is empty")
  if weights is None:
    return np.full((m,), 1.0 / m)
  w = np.asarray(list(weights), dtype=np.float64)
  if w.ndim != 1 or w.shape[0] != m:
    raise ValueError(f"got {w.size} weights for {m} models; give one weight per model")
  if not np.all(np.isfinite(w)):
    raise ValueError(f"weights {w.tolist()} must be finite")
  if normalize:
    if np.any(w < 0):
      raise ValueError(f"weights {w.tolist()} must be non-negative (weight {int(np.argmax(w < 0))} "
                       "is negative); pass normalize=False for signed task-arithmetic sums")
    if not np.any(w > 0):
      raise ValueError(f"weights {w.tolist()} are all zero; at least one must be positive")
    w = w / w.sum()
  return w


def _check_leaves_floating(tree: Any, name: str = "tree 0") -> None:
  for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if not hasattr(x, "dtype"):
      raise TypeError(f"{_keystr(path)} in {name}: leaf of type {type(x).__name__} is not an array")
    if not jnp.issubdtype(x.dtype, jnp.floating):
      raise TypeError(f"{_keystr(path)} in {name}: dtype {np.dtype(x.dtype).name} is not a "
                      "floating-point type; only parameters can be averaged")


def _acc_dtype(dtype) -> Any:
  return jnp.promote_types(dtype, jnp.float32)


# ----------------------------------------------------------------------------------------------
# In-memory averaging.


def _weighted_sum(trees: tuple, w: jax.Array) -> Any:
  def leaf(*xs):
    dt = _acc_dtype(xs[0].dtype)
    acc = w[0].astype(dt) * xs[0].astype(dt)
    for i in range(1, len(xs)):
      acc = acc + w[i].astype(dt) * xs[i].astype(dt)
    return acc.astype(xs[0].dtype)
  return jax.tree.map(leaf, *trees)


def _shardings_of(tree: Any) -> Any | None:
  """The tree of shardings of a tree of committed jax.Arrays, or None (host arrays)."""
  leaves = jax.tree.leaves(tree)
  if leaves and all(isinstance(x, jax.Array) and x.committed for x in leaves):
    return jax.tree.map(lambda x: x.sharding, tree)
  return None


_JIT_CACHE: dict = {}


def _cast_to(dtype) -> Callable:
  if dtype not in _CASTS:
    _CASTS[dtype] = lambda a: a.astype(dtype)
  return _CASTS[dtype]


_CASTS: dict = {}


def _cached_jit(fn: Callable, key: Any, **kwargs) -> Callable:
  """One jax.jit object per (fn, output layout), so repeated calls reuse the compilation."""
  k = (fn, key)
  if k not in _JIT_CACHE:
    _JIT_CACHE[k] = jax.jit(fn, **kwargs)
  return _JIT_CACHE[k]


def _layout_key(shardings: Any) -> Any:
  if shardings is None:
    return None
  leaves, treedef = jax.tree.flatten(shardings)
  return (treedef, tuple(leaves))


def combine(trees: Sequence[Any], coeffs: Sequence[float] | jax.Array) -> Any:
  """sum_i coeffs[i] * trees[i], leafwise in float32, cast back to each leaf's dtype.

  No checks on the coefficients (see `average`). Sharded inputs keep tree 0's shardings (other
  trees are moved onto them first); the coefficients are a traced argument, so different
  coefficients reuse one compilation."""
  trees = tuple(trees)
  shardings = _shardings_of(trees[0])
  if shardings is not None:
    trees = (trees[0],) + tuple(
        t if _shardings_of(t) == shardings else jax.device_put(t, shardings) for t in trees[1:])
  fn = _cached_jit(_weighted_sum, _layout_key(shardings),
                   **({} if shardings is None else {"out_shardings": shardings}))
  return fn(trees, jnp.asarray(coeffs, jnp.float32))


def _check_same(trees: Sequence[Any]) -> None:
  for i in range(1, len(trees)):
    mismatch = tree_mismatch(trees[0], trees[i], ("tree 0", f"tree {i}"), structure=True)
    if mismatch:
      raise ValueError(f"cannot average: tree {i} does not match tree 0 at {mismatch}")


def average(trees: Sequence[Any], weights: Sequence[float] | None = None,
            normalize: bool = True) -> Any:
  """Weighted mean of pytrees with identical structure, shapes and dtypes.

  `weights`: uniform when None; otherwise non-negative and normalised to sum to 1. With
  `normalize=False` the weights are used as given (any sign): sum_i w_i * tree_i, e.g. task
  arithmetic `base + sum_i a_i (ft_i - base)` as weights [1 - sum a, a_1, ...].
  Raises ValueError naming the first differing path (and both values) on a mismatch."""
  trees = list(trees)
  w = check_weights(weights, len(trees), normalize)
  _check_same(trees)
  _check_leaves_floating(trees[0])
  return combine(trees, w)


def interpolate(a: Any, b: Any, lam: float) -> Any:
  """(1 - lam) * a + lam * b. lam outside [0, 1] extrapolates along the line through a and b."""
  _check_same([a, b])
  _check_leaves_floating(a)
  return combine([a, b], [1.0 - lam, lam])


def lambda_grid(n: int = 11) -> np.ndarray:
  """n evenly spaced interpolation coefficients from 0 to 1 (both included)."""
  if n < 2:
    raise ValueError(f"a lambda grid needs at least 2 points, got {n}")
  return np.linspace(0.0, 1.0, n)


def simplex_grid(m: int, resolution: int) -> np.ndarray:
  """Every weight vector of length m with entries k / resolution (k integer) summing to 1.

  [C(resolution + m - 1, m - 1), m] rows, vertices first then in lexicographic order of the
  counts; m=2 gives the lambda grid as rows [1 - lam, lam]."""
  if m < 1 or resolution < 1:
    raise ValueError(f"simplex_grid needs m >= 1 and resolution >= 1, got m={m}, "
                     f"resolution={resolution}")
  rows = []
  # Stars and bars: choose m - 1 cut points among resolution + m - 1 slots.
  for cuts in itertools.combinations(range(resolution + m - 1), m - 1):
    bounds = (-1,) + cuts + (resolution + m - 1,)
    rows.append([bounds[i + 1] - bounds[i] - 1 for i in range(m)])
  grid = np.asarray(rows, np.float64)[::-1] / resolution
  vertices = np.max(grid, axis=1) == 1.0
  return np.concatenate([grid[vertices], grid[~vertices]])


def sweep(trees: Sequence[Any], grid: Sequence[Sequence[float]] | np.ndarray,
          eval_fn: Callable[..., Any], *args, normalize: bool = True) -> list[Any]:
  """eval_fn(average(trees, w), *args) for each weight vector w (row) of `grid`.

  Averaging and evaluation are compiled together once (the weights are a traced argument), so
  each point costs one call of one jitted function. `grid` rows have one weight per tree (a
  [n, M] array such as `simplex_grid(M, r)`); for two trees a 1-D grid of lambdas means rows
  [1 - lam, lam]. Returns the host (numpy) outputs, one per point."""
  trees = list(trees)
  grid = np.asarray(grid, np.float64)
  if grid.ndim == 1 and len(trees) == 2:
    grid = np.stack([1.0 - grid, grid], axis=1)
  if grid.ndim != 2 or grid.shape[1] != len(trees):
    raise ValueError(f"grid of shape {grid.shape} does not have one column per model "
                     f"({len(trees)} models)")
  rows = [check_weights(row, len(trees), normalize) for row in grid]
  _check_same(trees)
  _check_leaves_floating(trees[0])
  shardings = _shardings_of(trees[0])
  if shardings is not None:
    trees = [trees[0]] + [t if _shardings_of(t) == shardings else jax.device_put(t, shardings)
                          for t in trees[1:]]

  def point(ts, w, *a):
    params = _weighted_sum(ts, w)
    if shardings is not None:
      params = jax.lax.with_sharding_constraint(params, shardings)
    return eval_fn(params, *a)

  fn = jax.jit(point)
  return [jax.device_get(fn(tuple(trees), jnp.asarray(w, jnp.float32), *args)) for w in rows]


def interpolation_sweep(a: Any, b: Any, lams: Sequence[float], eval_fn: Callable[..., Any],
                        *args) -> list[Any]:
  """eval_fn((1 - lam) a + lam b, *args) for each lam (extrapolation allowed), one jitted fn."""
  lams = np.asarray(lams, np.float64)
  return sweep([a, b], np.stack([1.0 - lams, lams], axis=1), eval_fn, *args, normalize=False)


# ----------------------------------------------------------------------------------------------
# Streaming over orbax checkpoints.


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
      raise FileNotFoundError(f"{path}: step {self.step} has no parameter directory {self.item_dir}")

  @property
  def nbytes(self) -> int:
    return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
               for x in jax.tree.leaves(self.params_meta))


def _has_checkpoint(path: str) -> bool:
  if not os.path.isdir(path):
    return False
  try:
    checkpoints.read_meta(path)
    return True
  except FileNotFoundError:
    return False


def plan(paths: Sequence[str], weights: Sequence[float] | None = None,
         steps: Sequence[int | None] | None = None, normalize: bool = True,
         out: str | None = None) -> tuple[list[Source], np.ndarray]:
  """Validates an averaging job without reading any array: returns (sources, weights).

  Checks: at least one path; one weight per path (non-negative, not all zero when normalised);
  every path holds a complete checkpoint (at `steps[i]`, else its latest); their configs agree on
  the model architecture and their parameter trees on paths, shapes and dtypes; `out`, if given,
  does not already hold a checkpoint and is not a file."""
  paths = list(paths)
  if not paths:
    raise ValueError("nothing to average: no checkpoint paths given")
  w = check_weights(weights, len(paths), normalize)
  steps = [None] * len(paths) if steps is None else list(steps)
  if len(steps) != len(paths):
    raise ValueError(f"got {len(steps)} steps for {len(paths)} checkpoints")
  if out is not None:
    out_abs = os.path.abspath(out)
    if os.path.exists(out_abs) and not os.path.isdir(out_abs):
      raise FileExistsError(f"output {out} exists and is not a directory")
    if _has_checkpoint(out_abs):
      raise FileExistsError(f"output {out} already holds a checkpoint; refusing to overwrite")
  sources = []
  for p, s in zip(paths, steps):
    if not os.path.exists(p):
      raise FileNotFoundError(f"checkpoint path {p} does not exist")
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
  sharding = jax.sharding.SingleDeviceSharding(device or jax.devices()[0])
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(tuple(x.shape), x.dtype, sharding=sharding),
                      _as_nested_dicts(params_meta))


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
  one is added into a float32 running sum updated in place (donated), so peak memory is the sum +
  two groups whatever len(paths), and nothing is allocated per checkpoint.
  Checkpoints with weight 0 are validated but not read. `on_read(i, source, seconds)` is called
  after each checkpoint (progress bars). All validation (see `plan`) happens before any array is
  read; `out` is written atomically by `checkpoints.save_params`, so an interrupted run never
  leaves a complete-looking checkpoint.
  The metadata records the sources, their steps, the weights, the architecture fingerprint and
  the source config (so the average loads like any other checkpoint)."""
  sources, w = plan(paths, weights, steps, normalize, out)
  if target is None:
    target = default_target(sources[0].params_meta)
  else:
    why = tree_mismatch(sources[0].params_meta, target, ("the checkpoints", "the target"))
    if why:
      raise ValueError(f"the restore target does not match the checkpoints: {why}")
  flat, treedef = jax.tree_util.tree_flatten_with_path(target)
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

    def start(item):  # starts reading one group of one checkpoint (returns at once)
      i, g = item
      ks, ab = [keys[j] for j in groups[g]], [abstract[j] for j in groups[g]]
      if reader.supports(sources[i].item_dir):
        return reader.start(sources[i].item_dir, ks, ab)
      return ("orbax", sources[i].item_dir, ks, ab)  # another layout: an orbax restore

    def finish(pending):
      if pending[0] == "orbax":
        return _restore_item(*pending[1:])
      return reader.finish(pending)

    acc: list = [None] * len(abstract)
    t0, nxt = time.time(), (start(schedule[0]) if schedule else None)
    for k, (i, g) in enumerate(schedule):
      values = finish(nxt)
      # Read ahead while adding: into the other buffer, whose group was added (and waited for)
      # in the previous iteration.
      nxt = start(schedule[k + 1]) if k + 1 < len(schedule) else None
      wi32 = jnp.float32(w[i])
      for j, x in zip(groups[g], values):
        sh, first = abstract[j].sharding, acc[j] is None
        compiled[(_signature(abstract[j]), first)].result()
        acc[j] = (_leaf_op(_leaf_start, sh)(x, wi32) if first
                  else _leaf_op(_leaf_add, sh, donate=True)(acc[j], x, wi32))
      jax.block_until_ready([acc[j] for j in groups[g]])
      del values, x  # views of the reader's buffer, which the read after next overwrites
      if g == len(groups) - 1:  # checkpoint i is in the sum
        _release_free_memory()
        if on_read is not None:
          on_read(i, sources[i], time.time() - t0)
        t0 = time.time()
  leaves = []
  for j, a in enumerate(acc):
    if a is None:  # nothing was read: every weight is 0 (normalize=False)
      a = jnp.zeros(abstract[j].shape, _acc_dtype(abstract[j].dtype), device=abstract[j].sharding)
    dt = np.dtype(abstract[j].dtype)
    leaves.append(a if a.dtype == dt else _leaf_op(_cast_to(dt), abstract[j].sharding)(a))
    acc[j] = None
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


def format_bytes(n: float) -> str:
  for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
    if abs(n) < 1024 or unit == "TiB":
      return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
    n /= 1024
  return f"{n:.1f} TiB"


__all__ = ["average", "combine", "interpolate", "lambda_grid", "simplex_grid", "sweep",
           "interpolation_sweep", "average_checkpoints", "plan", "tree_mismatch", "check_weights",
           "model_fingerprint", "resolve_checkpoint_dir", "default_target", "Source",
           "TRAINING_ONLY_MODEL_FIELDS"]
