"""The merge operators of `merges` streamed over orbax checkpoints: `merge_checkpoints`.

    params, meta = merge_checkpoints("ties", ["runs/ft1", "runs/ft2"], base="runs/sft",
                                     density=0.2, out="runs/ties")

Everything is validated (`plan_merge`: the method and its parameters, the checkpoints, and the
base against them) before any array is read and before anything is written; `out` is written
atomically by `checkpoints.save_params`.

'linear' and 'task_arithmetic' are one weighted sum of the checkpoints (task arithmetic's base
weighs 1 - scale * sum w): they are `average_checkpoints`, one checkpoint at a time into a
float32 running sum (its memory and throughput). The others need every model's tensor at once
(TIES's sign election and disjoint mean, SLERP's angle, model stock's cosines), so they stream in
the other order: a group of leaves (about `group_bytes`, whole leaves) at a time, the base's group
first (copied out of the reader's buffer), then the same group of each checkpoint, each folded
into the group's merge state (`merges.Method`: at most four arrays per leaf), which becomes the
group's merged leaves once the last checkpoint is in. Every byte of every checkpoint is read
once, by the same double-buffered reader (the next read overlaps this fold); the method's
start, add and finish ops are compiled in a background thread while the first groups are read,
as the average's are. Peak memory: the
output (one model, in its dtype) + the base's group + the state (at most four groups, float32) +
the reader's two buffers (two groups): one model plus about seven groups whatever the number of
checkpoints, where a group is max(group_bytes, the largest leaf) (group_bytes: 8 MiB by default
for these, 32 MiB for the sums).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import warm_jax
from warm_jax import checkpoints
from warm_jax.averaging import array_reader, merges
from warm_jax.averaging.sources import Source, _compare_model_configs, model_fingerprint, plan
from warm_jax.averaging.stream import (_leaf_groups, _leaf_op, _path_keys, _release_free_memory,
                                       _signature, average_checkpoints, group_reads, target_leaves)
from warm_jax.averaging.tree import _acc_dtype, _cast_to
from warm_jax.checkpoints import keystr, tree_mismatch
from warm_jax.errors import InputError, MissingInput

SUM_GROUP_BYTES = 32 << 20  # linear and task arithmetic: average_checkpoints' default
# The group-major merges hold about seven groups (module docstring): smaller groups keep them
# within a fraction of a model.
FOLD_GROUP_BYTES = 8 << 20


def plan_merge(method: str, paths: Sequence[str], weights: Sequence[float] | None = None, *,
               steps: Sequence[int | None] | None = None, base: str | None = None,
               base_step: int | None = None, out: str | None = None, **params):
  """Validates a streamed merge without reading any array: returns (Method, weights, sources,
  base source or None). Checks `merges.check` (method, parameters, number of models, weights),
  `sources.plan` (complete checkpoints of one architecture, `out` free), and the base: a
  complete checkpoint of the same architecture and parameters as checkpoint 0, `out` not inside
  it. Raises InputError (or MissingInput) naming the argument."""
  paths = list(paths)
  method_obj, w = merges.check(method, len(paths), base is not None, weights, **params)
  sources, _ = plan(paths, None, steps, True, out)
  base_src = None
  if base is not None:
    if not os.path.exists(base):
      raise MissingInput(f"base: checkpoint path {base} does not exist")
    base_src = Source(base, base_step)
    first = sources[0]
    names = (f"checkpoint 0 ({first.given})", f"the base ({base})")
    why = (_compare_model_configs(first.config, base_src.config, *names)
           or tree_mismatch(first.params_meta, base_src.params_meta, names))
    if why:
      raise InputError(f"base: the base does not match the checkpoints: {why}")
    if out is not None and os.path.commonpath([os.path.abspath(out), base_src.path]) == base_src.path:
      raise InputError(f"output {out} lies inside the base checkpoint {base}")
  return method_obj, w, sources, base_src


def merge_checkpoints(method: str, paths: Sequence[str], weights: Sequence[float] | None = None,
                      *, base: str | None = None, steps: Sequence[int | None] | None = None,
                      base_step: int | None = None, target: Any | None = None,
                      out: str | None = None,
                      on_read: Callable[[int, Source, float], None] | None = None,
                      group_bytes: int | None = None, **params) -> tuple[Any, dict]:
  """Streams the merge `method` (`merges.METHODS`) of checkpoints: returns (params, meta), writes
  `out` if given. `base` (a checkpoint, at `base_step`) for the methods on task vectors;
  `params`: density, drop, seed, scale, combine as `merges.merge` takes them. `target`: a tree of
  ShapeDtypeStructs with shardings (default: one device). `on_read(i, source, seconds)` after
  checkpoint i is read in full (for the group-major methods: all of them after the last group). See the module docstring for the order of reads and the memory
  bound. The metadata records the method, its parameters, the base, the sources, their steps
  and weights, the architecture fingerprint and the source config."""
  m, w, sources, base_src = plan_merge(method, paths, weights, steps=steps, base=base,
                                       base_step=base_step, out=out, **params)
  if m.name in ("linear", "task_arithmetic"):  # one weighted sum: the streamed average
    group_bytes = group_bytes or SUM_GROUP_BYTES
    srcs, coeffs, report = sources, w, on_read
    if m.name == "task_arithmetic":  # the base is checkpoint 0 of the sum
      srcs = [base_src, *sources]
      coeffs = np.concatenate([[1.0 - m.scale * w.sum()], m.scale * w])
      report = on_read and (lambda i, s, t: i and on_read(i - 1, s, t))
    result, _ = average_checkpoints([s.path for s in srcs], coeffs, steps=[s.step for s in srcs],
                                    normalize=False, target=target, on_read=report,
                                    group_bytes=group_bytes)
  else:
    result = _fold_checkpoints(m, w, sources, base_src, target, on_read,
                               group_bytes or FOLD_GROUP_BYTES)
  meta = _meta(m, w, sources, base_src)
  if out is not None:
    checkpoints.save_params(out, result, meta)
  return result, meta


def _meta(m: merges.Method, w: np.ndarray, sources: list, base_src) -> dict:
  params = {"linear": {}, "task_arithmetic": {"scale": m.scale},
            "ties": {"density": m.density, "scale": m.scale},
            "dare": {"drop": m.drop, "seed": m.seed, "scale": m.scale, "combine": m.combine},
            "slerp": {}, "model_stock": {}}[m.name]
  return {
      "averaged": True, "method": m.name, "method_params": params,
      "base": None if base_src is None else {"path": base_src.path, "step": base_src.step},
      "sources": [{"path": s.path, "step": s.step, "weight": float(wi)}
                  for s, wi in zip(sources, w)],
      "paths": [s.path for s in sources], "steps": [s.step for s in sources],
      "weights": [float(x) for x in w], "normalized": m.name in ("linear", "slerp"),
      "model_fingerprint": model_fingerprint(sources[0].config),
      "source_versions": [s.meta.get("version") for s in sources],
      "averaged_with": warm_jax.__version__, "config": sources[0].config}


def _fold_checkpoints(m: merges.Method, w: np.ndarray, sources: list, base_src,
                      target, on_read, group_bytes: int) -> Any:
  """The group-major streamed fold (module docstring): returns the merged params tree."""
  flat, treedef = target_leaves(sources[0].params_meta, target)
  keys = [_path_keys(p) for p, _ in flat]
  names = [keystr(p) for p, _ in flat]
  abstract = [a for _, a in flat]
  groups = _leaf_groups(abstract, group_bytes)
  read = [i for i, wi in enumerate(w) if wi != 0.0]  # weight 0 contributes nothing: not read
  srcs = ([base_src] if base_src is not None else []) + [sources[i] for i in read]
  order = ([-1] if base_src is not None else []) + read  # -1: the base
  schedule = [(g, k) for g in range(len(groups)) for k in range(len(srcs))]
  out: list = [None] * len(abstract)

  with contextlib.ExitStack() as stack:
    reader = stack.enter_context(array_reader.ArrayReader())
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="warm_jax-compile")
    stack.callback(pool.shutdown, wait=True, cancel_futures=True)  # interrupted: no more compiles
    compiled = _compile_fold_ahead(m, abstract, base_src is not None, len(read), pool)

    def op(name: str, j: int):  # the jitted op, once its ahead-of-time compile is done
      compiled[(_signature(abstract[j]), name)].result()
      return merges.leaf_fn(name, m, abstract[j], abstract[j].sharding,
                            len(read) if name == "finish" else 0)

    start_group, finish = group_reads(reader, keys, abstract, groups)

    def start(item):  # starts reading one group of one checkpoint (returns at once)
      g, k = item
      return start_group(srcs[k], g)

    base_vals: dict = {}
    state: dict = {}
    t0, nxt = time.time(), (start(schedule[0]) if schedule else None)
    for n, (g, k) in enumerate(schedule):
      values = finish(nxt, srcs[k])
      nxt = start(schedule[n + 1]) if n + 1 < len(schedule) else None
      i = order[k]
      for j, x in zip(groups[g], values):
        a = abstract[j]
        if i == -1:
          base_vals[j] = _leaf_op(_cast_to(_acc_dtype(a.dtype)), a.sharding)(x)  # a copy
          continue
        if j not in state:
          state[j] = op("start", j)()
        state[j] = op("add", j)(state[j], x, base_vals.get(j), jnp.float32(w[i]),
                                merges.dare_key(m.seed, i, names[j]) if m.name == "dare" else None)
      jax.block_until_ready([state.get(j, base_vals.get(j)) for j in groups[g]])
      del values, x  # views of the reader's buffer, which the read after next overwrites
      if k == len(srcs) - 1:  # every checkpoint's group g is in: the merged leaves
        for j in groups[g]:
          out[j] = op("finish", j)(state.pop(j), base_vals.pop(j, None))
        jax.block_until_ready([out[j] for j in groups[g]])
        _release_free_memory()
        if g == len(groups) - 1 and on_read is not None:
          for i2 in read:
            on_read(i2, sources[i2], time.time() - t0)
  return jax.tree_util.tree_unflatten(treedef, out)


def _compile_fold_ahead(m: merges.Method, abstract: list, has_base: bool, count: int,
                        pool: concurrent.futures.Executor) -> dict:
  """Compiles in `pool` the start, add and finish ops of `m` for each distinct (shape, dtype,
  sharding) of `abstract`, in the order the fold first needs them, so that compiling overlaps the
  first reads; returns {(signature, op name): future}. The jitted calls then hit jax's cache."""
  w = jax.ShapeDtypeStruct((), jnp.float32)
  key = jax.ShapeDtypeStruct((2,), jnp.uint32) if m.name == "dare" else None
  futures: dict = {}

  def compile_all(a):
    sh = a.sharding
    like = jax.ShapeDtypeStruct(a.shape, a.dtype)
    state = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=s.sharding if sh else None),
        jax.eval_shape(merges.leaf_fn("start", m, like, sh)))
    b = (jax.ShapeDtypeStruct(a.shape, _acc_dtype(a.dtype), sharding=sh) if has_base else None)
    merges.leaf_fn("start", m, like, sh).lower().compile()
    merges.leaf_fn("add", m, like, sh).lower(state, a, b, w, key).compile()
    merges.leaf_fn("finish", m, like, sh, count).lower(state, b).compile()

  for a in abstract:
    sig = _signature(a)
    if (sig, "start") not in futures:
      f = pool.submit(compile_all, a)
      for name in ("start", "add", "finish"):
        futures[(sig, name)] = f
  return futures
