"""Weight averaging as pure pytree maths: weighted means, interpolation, grids and sweeps.

    avg = averaging.average([p1, p2, p3])                      # uniform mean of pytrees
    avg = averaging.average(trees, [1, 2, 1])                  # weights are normalised
    tau = averaging.average([base, d1, d2], [1, .5, .5], normalize=False)   # task-arithmetic sum
    mid = averaging.interpolate(a, b, 0.5)
    accs = averaging.sweep([a, b], averaging.lambda_grid(11), eval_fn, batch)

Every leaf is accumulated in float32 (or wider, for float64 leaves) and cast back to its own dtype,
so bfloat16 params are not summed in bfloat16. Sharded arrays stay sharded: the average is one
jitted elementwise computation whose output shardings are those of the inputs, so nothing is
gathered onto one device.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from warm_jax.checkpoints import keystr as _keystr
from warm_jax.checkpoints import tree_mismatch
from warm_jax.errors import InputError


def check_weights(weights: Sequence[float] | None, m: int, normalize: bool = True) -> np.ndarray:
  """The weights as float64 [m]: uniform when None; non-negative, finite, not all zero and
  normalised to sum to 1 when `normalize` (else returned as given, any sign: task arithmetic).

  Checked after each transformation they go through: finite as given; normalised without
  overflow (weights whose sum exceeds the float64 range are scaled down first: [1e308, 1e308] is
  [0.5, 0.5]); and each finite in float32, the dtype they multiply the parameters in, where
  weights that are not all zero must not all become zero. Raises InputError naming the weight."""
  if m <= 0:
    raise InputError("nothing to average: the list of models is empty")
  if weights is None:
    return np.full((m,), 1.0 / m)
  given = np.asarray(list(weights), dtype=np.float64)
  w = given
  if w.ndim != 1 or w.shape[0] != m:
    raise InputError(f"got {w.size} weights for {m} models; give one weight per model")
  if not np.all(np.isfinite(w)):
    raise InputError(f"weights {w.tolist()} must be finite")
  if normalize:
    if np.any(w < 0):
      raise InputError(f"weights {w.tolist()} must be non-negative (weight "
                       f"{int(np.argmax(w < 0))} is negative); pass normalize=False for signed "
                       "task-arithmetic sums")
    if not np.any(w > 0):
      raise InputError(f"weights {w.tolist()} are all zero; at least one must be positive")
    with np.errstate(over="ignore"):
      total = w.sum()
    if not np.isfinite(total):  # the sum overflows float64: the same ratios, scaled down first
      w = w / w.max()
      total = w.sum()
    w = w / total
  with np.errstate(over="ignore", under="ignore"):
    w32 = w.astype(np.float32)
  if not np.all(np.isfinite(w32)):
    i = int(np.flatnonzero(~np.isfinite(w32))[0])
    raise InputError(f"weight {i} ({float(given[i])!r}) overflows float32, the dtype the "
                     "parameters are multiplied in; use smaller weights")
  if np.any(w != 0) and not np.any(w32 != 0):
    raise InputError(f"weights {given.tolist()} all underflow to 0 in float32, the dtype the "
                     "parameters are multiplied in: the average would be all zeros")
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


