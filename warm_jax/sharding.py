"""Device mesh from config, logical-axis rules, and the shardings of params, optimizer state and batches.

One mesh with named axes (by default ('data', 'fsdp', 'tensor')). Parameters carry logical axis names
(see `warm_jax.models`); the rules table of the config (`config.sharding.rules`) maps each logical
name to mesh axes, so the same model runs unsharded on one CPU, FSDP on a GPU host and
FSDP x tensor-parallel on a pod. A logical dimension whose size the mesh axes do not divide is
replicated instead (a tiny head, an odd vocab), never padded silently.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from warm_jax.errors import InputError

Rules = Sequence[tuple[str, Any]]


def make_mesh(axes: Sequence[str], shape: Sequence[int], devices: Sequence[jax.Device] | None = None,
              field: str = "config.mesh") -> Mesh:
  """Builds a mesh over `devices` (default: all devices); one entry of `shape` may be -1 ("the rest")."""
  devices = list(jax.devices() if devices is None else devices)
  axes, shape = tuple(axes), tuple(int(s) for s in shape)
  if len(axes) != len(shape):
    raise InputError(f"{field}.shape={shape} has {len(shape)} entries but {field}.axes={axes} has "
                     f"{len(axes)}")
  if len(set(axes)) != len(axes):
    raise InputError(f"{field}.axes={axes} repeats an axis name")
  if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
    raise InputError(f"{field}.shape={shape}: sizes must be positive, with at most one -1")
  known = math.prod(s for s in shape if s != -1)
  n = len(devices)
  if -1 in shape:
    if n % known:
      raise InputError(f"{field}.shape={shape}: the fixed axes ({known} devices) do not divide the "
                       f"{n} available devices")
    shape = tuple(n // known if s == -1 else s for s in shape)
  elif known != n:
    raise InputError(f"{field}.shape={shape} needs {known} devices but {n} are available")
  auto = (jax.sharding.AxisType.Auto,) * len(axes)
  return jax.make_mesh(shape, axes, axis_types=auto, devices=devices)


def validate_rules(rules: Rules, mesh: Mesh, field: str = "config.sharding.rules") -> None:
  """Every mesh axis a rule names must exist in the mesh."""
  for logical, mesh_axes in rules:
    for axis in _as_tuple(mesh_axes):
      if axis not in mesh.axis_names:
        raise InputError(f"{field}: logical axis {logical!r} maps to mesh axis {axis!r}, which is not "
                         f"one of the mesh axes {mesh.axis_names}")


def _as_tuple(mesh_axes) -> tuple[str, ...]:
  if mesh_axes is None:
    return ()
  return (mesh_axes,) if isinstance(mesh_axes, str) else tuple(mesh_axes)


def _axes_size(mesh: Mesh, mesh_axes) -> int:
  return math.prod(mesh.shape[a] for a in _as_tuple(mesh_axes))


def spec_for(names: Sequence[str | None], shape: Sequence[int], mesh: Mesh, rules: Rules) -> P:
  """PartitionSpec for an array with logical axis `names`; indivisible dims are replicated."""
  spec = nn.logical_to_mesh_axes(tuple(names), tuple(rules))
  entries = [m if m is not None and dim % _axes_size(mesh, m) == 0 else None
             for m, dim in zip(tuple(spec) + (None,) * (len(shape) - len(spec)), shape)]
  return P(*entries)


def _is_box(x) -> bool:
  return isinstance(x, nn.Partitioned)


def tree_shardings(abstract_boxed_tree: Any, mesh: Mesh, rules: Rules) -> Any:
  """NamedShardings for a (possibly boxed) abstract pytree; unboxed leaves are replicated.

  The result has the structure of the *unboxed* tree (`nn.unbox(tree)`), so it can be used
  directly as jit in/out shardings or as orbax restore targets.
  """
  def leaf(x):
    if _is_box(x) and not hasattr(x.value, "shape"):
      return x.value  # a node without arrays (optax's MaskedNode in multi_transform's state)
    if _is_box(x):
      return NamedSharding(mesh, spec_for(x.names, x.value.shape, mesh, rules))
    return NamedSharding(mesh, P())
  return jax.tree.map(leaf, abstract_boxed_tree, is_leaf=_is_box)


def abstract(tree: Any, shardings: Any) -> Any:
  """A restore target: ShapeDtypeStructs of `tree`'s leaves (anything with .shape and .dtype:
  arrays, eval_shape results, orbax array metadata), each carrying its sharding from `shardings`
  (a tree of the same structure, or one sharding for every leaf). Every restore target of the
  project is built here: a run's train state (`loop.abstract_state`), a model's params
  (`init.abstract_params`), a checkpoint's params on one device (`averaging.default_target`)."""
  if isinstance(shardings, jax.sharding.Sharding):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(tuple(x.shape), x.dtype, sharding=shardings),
                        tree)
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(tuple(x.shape), x.dtype, sharding=s),
                      tree, shardings)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, rules: Rules) -> NamedSharding:
  """Sharding of [batch, ...] arrays: the batch dimension over the mesh axes of logical 'batch'."""
  spec = nn.logical_to_mesh_axes(("batch",), tuple(rules))
  return NamedSharding(mesh, P(spec[0]))


def batch_axes_size(mesh: Mesh, rules: Rules) -> int:
  """How many ways the batch dimension is split (the global batch must be a multiple of it)."""
  return _axes_size(mesh, nn.logical_to_mesh_axes(("batch",), tuple(rules))[0])


def check_batch_size(batch_size: int, mesh: Mesh, rules: Rules, field: str) -> None:
  ways = batch_axes_size(mesh, rules)
  if batch_size <= 0 or batch_size % ways:
    raise InputError(f"{field}={batch_size} is not a positive multiple of {ways}, the number of "
                     f"ways the batch axes of the mesh ({dict(mesh.shape)}) split the batch")
  if batch_size % jax.process_count():
    raise InputError(f"{field}={batch_size} is not divisible by the {jax.process_count()} processes")


def to_global(host_batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
  """Assembles each host's slice of the batch into global arrays laid out by `sharding`.

  On one process this is a sharded device_put; on several, each process passes its own rows
  (in process order) and the global batch is their concatenation.
  """
  def put(x):
    x = np.asarray(x)
    global_shape = (x.shape[0] * jax.process_count(),) + x.shape[1:]
    return jax.make_array_from_process_local_data(sharding, x, global_shape)
  return {k: put(v) for k, v in host_batch.items()}
