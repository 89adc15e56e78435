"""The merge operators of `merges` streamed over orbax checkpoints: `merge_checkpoints`.

    params, meta = merge_checkpoints("ties", ["runs/ft1", "runs/ft2"], base="runs/sft",
                                     density=0.2, out="runs/ties")

Everything is validated (`plan_merge`: the method and its parameters, the checkpoints, and the
base against them) before any array is read and before anything is written; `out` is written
atomically by `checkpoints.save_params`.

'linear' and 'task_arithmetic' are one weighted sum of the checkpoints (task arithmetic's base
weighs 1 - scale * sum w): they are `average_checkpoints`, one checkpoint at a time into a
float32 running sum (its memory and throughput). The others need every model's values of a
tensor at once (TIES's k-th magnitude, sign election and disjoint mean, SLERP's angle, model
stock's cosines), so they stream in the other order, in two ways:

- Leaves on one device, of at most 4-byte elements, go by blocks of rows (`row_blocks`; a block
  is read from every checkpoint at once, the base's and each model's). A leaf larger than a block
  is merged a block at a time, each pass over its blocks one compiled op per block
  (`_BlockedLeaf`). Statistics over the whole tensor come from a first pass: TIES's k-th largest
  magnitudes from counts of the magnitudes' bit patterns (exact; those in a window of buckets
  around a sample of block 0's k-th, counted on the host, and two full histogram passes where a
  window misses), SLERP's and model stock's from the Gram matrix of the task vectors; then the
  merge pass computes each block with the in-memory fold and writes its rows into the output
  leaf. The later passes re-read blocks the first pass has just read (from the page cache) and
  are interleaved with the next leaf's first pass. DARE and TIES without trimming are one pass.
  The leaves that fit a block are merged whole, several at a time: a pack of them (about a
  block) is read from every checkpoint in one read, and each leaf's passes run over the same
  values (`_pack_item`), so that a model of many small arrays is not read in small pieces.
- The other leaves (sharded, float64, scalars), a group of leaves (about `group_bytes`, whole
  leaves) at a time: the base's group first (copied out of the reader's buffer), then the same
  group of each checkpoint, each folded into the group's merge state (`merges.Method`: at most
  four arrays per leaf), which becomes the group's merged leaves once the last checkpoint is in.

Every read is double-buffered (the next read overlaps this fold), the disk is asked for the two
reads from disk after it (`stream.read_loop`, `ArrayReader.prefetch`), and the ops are compiled
in a background thread while the first reads run, as the average's are. Peak memory: the output
(one model, in its dtype) + about seven groups (the reader's two buffers and the fold's state)
whatever the size of the largest array (on one device) and the number of checkpoints, where the
linear average holds its float32 sum + two groups of 32 MiB (group_bytes: 8 MiB by default for
the merges).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import functools
import itertools
import os
import time
from typing import Any, Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import warm_jax
from warm_jax import checkpoints, errors
from warm_jax.averaging import array_reader, merges
from warm_jax.averaging.sources import Source, _compare_model_configs, model_fingerprint, plan
from warm_jax.averaging.stream import (_leaf_groups, _leaf_op, _path_keys,
                                       _release_free_memory,
                                       Read, _signature, average_checkpoints, group_reads,
                                       read_loop, target_leaves)
from warm_jax.averaging.tree import _acc_dtype, _cached_jit, _cast_to
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
  read = [i for i, wi in enumerate(w) if wi != 0.0]  # weight 0 contributes nothing: not read
  srcs = ([base_src] if base_src is not None else []) + [sources[i] for i in read]
  order = ([-1] if base_src is not None else []) + read  # -1: the base
  blocked = {}
  if all(array_reader.ArrayReader.supports(s.item_dir) for s in srcs):
    blocked = {j: _BlockedLeaf(m, w, order, srcs, abstract[j], names[j], rows)
               for j, rows in row_blocks(abstract, group_bytes, len(read)).items()}
  whole = [j for j in range(len(abstract)) if j not in blocked]
  groups = [[whole[i] for i in g] for g in _leaf_groups([abstract[j] for j in whole], group_bytes)]
  out: list = [None] * len(abstract)

  with contextlib.ExitStack() as stack:
    reader = stack.enter_context(array_reader.ArrayReader())
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="warm_jax-compile")
    stack.callback(pool.shutdown, wait=True, cancel_futures=True)  # interrupted: no more compiles
    compiled: dict = {}
    for leaf in blocked.values():  # the blocked leaves are merged first
      leaf.compile_ahead(pool, compiled)
    compiled.update(_compile_fold_ahead(m, [abstract[j] for j in whole], base_src is not None,
                                        len(read), pool))

    def op(name: str, j: int):  # the jitted op, once its ahead-of-time compile is done
      compiled[(_signature(abstract[j]), name)].result()
      return merges.leaf_fn(name, m, abstract[j], abstract[j].sharding,
                            len(read) if name == "finish" else 0)

    base_vals: dict = {}
    state: dict = {}

    def fold_group(g: int, k: int, values: list) -> None:  # group g of source k
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
      if k == len(srcs) - 1:  # every checkpoint's group g is in: the merged leaves
        for j in groups[g]:
          out[j] = op("finish", j)(state.pop(j), base_vals.pop(j, None))
        jax.block_until_ready([out[j] for j in groups[g]])
        _release_free_memory()

    # The reads: the blocked leaves (and packs of one-block leaves), whose later passes (over
    # blocks the first pass has just read: in the page cache) are interleaved with the next
    # leaf's first pass (from disk), so that their work overlaps it; then whole groups.
    start_group, finish_group, prefetch = group_reads(reader, keys, abstract)
    singles = [j for j, leaf in blocked.items() if len(leaf.blocks) == 1]
    packs = _packs(singles, abstract, _block_budget(group_bytes, len(read)))
    firsts = {pack[0]: pack for pack in packs}
    passes = [[[_pack_item(reader, [(j, blocked[j]) for j in firsts[j]], keys, out)]]
              if j in firsts else leaf.items(reader, keys[j], out, j)
              for j, leaf in blocked.items() if j in firsts or len(leaf.blocks) > 1]
    whole_reads = [Read(functools.partial(start_group, srcs[k], g_leaves),
                        functools.partial(finish_group, source=srcs[k]),
                        functools.partial(fold_group, g, k),
                        functools.partial(prefetch, srcs[k], g_leaves))
                   for g, g_leaves in enumerate(groups) for k in range(len(srcs))]
    disk = [r.prefetch for p in passes for r in p[0]] + [r.prefetch for r in whole_reads]
    t0 = time.time()
    # each take waits for its ops: its values are views of the reader's buffer
    read_loop(itertools.chain(_interleave(passes), whole_reads), disk)
    if on_read is not None:
      for i2 in read:
        on_read(i2, sources[i2], time.time() - t0)
  return jax.tree_util.tree_unflatten(treedef, out)


def _interleave(leaves: list) -> Iterator[Read]:
  """The reads of each leaf's passes ([leaf][pass][read]; a pack of one-block leaves: one pass of
  one read) in one order: the first passes leaf after leaf, and after each of their reads one read
  of the earlier leaves' later passes (the merge pass, read from the page cache while the disk
  reads ahead), in their order; what remains at the end. A generator: a later read that is not
  `needed` when its turn comes (a TIES fallback pass that the window pass made unnecessary) is
  dropped and does not count (`read_loop` asks for a read before the take of the one before it, so
  the generator decides after the take of the read before that)."""
  later: collections.deque = collections.deque()

  def take_later(count: float) -> Iterator[Read]:
    while later and count > 0:
      r = later.popleft()
      if r.needed is None or r.needed():
        count -= 1
        yield r

  for passes in leaves:
    for r in passes[0]:
      yield r
      yield from take_later(1)
    later.extend(r for p in passes[1:] for r in p)
  if later:  # reads nothing: the last first-pass read's take comes before what is needed
    yield Read(lambda: None, lambda pending: None, lambda values: None)
  yield from take_later(float("inf"))


def _block_budget(group_bytes: int, models: int) -> int:
  """Bytes (in float32) of a block of one checkpoint: a block is read from every checkpoint at
  once (the base's and each model's) into each of the reader's two buffers, and the fold holds
  about five blocks of float32 temporaries, so blocks of 7 * group_bytes / (2 (models + 1) + 5)
  hold about as much as the whole leaves' groups (two buffers of a group, five groups of fold
  state)."""
  return 7 * group_bytes // (2 * (models + 1) + 5)


def row_blocks(abstract: list, group_bytes: int, models: int) -> dict[int, int]:
  """{leaf index: rows per block} of the leaves `_fold_checkpoints` merges in blocks of rows: those
  on one device, of at least one dimension and at most 4-byte elements. A leaf larger than a
  block (`_block_budget`) is cut into blocks of fewer rows; the others are one block (rows: all
  of them), merged whole in packs of several leaves read at once (`_packs`)."""
  budget = _block_budget(group_bytes, models)
  out = {}
  for j, a in enumerate(abstract):
    if (len(a.shape) < 1 or a.shape[0] < 1 or len(a.sharding.device_set) != 1
        or np.dtype(a.dtype).itemsize > 4):
      continue
    row = 4 * int(np.prod(a.shape[1:], dtype=np.int64))
    rows = max(1, budget // max(row, 1))
    out[j] = _even_rows(a.shape[0], rows) if rows < a.shape[0] else a.shape[0]
  return out


def _packs(leaves: list[int], abstract: list, budget: int) -> list[list[int]]:
  """The one-block leaves (indices, in order) in packs of consecutive ones of at most `budget`
  bytes in float32 (at least one leaf each): a pack is read from every checkpoint in one read."""
  packs, size = [], 0
  for j in leaves:
    n = 4 * int(np.prod(abstract[j].shape, dtype=np.int64))
    if packs and size + n <= budget:
      packs[-1].append(j)
      size += n
    else:
      packs.append([j])
      size = n
  return packs


def _pack_item(reader, pack: list, keys: list, out: list) -> Read:
  """The Read of a pack of one-block leaves [(index, leaf)]: each leaf read from every checkpoint
  (the base's and each model's), all in one read, then merged in full, every pass of its method
  over the same values (its statistics are complete after its one block)."""
  reqs = [leaf.request(keys[j], leaf.blocks[0], check=True) for j, leaf in pack]
  dirs, ks, targets, expect, rows = (sum((r[f] for r in reqs), []) for f in range(5))
  names = ", ".join(checkpoints.where(s.path, s.step) for s in pack[0][1].srcs)
  arrays = ", ".join(f"{checkpoints.PARAMS}/{leaf.name}" for _, leaf in pack)

  def start():
    return reader.start(dirs, ks, targets, expect, rows)

  def finish(pending):
    with errors.reading(f"one of {names} is damaged: one of {arrays} does not read",
                        "merge another step, or re-create that checkpoint"):
      return reader.finish(pending)

  def take(values: list) -> None:
    n = len(pack[0][1].srcs)
    for q, (j, leaf) in enumerate(pack):
      leaf.take_whole(out, j, values[q * n:(q + 1) * n])
    _release_free_memory()

  return Read(start, finish, take, functools.partial(reader.prefetch, dirs, ks, targets, rows))


def _even_rows(n: int, rows: int) -> int:
  """Rows per block of at most `rows` that divide n (one compiled shape for every block), if one
  of at least rows / 2 does; else the blocks balanced (the last one a little smaller)."""
  for d in range(rows, (rows + 1) // 2 - 1, -1):
    if n % d == 0:
      return d
  return -(-n // -(-n // rows))


class _BlockedLeaf:
  """One leaf merged a block of rows at a time, each block read from every checkpoint at once
  (the base's and each model's) and handled by one compiled op per pass: passes over the blocks
  for the statistics the method takes over the whole tensor, then the merge pass, which computes
  the block's merged rows with the in-memory fold (`merges.Method`, fused) and writes them into
  the output leaf. Statistics: TIES (density < 1) each task vector's k-th largest magnitude,
  exactly, from counts of the magnitudes' float32 bit patterns, which add up over blocks: the
  first pass counts every pattern in a window of WINDOW high-16-bit buckets around the k-th
  largest of a sample of block 0 and the entries above it (XLA computes the patterns relative to
  the window, the host selects and counts the few inside it); where a model's k-th largest over
  the tensor is not in its window, two more passes take `merges.high_histogram` and
  `low_histogram`. SLERP and model stock: the Gram matrix of the task vectors (float64 sums of
  the blocks' float32 dots), from which their result is base + sum_i c_i tau_i with scalars c_i
  (`slerp_coefficients`, `stock_coefficients`). TIES with density 1 and DARE need no statistics
  (DARE's mask is offset by the block's first index). The first pass reads from disk and
  checks each array's recorded digest; the later ones read the same bytes again (from the page
  cache)."""

  def __init__(self, m: merges.Method, w: np.ndarray, order: list, srcs: list, a, name: str,
               rows: int):
    self.m, self.w, self.order, self.srcs, self.a, self.name = m, w, order, srcs, a, name
    self.models = [i for i in order if i != -1]
    self.has_base = order[0] == -1
    n = a.shape[0]
    self.blocks = [(r, min(n, r + rows)) for r in range(0, n, rows)]
    self.row = int(np.prod(a.shape[1:], dtype=np.int64))
    self.size = n * self.row
    trims = m.name == "ties" and m.density < 1.0
    self.passes = (("window", "high", "low") if trims else ("gram",) if m.kind in ("slerp", "stock")
                   else ()) + ("merge",)
    (device,) = a.sharding.device_set  # the blocks' and the statistics' (whatever the
    self.sh = jax.sharding.SingleDeviceSharding(device)  # target's rank)
    self.hist = None  # the histograms of this pass [models, buckets]
    self.buckets = self.thresholds = None  # TIES: [models]
    self.ranks: list = []  # TIES: each model's rank of its k-th largest within its bucket
    self.window = None  # TIES: [models] the first bucket of each model's window
    self.inside: list = []  # TIES: [models][blocks] patterns in the window, not yet counted
    self.wlow: list = []  # TIES: [models] counts of the patterns in the window, or None
    self.above = np.zeros(len(self.models), np.int64)  # TIES: entries above each window
    self.gram = np.zeros((len(self.models),) * 2)
    self.coef: np.ndarray | None = None  # SLERP, model stock: c [models]
    self.ready: dict = {}  # pass: its ops' compile (compile_ahead)

  def request(self, key: tuple, rows: tuple, check: bool) -> tuple:
    """(item dirs, keys, targets, digests, rows) of reading a block from every checkpoint: the
    arguments of `ArrayReader.start` (digests where `check`: the first pass)."""
    n = len(self.srcs)
    expect = [(s.meta.get("digests") or {}).get(checkpoints.PARAMS) if check else None
              for s in self.srcs]
    return [s.item_dir for s in self.srcs], [key] * n, [self.a] * n, expect, [rows] * n

  def items(self, reader, key: tuple, out: list, j: int) -> list:
    """[pass][Read] over the blocks: the first pass's reads (from disk) prefetched, the later
    ones' (from the page cache) not; TIES's histogram passes only where a window missed."""
    names = ", ".join(checkpoints.where(s.path, s.step) for s in self.srcs)

    def start(step, rows):
      if step in ("high", "low") and self.thresholds is not None:
        return None  # the first pass's window held every model's k-th magnitude
      return reader.start(*self.request(key, rows, step == self.passes[0]))

    def finish(pending):
      if pending is None:
        return None
      with errors.reading(f"one of {names} is damaged: {checkpoints.PARAMS}/{self.name} does "
                          "not read", "merge another step, or re-create that checkpoint"):
        return reader.finish(pending)

    def prefetch(rows):
      dirs, keys, targets, _, blocks = self.request(key, rows, False)
      reader.prefetch(dirs, keys, targets, blocks)

    fallback = lambda: self.thresholds is None  # noqa: E731
    return [[Read(functools.partial(start, step, rows), finish,
                  functools.partial(self.take, step, rows, out, j),
                  functools.partial(prefetch, rows) if step == self.passes[0] else None,
                  fallback if step in ("high", "low") else None)
             for rows in self.blocks] for step in self.passes]

  def take_whole(self, out: list, j: int, values: list) -> None:
    """A one-block leaf's every pass over the same values (its block read from every
    checkpoint): the statistics, then the merge."""
    for step in self.passes:
      self.take(step, self.blocks[0], out, j, values)

  def _args(self, values: list):
    b = values[0] if self.has_base else None
    return b, tuple(values[1:] if self.has_base else values)

  def take(self, step: str, rows: tuple, out: list, j: int, values: list | None) -> None:
    if values is None or (step in ("high", "low") and self.thresholds is not None):
      return  # histogram passes the first pass made unnecessary
    self.ready[step].result()
    b, xs = self._args(values)
    if step == "window":
      codes = _jit(_window_codes, self.sh)
      if rows == self.blocks[0]:  # each model's window of buckets: around block 0's k-th
        bits = np.asarray(codes(b, xs, np.zeros(len(xs), np.uint32)))
        self.window = self._guess(bits)
        self.inside, self.wlow = [[] for _ in xs], [None] * len(xs)
        self._count_window(bits - (self.window.astype(np.uint32) << 16)[:, None])  # wraps
      else:
        self._count_window(np.asarray(codes(b, xs, self.window.astype(np.uint32) << 16)))
    elif step == "high":
      h = _jit(_highs, self.sh)(b, xs)
    elif step == "low":
      h = _jit(_lows, self.sh)(b, xs, self.buckets)
    elif step == "gram":
      self.gram += np.asarray(_jit(_gram, self.sh)(b, xs), np.float64)
    if step in ("high", "low"):
      self.hist = h if self.hist is None else _jit(jnp.add, self.sh)(self.hist, h)
      jax.block_until_ready(self.hist)
    last = rows == self.blocks[-1]
    if step == "merge":
      if out[j] is None and len(self.blocks) > 1:
        out[j] = _jit(_zeros(tuple(self.a.shape), np.dtype(self.a.dtype)), self.sh)()
      out[j] = self._merge_op()(out[j], b, xs, *self._params(rows))  # one block: out[j] None
      if last and out[j].sharding != self.a.sharding:  # the target's (same device)
        out[j] = jax.device_put(out[j], self.a.sharding)
      jax.block_until_ready(out[j])
      if last and len(self.blocks) > 1:  # one-block leaves: once per pack
        _release_free_memory()
    elif last:
      self._statistics(step)

  def _fold(self) -> merges.Method:
    """The merge pass's fold: the method's, or for SLERP and model stock the weighted sum of
    task vectors with their coefficients."""
    return _SUM if "gram" in self.passes else self.m

  def _params(self, rows: tuple) -> tuple:
    """(weights, DARE keys, TIES thresholds, mask offset, first row) of a block's merge."""
    w = self.coef if self.coef is not None else self.w[self.models]
    keys = (np.stack([merges.dare_key(self.m.seed, i, self.name) for i in self.models])
            if self.m.name == "dare" else None)
    return (np.asarray(w, np.float32), keys, self.thresholds,
            np.uint32(rows[0] * self.row % 2**32), np.int32(rows[0]))

  def _merge_op(self):
    return _jit(_merge_fn(self._fold(), len(self.models), np.dtype(self.a.dtype)), self.sh,
                donate_argnums=(0,))

  def _statistics(self, step: str) -> None:
    """After a statistics pass: TIES's buckets, then thresholds (on the host: 2^15 or 2^16
    counts per model); SLERP's or model stock's coefficients."""
    if step == "gram":
      self.coef = (stock_coefficients(self.gram) if self.m.kind == "stock" else
                   slerp_coefficients(self.gram, self.w[self.models]))
      return
    k = max(1, int(self.m.density * self.size))
    if step == "window":  # exact where every model's k-th largest lies in its window
      at = [self._window_rank(p, k - a) for p, a in enumerate(self.above)]
      self.inside, self.wlow = [], []
      if all(a is not None for a in at):
        at = np.asarray(at, np.int64)  # patterns relative to the windows' first buckets
        self.thresholds = merges.bucket_value(self.window + (at >> 16), at & 0xFFFF, np)
      return
    hist, self.hist = np.asarray(self.hist, np.int64), None
    if step == "high":
      picked = [merges.select_bucket(h, k, np) for h in hist]
      self.buckets = np.asarray([int(b) for b, _ in picked], np.int32)
      self.ranks = [int(r) for _, r in picked]
    else:
      lows = [merges.select_bucket(h, r, np)[0] for h, r in zip(hist, self.ranks)]
      self.thresholds = merges.bucket_value(self.buckets, np.asarray(lows), np)

  def _guess(self, bits: np.ndarray) -> np.ndarray:
    """[models] int32: the first bucket of each model's window of WINDOW buckets, centred on the
    bucket of the k-th largest magnitude (its share of k) of an even sample of at most 2^16 of
    `bits` [models, entries] (block 0's |task vectors| as float32 bit patterns, which order like
    the magnitudes), found from the sample's counts per bucket. Only the window's place: a miss
    costs the two histogram passes, not exactness."""
    sample = bits[:, ::max(1, bits.shape[1] >> 16)]
    k = min(sample.shape[1], max(1, round(self.m.density * sample.shape[1])))
    centre = []
    for s in sample:  # entries in each bucket and above it, from the top: the k-th's bucket
      above = np.cumsum(np.bincount(s >> 16, minlength=1 << 15)[::-1])
      centre.append((1 << 15) - 1 - int(np.searchsorted(above, k)))
    return np.clip(np.asarray(centre) - WINDOW // 2, 0, (1 << 15) - WINDOW).astype(np.int32)

  def _count_window(self, codes: np.ndarray) -> None:
    """Adds a block's `_window_codes` (relative to each model's window) to the counts: the
    entries above the window, and the (few) patterns inside it, selected on the host (cheaper
    than XLA:CPU's scatter over every entry). The selected patterns wait in a list; where more
    than COUNT_EVERY wait (many tied or like magnitudes), they go into a histogram of the
    window's WINDOW * 2^16 patterns instead, so that what waits stays bounded."""
    span = WINDOW << 16
    for p, c in enumerate(codes):
      self.inside[p].append(c[c < span])
      self.above[p] += np.count_nonzero(c.view(np.int32) >= span)  # below: wrapped, negative
      if sum(map(len, self.inside[p])) > COUNT_EVERY:
        self._flush(p)

  def _flush(self, p: int) -> None:
    """Model p's waiting patterns into its histogram of the window."""
    counts = np.bincount(np.concatenate(self.inside[p]), minlength=WINDOW << 16)
    self.wlow[p] = counts if self.wlow[p] is None else self.wlow[p] + counts
    self.inside[p] = []

  def _window_rank(self, p: int, r: int) -> int | None:
    """The pattern (relative to model p's window) of the r-th largest entry in its window, or
    None where the window holds fewer than r entries or r < 1 (its k-th largest lies outside):
    a partial sort of the waiting patterns, or the histogram where there is one."""
    if self.wlow[p] is None:
      waiting = np.concatenate(self.inside[p]) if self.inside[p] else np.zeros(0, np.uint32)
      if not 1 <= r <= len(waiting):
        return None
      waiting.partition(len(waiting) - r)  # in place: a fresh array
      return int(waiting[len(waiting) - r])
    if self.inside[p]:
      self._flush(p)
    if not 1 <= r <= int(self.wlow[p].sum()):
      return None
    return int(merges.select_bucket(self.wlow[p], r, np)[0])

  def compile_ahead(self, pool: concurrent.futures.Executor, compiled: dict) -> None:
    """Compiles in `pool` the op of each of this leaf's passes for its block shapes, in the order
    of the passes (`take` waits for its pass's), so that compiling overlaps the reads before
    them; `compiled`: {signature: future} of the leaves before it, which share them."""
    a, sh = self.a, self.sh
    scalar = lambda dt: jax.ShapeDtypeStruct((), dt)  # noqa: E731
    n = len(self.models)

    def compile_pass(step, shape):
      x = jax.ShapeDtypeStruct(shape, a.dtype, sharding=sh)
      b, xs = (x if self.has_base else None), (x,) * n
      if step == "window":
        _jit(_window_codes, sh).lower(b, xs, jax.ShapeDtypeStruct((n,), jnp.uint32)).compile()
      elif step == "gram":
        _jit(_gram, sh).lower(b, xs).compile()
      else:
        out = None
        if len(self.blocks) > 1:
          out = jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh)
          _jit(_zeros(tuple(a.shape), np.dtype(a.dtype)), sh).lower().compile()
        keys = jax.ShapeDtypeStruct((n, 2), jnp.uint32) if self.m.name == "dare" else None
        thr = jax.ShapeDtypeStruct((n,), jnp.float32) if "window" in self.passes else None
        self._merge_op().lower(out, b, xs, jax.ShapeDtypeStruct((n,), jnp.float32), keys, thr,
                               scalar(jnp.uint32), scalar(jnp.int32)).compile()

    shapes = sorted({(r1 - r0, *a.shape[1:]) for r0, r1 in self.blocks}, reverse=True)
    done = concurrent.futures.Future()
    done.set_result(None)
    for step in self.passes:
      if step in ("high", "low"):  # TIES's fallback when a window misses: compiled if needed
        self.ready[step] = done
        continue
      sig = (step, tuple(shapes), np.dtype(a.dtype), sh, tuple(a.shape), self.m, n,
             self.has_base)
      if sig not in compiled:  # leaves of one shape share their ops
        compiled[sig] = pool.submit(lambda step=step: [compile_pass(step, sh_) for sh_ in shapes])
      self.ready[step] = compiled[sig]


# TIES: the buckets (of 2^15 by the high 16 bits of |tau|) whose full counts the first pass
# takes, around the bucket of the k-th largest magnitude of a sample of block 0; where every
# model's k-th largest over the whole tensor falls in its window, the two histogram passes are
# not needed.
WINDOW = 4
COUNT_EVERY = WINDOW << 16  # TIES: window patterns selected on the host before they are counted
_SUM = merges.Method("task_arithmetic")  # base + sum_i c_i tau_i (SLERP's, model stock's merge)


def _merge_block(fold: merges.Method, count: int, dtype, out, b, xs, w, keys, thresholds,
                 offset, r0):
  """`out` with rows r0.. set to the merge (`fold`, as in memory, in `dtype`) of the block's
  models `xs` with base `b`: weights w [models], DARE keys [models, 2], TIES thresholds
  [models]; the merged block itself where `out` is None (a leaf of one block)."""
  state = fold.start(xs[0])
  for p, x in enumerate(xs):
    state = fold.add(state, x, b, w[p], None if keys is None else keys[p],
                     None if thresholds is None else thresholds[p], offset)
  block = fold.finish(state, b, count, dtype)
  return block if out is None else jax.lax.dynamic_update_slice_in_dim(out, block, r0, 0)


def _highs(b, xs):
  """[models, 2^15]: `merges.high_histogram` of each model's |task vector|."""
  return jnp.stack([merges.high_histogram(jnp.abs(_tau_of(x, b))) for x in xs])


def _window_codes(b, xs, lows):
  """[models, entries] uint32: each model's |task vector| as float32 bit patterns minus lows[p]
  (wrapping): below WINDOW * 2^16 inside model p's window (bucket lows[p] >> 16 on), at or above
  it and below 2^31 above the window, from 2^31 below it (the patterns are under 2^31)."""
  return jnp.stack([merges._bits(jnp.abs(_tau_of(x, b))) - lows[p] for p, x in enumerate(xs)])


def _lows(b, xs, buckets):
  """[models, 2^16]: `merges.low_histogram` of each model's |task vector| in its bucket."""
  return jnp.stack([merges.low_histogram(jnp.abs(_tau_of(x, b)), buckets[p])
                    for p, x in enumerate(xs)])


def _gram(b, xs):
  """[models, models]: the dot products of the models' task vectors (float32)."""
  taus = [_tau_of(x, b) for x in xs]
  return jnp.stack([jnp.stack([jnp.vdot(t, u) for u in taus]) for t in taus])


def slerp_coefficients(gram: np.ndarray, w: np.ndarray) -> np.ndarray:
  """c with iterated pairwise SLERP (merges.Method's) of task vectors tau_i = sum_i c_i tau_i,
  from their Gram matrix: r_k = a r_{k-1} + b tau_k keeps r a combination of the tau_i."""
  c, wsum = np.zeros(len(w)), 0.0
  for p, wp in enumerate(w):
    lam = wp / (wsum + wp if wsum + wp > 0 else 1.0)
    ca, cb = merges.slerp_coefficients(c @ gram @ c, gram[p, p], c @ gram[:, p], lam, xp=np)
    c = ca * c
    c[p] += cb
    wsum += wp
  return c


def stock_coefficients(gram: np.ndarray) -> np.ndarray:
  """c with model stock's base + t * mean tau_i = base + sum_i c_i tau_i (c_i = t / M), its mean
  pairwise cosine from the Gram matrix (a task vector of norm <= eps counts as is, as in
  merges.Method)."""
  count = len(gram)
  norm = np.sqrt(np.diag(gram))
  s = np.where(norm > merges._EPS, norm, 1.0)
  units = gram / np.outer(s, s)
  cos = (units.sum() - np.trace(units)) / (count * (count - 1))
  den = 1 + (count - 1) * cos
  t = 0.0 if abs(den) < 1e-6 else count * cos / den
  return np.full(count, t / count)


@functools.lru_cache(maxsize=None)
def _zeros(shape: tuple, dtype) -> Callable:
  return lambda: jnp.zeros(shape, dtype)


def _tau_of(x, b):
  return x.astype(_acc_dtype(x.dtype)) - (0 if b is None else b)


def _jit(fn, sharding, **kw):
  """`fn` jitted with its output on `sharding` (one device), one jit object per (fn, layout)."""
  return _cached_jit(fn, (sharding, tuple(sorted(kw.items()))), out_shardings=sharding, **kw)


@functools.lru_cache(maxsize=None)
def _merge_fn(fold: merges.Method, count: int, dtype) -> Callable:
  """`_merge_block` of `fold` over `count` models (one function object each: jit caches by it)."""
  return functools.partial(_merge_block, fold, count, dtype)


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
