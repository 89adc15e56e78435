"""Merge operators beyond the weighted mean, as pure pytree functions: task arithmetic, TIES, DARE,
SLERP (of two models, of two task vectors, iterated over M task vectors), model stock, LITI, EMA.

    merged = merges.task_arithmetic(base, [ft1, ft2], weights=[1, 1], scale=0.5)
    merged = merges.ties(base, [ft1, ft2, ft3], density=0.2)
    merged = merges.dare(base, [ft1, ft2], drop=0.9, seed=0)             # or combine='ties'
    mid = merges.slerp(a, b, 0.5)                      # two models (no base)
    mid = merges.slerp(a, b, 0.5, base=init)           # two task vectors a - init, b - init
    merged = merges.slerp_task_vectors(init, [p1, p2, p3])   # M task vectors, iterated pairwise
    merged = merges.model_stock(base, [ft1, ft2])
    point = merges.liti(init, merged, eta=0.3)          # (1 - eta) init + eta merged
    anchor = merges.ema(anchor, params, rate=0.01)      # (1 - rate) anchor + rate params
    merged = merges.merge("ties", [ft1, ft2], base=base, density=0.2)   # by name

Definitions (per tensor, i.e. per leaf; task vector tau_i = theta_i - base; weights w_i):
- task arithmetic (Ilharco et al. 2023): base + scale * sum_i w_i tau_i (weights default 1).
- TIES (Yadav et al. 2023): each tau_i trimmed to its `density` fraction of largest magnitudes
  (the k = max(1, int(density * size)) largest |entries| of the tensor; entries tied with the k-th
  are kept too), then per entry the sign of sum_i w_i trim(tau_i) is elected (>= 0: +), and the
  merged entry is the weighted mean of the trimmed entries of that sign (the disjoint mean;
  0 where none has it): base + scale * disjoint_mean.
- DARE (Yu et al. 2023): each entry of each tau_i dropped with probability `drop`, the kept ones
  rescaled by 1 / (1 - drop); the masks (`dare_mask`) are a counter-based hash of each entry's
  index keyed by (seed, the model's index, the tensor's path), so they do not depend on the
  mesh, on which other tensors there are, or on in-memory vs streamed. Then combined by a plain weighted
  sum (`combine='sum'`: base + scale * sum_i w_i tau_i') or by TIES's sign election and disjoint
  mean without trimming (`combine='ties'`).
- SLERP: of two vectors u, v at t: with Omega the angle between them,
  sin((1 - t) Omega) / sin Omega * u + sin(t Omega) / sin Omega * v, and (1 - t) u + t v where
  they are nearly parallel or anti-parallel (|cos Omega| > 0.9995: mergekit's threshold) or one
  is zero. Of two models: u, v are the models; of two task vectors (WARP): base + SLERP(tau_1,
  tau_2, t).
- SLERP of M > 2 task vectors: iterated pairwise, r_1 = tau_1, r_k = SLERP(r_{k-1}, tau_k,
  w_k / (w_1 + ... + w_k)), base + r_M. Why this one: it is SLERP applied the only way the WARP
  paper defines it (pairwise), it equals the two-model SLERP at M = 2, and where the task vectors
  are nearly parallel it is exactly the weighted mean (the lambdas 1/k of uniform weights make
  each model weigh 1/M), so it never leaves the span of the task vectors. Its cost: the result
  depends on the order of the models once they are not parallel. A normalised spherical mean
  (the Karcher mean of the unit task vectors, rescaled) is order-free but has no closed form
  (an iterative solve per tensor) and no agreed rule for the norm; it was not taken.
- model stock (Jang et al. 2024): with cos the mean pairwise cosine of the task vectors and
  t = M cos / (1 + (M - 1) cos): base + t * mean_i tau_i (t = 0 where 1 + (M - 1) cos ~ 0).
- LITI (WARP): (1 - eta) * init + eta * merged, eta in [0, 1].
- EMA (WARP's anchor): (1 - rate) * anchor + rate * params, rate in (0, 1].

Every method is one per-leaf fold over the models (`Method.start / add / finish`), the same code
in memory and streamed over checkpoints (`averaging.merge_checkpoints`): the state of a leaf is
at most four arrays of its shape. Leaves are computed in float32 (float64 for float64 leaves)
and cast back to their dtype; sharded leaves stay sharded (each leaf's ops are jitted with the
leaf's sharding as the output's; norms, dots and the top-k threshold are global reductions).
Bad input (models of different architectures, a base that does not match them, a parameter
outside its range, too many or too few models for the method) raises `errors.InputError` naming
the argument before anything is computed.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from warm_jax.averaging.tree import (_acc_dtype, _cached_jit, _check_leaves_floating, _layout_key,
                                     _shardings_of, average, interpolate)
from warm_jax.checkpoints import keystr, tree_mismatch
from warm_jax.errors import InputError

METHODS = ("linear", "task_arithmetic", "ties", "dare", "slerp", "model_stock")
COMBINES = ("sum", "ties")  # how DARE combines the rescaled task vectors
# The parameters each method takes (besides the models, the base and the weights).
PARAMETERS = {"linear": (), "task_arithmetic": ("scale",), "ties": ("density", "scale"),
              "dare": ("drop", "seed", "scale", "combine"), "slerp": (), "model_stock": ()}
SLERP_THRESHOLD = 0.9995  # |cos| above it: linear interpolation (mergekit's DOT_THRESHOLD)
_EPS = 1e-8  # norms at or below it count as zero (mergekit's eps)


# ----------------------------------------------------------------------------- the methods

@dataclasses.dataclass(frozen=True)
class Method:
  """One merge method with its parameters, as a per-leaf fold over the models:
  `state = start(like)`, `state = add(state, x, b, w, key)` for each model, `finish(state, b,
  count)`; `b` is the base's leaf (None without a base), `w` the model's weight, `key` its DARE
  key (None for the others), `count` the number of models folded in."""
  name: str
  density: float = 1.0
  drop: float = 0.0
  seed: int = 0
  scale: float = 1.0
  combine: str = "sum"

  @property
  def kind(self) -> str:
    """The shape of the fold: 'sum', 'ties', 'slerp' or 'stock'."""
    if self.name in ("linear", "task_arithmetic") or (self.name == "dare" and self.combine == "sum"):
      return "sum"
    return {"ties": "ties", "dare": "ties", "slerp": "slerp", "model_stock": "stock"}[self.name]

  def start(self, like):
    dt = _acc_dtype(like.dtype)
    z = lambda: jnp.zeros(like.shape, dt)  # noqa: E731
    if self.kind == "sum":
      return (z(),)
    if self.kind == "ties":
      return (z(), z(), z(), z())
    if self.kind == "slerp":
      return (z(), jnp.zeros((), dt))
    return (z(), z(), jnp.zeros((), dt))

  def add(self, state, x, b, w, key, threshold=None, offset=0):
    """`threshold`: TIES's trim threshold of this model's task vector, where the leaf is a block
    of rows of a tensor (None: from `x` itself); `offset`: the block's first row-major index in
    its tensor (DARE's mask)."""
    dt = state[0].dtype
    tau = x.astype(dt) - (0 if b is None else b.astype(dt))
    w = w.astype(dt)
    if self.name == "ties":
      tau = trim(tau, self.density) if threshold is None else \
          jnp.where(jnp.abs(tau) >= threshold.astype(dt), tau, 0).astype(dt)
    if self.name == "dare":
      keep = dare_mask(key, tau.shape, self.drop, offset)
      tau = jnp.where(keep, tau / (1.0 - self.drop), 0).astype(dt)
    if self.kind == "sum":
      return (state[0] + w * tau,)
    if self.kind == "ties":
      pos, pos_w, neg, neg_w = state
      p, n = (tau > 0).astype(dt), (tau < 0).astype(dt)
      return (pos + w * tau * p, pos_w + w * p, neg + w * tau * n, neg_w + w * n)
    if self.kind == "slerp":
      # lam = w / (the weights so far): the first model (r = 0) comes out as tau exactly
      # (cos 0, coefficients sin 0 = 0 and sin(pi / 2) = 1), and a zero weight leaves r as it is.
      r, wsum = state
      lam = w / jnp.where(wsum + w > 0, wsum + w, 1)
      return (slerp_tensors(r, tau, lam), wsum + w)
    total, units, sq = state
    norm = jnp.sqrt(jnp.sum(jnp.square(tau)))
    u = tau / jnp.where(norm > _EPS, norm, 1.0)
    return (total + tau, units + u, sq + jnp.where(norm > _EPS, 1.0, norm * norm))  # |u|^2

  def finish(self, state, b, count, dtype):
    if self.kind == "sum":
      delta = self.scale * state[0]
    elif self.kind == "ties":
      pos, pos_w, neg, neg_w = state
      elected = pos + neg >= 0
      delta = self.scale * jnp.where(elected, pos / jnp.where(pos_w == 0, 1, pos_w),
                                     neg / jnp.where(neg_w == 0, 1, neg_w))
    elif self.kind == "slerp":
      delta = state[0]
    else:
      total, units, sq = state
      cos = (jnp.sum(units * units) - sq) / (count * (count - 1))
      den = 1 + (count - 1) * cos
      t = jnp.where(jnp.abs(den) < 1e-6, 0.0, count * cos / jnp.where(jnp.abs(den) < 1e-6, 1, den))
      delta = t * total / count
    out = delta if b is None else b.astype(delta.dtype) + delta
    return out.astype(dtype)


def slerp_tensors(u, v, t):
  """SLERP of two arrays at t (see the module docstring): one angle for the whole array,
  linear interpolation where |cos| > SLERP_THRESHOLD or either is (nearly) zero."""
  # cos from the three sums of one pass over u and v (not from normalised copies)
  ca, cb = slerp_coefficients(jnp.sum(u * u), jnp.sum(v * v), jnp.sum(u * v), t)
  return (ca * u + cb * v).astype(u.dtype)


def slerp_coefficients(uu, vv, uv, t, xp=jnp):
  """(a, b) with SLERP(u, v, t) = a u + b v, from |u|^2, |v|^2 and u.v (`xp`: jnp or numpy)."""
  nu, nv = xp.sqrt(uu), xp.sqrt(vv)
  dot = xp.clip(uv / (xp.where(nu > _EPS, nu, 1.0) * xp.where(nv > _EPS, nv, 1.0)), -1.0, 1.0)
  linear = xp.abs(dot) > SLERP_THRESHOLD
  theta = xp.arccos(xp.where(linear, 0.0, dot))
  sin = xp.where(linear, 1.0, xp.sin(theta))
  ca = xp.where(linear, 1 - t, xp.sin((1 - t) * theta) / sin)
  cb = xp.where(linear, t, xp.sin(t * theta) / sin)
  return ca, cb


def kth_largest(a, k: int):
  """The k-th largest entry of a non-negative float array (1 <= k <= size), exactly, without a
  sort. Float32 (and narrower, widened): the float's bit pattern orders like the float; a
  histogram of its high 16 bits finds the bucket holding the k-th largest, a histogram of the low
  16 bits of that bucket's entries the value (two passes; sharded arrays need no gather; the
  histograms add up over blocks of rows: `high_histogram`, `low_histogram`). Float64: the bit
  pattern built from the top bit down, keeping each bit that leaves at least k entries at or above
  it (63 counting passes). Arrays of at most SORT_MAX entries are sorted instead: the same value,
  and a program that compiles in a fraction of the histograms' time."""
  if a.size <= SORT_MAX:
    return jnp.sort(a.reshape(-1))[a.size - k]
  if a.dtype == jnp.float64:
    bits = jax.lax.bitcast_convert_type(a, jnp.uint64)

    def body(i, lo):
      cand = lo | (jnp.uint64(1) << (jnp.uint64(62) - i.astype(jnp.uint64)))
      return jnp.where(jnp.sum(bits >= cand, dtype=jnp.uint64) >= k, cand, lo)

    return jax.lax.bitcast_convert_type(jax.lax.fori_loop(0, 63, body, jnp.uint64(0)), a.dtype)
  bucket, k2 = select_bucket(high_histogram(a), k)
  return bucket_value(bucket, select_bucket(low_histogram(a, bucket), k2)[0])


# kth_largest sorts arrays up to this size (a model's small leaves: biases, norms, heads).
SORT_MAX = 1 << 16


def _bits(a):
  return jax.lax.bitcast_convert_type(a.astype(jnp.float32), jnp.uint32).reshape(-1)


def high_histogram(a):
  """Counts of the high 16 bits of a non-negative array's float32 bit patterns (2^15 buckets:
  the sign bit is 0), int32."""
  return jnp.bincount((_bits(a) >> 16).astype(jnp.int32), length=1 << 15)


def low_histogram(a, bucket):
  """Counts of the low 16 bits of the entries of `a` in high-16-bit `bucket` (2^16), int32."""
  bits = _bits(a)
  inside = (bits >> 16).astype(jnp.int32) == bucket
  lo = jnp.where(inside, (bits & 0xFFFF).astype(jnp.int32) + 1, 0)  # 0: another bucket
  return jnp.bincount(lo, length=(1 << 16) + 1)[1:]


def select_bucket(hist, k, xp=jnp):
  """(the largest bucket with at least k entries at or above it, the rank of the k-th largest
  entry within that bucket); `xp`: jnp or numpy."""
  above = xp.cumsum(hist[::-1])[::-1]  # above[j] = #entries in buckets >= j
  j = xp.sum(above >= k) - 1
  return j, k - (above[j] - hist[j])


def bucket_value(bucket, low, xp=jnp):
  """The float32 whose bit pattern has high 16 bits `bucket` and low 16 bits `low`."""
  value = (xp.asarray(bucket).astype(xp.uint32) << 16) | xp.asarray(low).astype(xp.uint32)
  if xp is np:
    return value.view(np.float32)
  return jax.lax.bitcast_convert_type(value, jnp.float32)


def trim(tau, density: float):
  """TIES's trim: tau with all but its `density` fraction of largest magnitudes set to 0 (the
  k = max(1, int(density * size)) largest, and any tied with the k-th)."""
  if density >= 1.0 or tau.size == 0:
    return tau
  k = max(1, int(density * tau.size))
  mag = jnp.abs(tau)
  return jnp.where(mag >= kth_largest(mag, k).astype(mag.dtype), tau, 0).astype(tau.dtype)


def _lowbias32(h):
  """Wellons' lowbias32 integer hash of uint32 arrays (a bijection with strong avalanche)."""
  h = (h ^ (h >> 16)) * jnp.uint32(0x7FEB352D)
  h = (h ^ (h >> 15)) * jnp.uint32(0x846CA68B)
  return h ^ (h >> 16)


def dare_key(seed: int, model: int, path: str) -> np.ndarray:
  """The key (uint32 [2]) of model `model`'s DARE mask of the tensor at `path` ('a/b/c')."""
  name = f"{seed}/{model}/{path}".encode()
  return np.asarray([zlib.crc32(name), zlib.crc32(name[::-1] + b"#")], np.uint32)


def dare_mask(key, shape: tuple, drop: float, offset=0):
  """DARE's keep-mask of a tensor: entry e is kept when two rounds of lowbias32 of its row-major
  index, keyed by `key`, fall at or above drop * 2^32 (the index comes from iotas, so a sharded
  tensor needs no gather and the mask does not depend on the mesh). A counter-based hash rather
  than jax.random: about 8x cheaper than threefry on CPU, and DARE needs no more than an
  unbiased, independent draw per entry (tensors of up to 2^32 entries). `offset`: the row-major
  index of entry 0 where `shape` is a block of rows of the tensor (the block's mask is then the
  tensor's)."""
  if drop <= 0.0:
    return jnp.ones(shape, bool)
  key = jnp.asarray(key, jnp.uint32)
  idx = jnp.full(shape, offset, jnp.uint32)
  stride = 1
  for d in range(len(shape) - 1, -1, -1):
    idx = idx + jax.lax.broadcasted_iota(jnp.uint32, shape, d) * jnp.uint32(stride % 2**32)
    stride *= shape[d]
  h = _lowbias32(_lowbias32(idx ^ key[0]) ^ key[1])
  return h >= jnp.uint32(min(int(round(drop * 2**32)), 2**32 - 1))


# ----------------------------------------------------------------------------- validation

def check(method: str, m: int, has_base: bool, weights: Sequence[float] | None = None, *,
          density: float | None = None, drop: float | None = None, seed: int | None = None,
          scale: float | None = None, combine: str | None = None) -> tuple[Method, np.ndarray]:
  """Validates a merge of `m` models before anything is read: returns (Method, float64 weights
  [m]). Raises InputError naming the argument: an unknown method, a parameter the method does not
  take or outside its range, a base the method needs or cannot use, too few or too many models,
  bad weights."""
  if method not in METHODS:
    raise InputError(f"method={method!r}: must be one of {METHODS}")
  given = {k: v for k, v in dict(density=density, drop=drop, seed=seed, scale=scale,
                                 combine=combine).items() if v is not None}
  takes = PARAMETERS[method]
  for k in given:
    if k not in takes:
      raise InputError(f"{k}={given[k]!r}: method {method!r} takes no {k} (it takes "
                       f"{', '.join(takes) or 'no parameters'})")
  if m < 1:
    raise InputError("nothing to merge: the list of models is empty")
  needs_base = method in ("task_arithmetic", "ties", "dare", "model_stock")
  if needs_base and not has_base:
    raise InputError(f"base: method {method!r} merges task vectors (model - base) and needs a base")
  if method == "linear" and has_base:
    raise InputError("base: method 'linear' is the weighted mean of the models and takes no base")
  if method == "slerp":
    if m < 2:
      raise InputError(f"slerp merges 2 models or task vectors, got {m}")
    if m > 2 and not has_base:
      raise InputError(f"slerp without a base merges exactly 2 models, got {m}: give a base to "
                       "merge M > 2 task vectors (iterated pairwise SLERP)")
  if method == "model_stock":
    if m < 2:
      raise InputError(f"model_stock needs at least 2 fine-tuned models besides the base, got {m}")
    if weights is not None:
      raise InputError("weights: model_stock takes no weights (its ratio comes from the angle)")
  density = 1.0 if density is None else density
  drop = 0.0 if drop is None else drop
  if not _finite(density) or not 0.0 < density <= 1.0:
    raise InputError(f"density={density!r}: the fraction of each task vector's entries TIES "
                     "keeps; must be in (0, 1]")
  if not _finite(drop) or not 0.0 <= drop < 1.0:
    raise InputError(f"drop={drop!r}: DARE's drop probability; must be in [0, 1)")
  seed = 0 if seed is None else seed
  if not (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and 0 <= seed < 2**32):
    raise InputError(f"seed={seed!r}: must be an integer in [0, 2**32)")
  scale = 1.0 if scale is None else scale
  if not _finite(scale):
    raise InputError(f"scale={scale!r}: must be a finite number")
  combine = "sum" if combine is None else combine
  if combine not in COMBINES:
    raise InputError(f"combine={combine!r}: must be one of {COMBINES}")
  w = _weights(method, weights, m, combine)
  return Method(method, float(density), float(drop), int(seed), float(scale), combine), w


def _finite(x) -> bool:
  return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) \
      and bool(np.isfinite(x))


def _weights(method: str, weights, m: int, combine: str) -> np.ndarray:
  """Uniform 1/m for the means (linear, slerp), 1 each for the sums; signed weights only where
  the merge is a plain sum (task arithmetic, DARE with combine='sum')."""
  if weights is None:
    return np.full((m,), 1.0 / m if method in ("linear", "slerp") else 1.0)
  w = np.asarray(list(weights), np.float64)
  if w.ndim != 1 or w.shape[0] != m:
    raise InputError(f"weights: got {w.size} weights for {m} models; give one weight per model")
  if not np.all(np.isfinite(w)):
    raise InputError(f"weights={w.tolist()}: must be finite")
  signed = method == "task_arithmetic" or (method == "dare" and combine == "sum")
  if not signed:
    if np.any(w < 0):
      raise InputError(f"weights={w.tolist()}: method {method!r} needs non-negative weights")
    if not np.any(w > 0):
      raise InputError(f"weights={w.tolist()}: at least one must be positive")
  if method in ("linear", "slerp"):
    w = w / w.sum()
  return w


def check_trees(models: Sequence[Any], base: Any | None) -> None:
  """Raises InputError naming the first differing parameter when the models (or the base) are
  not one architecture, or a leaf is not a floating-point array."""
  for i in range(1, len(models)):
    why = tree_mismatch(models[0], models[i], ("model 0", f"model {i}"), structure=True)
    if why:
      raise InputError(f"cannot merge models of different architectures: {why}")
  if base is not None:
    why = tree_mismatch(models[0], base, ("model 0", "the base"), structure=True)
    if why:
      raise InputError(f"base: the base does not match the models: {why}")
  try:
    _check_leaves_floating(models[0], "model 0")
  except TypeError as e:
    raise InputError(str(e)) from None


# ----------------------------------------------------------------------------- in memory

_LEAF_FNS: dict = {}


def leaf_fn(op: str, method: Method, like, sharding=None, count: int = 0):
  """The jitted 'start', 'add' or 'finish' of `method` for leaves like `like` (shape and dtype)
  whose outputs keep `sharding` (None: as jit places them); cached."""
  like = jax.ShapeDtypeStruct(tuple(like.shape), np.dtype(like.dtype))  # keep no array alive
  key = (op, method, like.shape, like.dtype, sharding, count)
  if key not in _LEAF_FNS:
    if op == "start":
      shapes = jax.eval_shape(lambda: method.start(like))
      out = None if sharding is None else jax.tree.map(
          lambda s: sharding if s.ndim else _scalar_sharding(sharding), shapes)
      _LEAF_FNS[key] = jax.jit(lambda: method.start(like), out_shardings=out)
    elif op == "add":  # the state is updated in place
      _LEAF_FNS[key] = jax.jit(method.add, donate_argnums=(0,))
    else:
      _LEAF_FNS[key] = jax.jit(functools.partial(method.finish, count=count,
                                                 dtype=np.dtype(like.dtype)),
                               out_shardings=sharding)
  return _LEAF_FNS[key]


def _scalar_sharding(sh):
  if isinstance(sh, jax.sharding.NamedSharding):
    return jax.sharding.NamedSharding(sh.mesh, jax.sharding.PartitionSpec())
  return sh


def merge(method: str, models: Sequence[Any], base: Any | None = None,
          weights: Sequence[float] | None = None, **params) -> Any:
  """The merge `method` (one of METHODS) of `models` (pytrees of one architecture) with `base`
  where the method has one; `params`: density (ties), drop, seed, combine (dare), scale (task
  arithmetic, ties, dare). Validated first (InputError naming the argument)."""
  models = list(models)
  m, w = check(method, len(models), base is not None, weights, **params)
  check_trees(models, base)
  if method == "linear":
    return average(models, w)
  if method == "task_arithmetic":  # one weighted sum, as streamed: (1 - s sum w) base + s w_i
    return average([base, *models], [1.0 - m.scale * w.sum(), *(m.scale * w)], normalize=False)
  shardings = _shardings_of(models[0])
  if shardings is not None:  # every tree onto model 0's shardings
    models = [models[0]] + [t if _shardings_of(t) == shardings else jax.device_put(t, shardings)
                            for t in models[1:]]
    if base is not None and _shardings_of(base) != shardings:
      base = jax.device_put(base, shardings)
  fn = _cached_jit(_merge_trees, _layout_key(shardings), static_argnums=(0,),
                   **({} if shardings is None else {"out_shardings": shardings}))
  return fn(m, tuple(models), base, jnp.asarray(w, jnp.float32))


def _merge_trees(method: Method, models: tuple, base: Any | None, w: jax.Array) -> Any:
  """The fold of `method` over the models, leaf by leaf, as one traced function."""
  flat = [jax.tree_util.tree_flatten_with_path(t) for t in models]
  base_leaves = jax.tree_util.tree_leaves(base) if base is not None else [None] * len(flat[0][0])
  out = []
  for j, (path, x0) in enumerate(flat[0][0]):
    state = method.start(x0)
    for i, f in enumerate(flat):
      key = dare_key(method.seed, i, keystr(path)) if method.name == "dare" else None
      state = method.add(state, f[0][j][1], base_leaves[j], w[i], key)
    out.append(method.finish(state, base_leaves[j], len(models), np.dtype(x0.dtype)))
  return jax.tree_util.tree_unflatten(flat[0][1], out)


def task_arithmetic(base: Any, models: Sequence[Any], weights: Sequence[float] | None = None,
                    scale: float = 1.0) -> Any:
  """base + scale * sum_i w_i (model_i - base) (weights default 1, any sign)."""
  return merge("task_arithmetic", models, base, weights, scale=scale)


def ties(base: Any, models: Sequence[Any], density: float, weights: Sequence[float] | None = None,
         scale: float = 1.0) -> Any:
  """TIES-merging: trim each task vector to `density` (in (0, 1]), elect signs, disjoint mean."""
  return merge("ties", models, base, weights, density=density, scale=scale)


def dare(base: Any, models: Sequence[Any], drop: float, seed: int = 0,
         weights: Sequence[float] | None = None, scale: float = 1.0, combine: str = "sum") -> Any:
  """DARE: drop each task-vector entry with probability `drop` (in [0, 1)), rescale by
  1 / (1 - drop); combine by a weighted sum ('sum') or TIES's election ('ties')."""
  return merge("dare", models, base, weights, drop=drop, seed=seed, scale=scale, combine=combine)


def slerp(a: Any, b: Any, t: float = 0.5, base: Any | None = None) -> Any:
  """SLERP of two models at t (t = 0: a, t = 1: b), or with `base` of their task vectors:
  base + SLERP(a - base, b - base, t). t in [0, 1]."""
  if not _finite(t) or not 0.0 <= t <= 1.0:
    raise InputError(f"t={t!r}: the SLERP coefficient must be in [0, 1]")
  return merge("slerp", [a, b], base, [1.0 - t, t])


def slerp_task_vectors(base: Any, models: Sequence[Any],
                       weights: Sequence[float] | None = None) -> Any:
  """SLERP of M >= 2 task vectors (model_i - base), iterated pairwise with lambda_k =
  w_k / (w_1 + ... + w_k) (uniform weights: 1 / k); see the module docstring for why."""
  return merge("slerp", models, base, weights)


def model_stock(base: Any, models: Sequence[Any]) -> Any:
  """Model stock: base + t * mean task vector, t = M cos / (1 + (M - 1) cos) per tensor."""
  return merge("model_stock", models, base)


def check_eta(eta, name: str = "eta") -> float:
  """A LITI coefficient: a finite number in [0, 1] (InputError naming `name` otherwise)."""
  if not _finite(eta) or not 0.0 <= eta <= 1.0:
    raise InputError(f"{name}={eta!r}: LITI interpolates towards the initialisation; must be in "
                     "[0, 1]")
  return float(eta)


def liti(init: Any, merged: Any, eta: float) -> Any:
  """WARP's linear interpolation towards the initialisation: (1 - eta) init + eta merged."""
  return interpolate(init, merged, check_eta(eta))


def check_rate(rate, name: str = "rate") -> float:
  """An EMA rate: a finite number in (0, 1] (InputError naming `name` otherwise)."""
  if not _finite(rate) or not 0.0 < rate <= 1.0:
    raise InputError(f"{name}={rate!r}: the EMA's update rate; must be in (0, 1]")
  return float(rate)


def ema(anchor: Any, params: Any, rate: float) -> Any:
  """One EMA update (1 - rate) * anchor + rate * params, leafwise in the anchor's dtype (traceable:
  `rate` may be a python float or a traced scalar; it is not checked here, see `check_rate`)."""
  return jax.tree.map(lambda a, p: ((1 - rate) * a + rate * p.astype(a.dtype)).astype(a.dtype),
                      anchor, params)
