"""Reads parameter arrays of orbax checkpoints into reusable host buffers: the reading half of a
streaming average (`averaging.average_checkpoints`).

    with ArrayReader() as reader:
      pending = reader.start(item_dir, keys, abstract)   # returns at once: one thread reads
      arrays = reader.finish(pending)                      # jax arrays on the targets' shardings

Where the bytes go. A reader owns two arenas (page-aligned host buffers it reuses): a group of
arrays is read into one while the caller adds the previous group, held in the other. On CPU the jax
arrays that `finish` returns are views of the arena (`jax.device_put(..., may_alias=True)`), so a
streaming average allocates nothing per checkpoint: fresh memory costs a page fault per 4 KiB,
which ran at about 2 GB/s on the 2-core benchmark machine, slower than its disk. The price: the
arrays of a `finish` are valid only until the `start` after next; copy them to keep them.

How the bytes are found. Arrays that `checkpoints.array_handler` writes (zarr3 arrays in an OCDBT
database, uncompressed: a 'sharding_indexed' codec with one inner chunk in 'bytes', the index at
the end, its crc32c checked) are read directly: the byte range of each chunk in the database's
data files comes from its B+tree (`tensorstore.ocdbt.dump`, documented API), and one background
thread reads the ranges in file order with `os.preadv`, the way a sequential copy reads a file.
The chunks' indexes are read with the data and checked (crc32c, offset, length) before the data is
used. Everything else (compressed or transposed chunks, chunks that split columns, a B+tree deeper
than one node, an index that does not check out, a missing chunk) is read by tensorstore into the
same buffers, so the reader handles any zarr3-in-OCDBT item; `supports(item_dir)` says whether an
item is one (else use an orbax restore).

Sharded targets: a process reads, of each array, the rows that its devices hold (every column),
and each device gets its slice of them; replicated shards share one read. Where those rows would
hold over twice the bytes of the process's shards (a host of a multi-host mesh holding a few
columns), it reads each of its shards on its own, by tensorstore.

Reading ahead: `prefetch(...)` (the arguments of a later `start`) asks the kernel to start
reading that read's file ranges into the page cache (posix_fadvise WILLNEED) and returns at once,
so that a streaming loop keeps the disk busy beyond its one read in flight (`stream.read_loop`).

Row blocks: `start(..., rows=[(lo, hi), ...])` reads only rows [lo, hi) of an array whose target
is one device, as an array of hi - lo rows on that device (the streamed merges take their largest
arrays a block at a time). Blocks read in order from row 0 to the last are checked against the
array's recorded digest when the last one is in (the digest is a sum and a xor of the elements,
so it adds up over blocks).
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
from typing import Any, Sequence

import jax
import numpy as np

_ALIGN = 4096          # arena offsets: page-aligned (jax aliases host buffers aligned to >= 64)
_PIECE = 16 << 20      # bytes per preadv call
_INDEX_BYTES = 20      # a one-chunk shard index: offset and length (uint64 LE), then crc32c


def _crc32c_table() -> list[int]:
  table = []
  for i in range(256):
    c = i
    for _ in range(8):
      c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    table.append(c)
  return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
  """CRC-32C (Castagnoli), the checksum zarr3's 'crc32c' codec appends (used on 16-byte indexes)."""
  c = 0xFFFFFFFF
  for b in data:
    c = _CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
  return c ^ 0xFFFFFFFF


def array_name(keys: tuple) -> str:
  """The name orbax gives the array of a parameter path, e.g. 'decoder.block_0.attn.query'."""
  return ".".join(str(k) for k in keys)


def _as_bytes(x: Any) -> bytes:
  return x if isinstance(x, bytes) else str(x).encode()


def locate(item_dir: str) -> dict[str, Any] | None:
  """{OCDBT key: value} of the params item at `item_dir`, from its B+tree: a value is `bytes`
  (stored inline) or (path of its data file, offset, length). None where the tree cannot be read
  this way (no `tensorstore.ocdbt.dump`, a tree deeper than one node, an unknown form)."""
  import tensorstore as ts
  try:
    base = ts.KvStore.open({"driver": "file", "path": os.path.abspath(item_dir) + "/"}).result()
    versions = ts.ocdbt.dump(base).result().get("versions") or []
    if not versions or versions[-1].get("root_height") != 0 or "location" not in versions[-1]["root"]:
      return None
    node = ts.ocdbt.dump(base, versions[-1]["root"]["location"]).result()
    out: dict[str, Any] = {}
    for e in node["entries"]:
      key = _as_bytes(e["key"]).decode()
      if "inline_value" in e:
        out[key] = _as_bytes(e["inline_value"])
        continue
      kind, rest = e["indirect_value"].split(":", 1)  # value:<base path>:<relative path>:<off>:<len>
      file_id, offset, length = rest.rsplit(":", 2)
      base_path, rel = file_id.rsplit(":", 1) if ":" in file_id else ("", file_id)
      path = os.path.normpath(os.path.join(item_dir, base_path, rel))
      if kind != "value" or not path.startswith(os.path.abspath(item_dir) + os.sep):
        return None
      out[key] = (path, int(offset), int(length))
    return out
  except (AttributeError, KeyError, TypeError, ValueError, RuntimeError):
    return None


def _zarr_meta(located: dict, name: str) -> dict | None:
  raw = located.get(f"{name}/zarr.json")
  if not isinstance(raw, bytes):
    return None
  try:
    return json.loads(raw)
  except ValueError:
    return None


def _direct_layout(meta: dict) -> tuple[int, int] | None:
  """(rows per chunk, itemsize) when the array's chunks can be read straight: whole rows, one
  uncompressed little-endian inner chunk per 'sharding_indexed' chunk, index at the end with a
  crc32c. None otherwise."""
  try:
    shape = list(meta["shape"])
    chunk = list(meta["chunk_grid"]["configuration"]["chunk_shape"])
    if meta["chunk_grid"]["name"] != "regular" or chunk[1:] != shape[1:]:
      return None
    enc = meta.get("chunk_key_encoding", {"name": "default"})
    if enc.get("name") != "default" or enc.get("configuration", {}).get("separator", "/") != "/":
      return None
    (codec,) = meta["codecs"]
    cfg = codec["configuration"]
    if codec["name"] != "sharding_indexed" or list(cfg["chunk_shape"]) != chunk:
      return None
    if cfg.get("index_location", "end") != "end":
      return None
    (inner,) = cfg["codecs"]
    itemsize = np.dtype(jax.numpy.dtype(meta["data_type"])).itemsize
    little = inner.get("configuration", {}).get("endian", "little") == "little"
    if inner["name"] != "bytes" or not (little or itemsize == 1):
      return None
    names = [c["name"] for c in cfg["index_codecs"]]
    endian = cfg["index_codecs"][0].get("configuration", {}).get("endian", "little")
    if names != ["bytes", "crc32c"] or endian != "little":
      return None
    return (chunk[0] if chunk else 1), itemsize
  except (KeyError, TypeError, ValueError):
    return None


def _check_index(index: bytes, nbytes: int) -> bool:
  if len(index) != _INDEX_BYTES:
    return False
  offset = int.from_bytes(index[0:8], "little")
  length = int.from_bytes(index[8:16], "little")
  return offset == 0 and length == nbytes and int.from_bytes(index[16:20], "little") == crc32c(index[:16])


def _bounds(index: tuple, shape: tuple) -> tuple[tuple[int, int], ...]:
  """A shard's index (slices, or () for the whole array) as (start, stop) per axis."""
  return tuple(s.indices(n)[:2] for s, n in zip(index, shape)) if index else \
      tuple((0, n) for n in shape)


def _local_shards(a: jax.ShapeDtypeStruct) -> dict:
  """{bounds: index} of the distinct shards of `a` on this process's devices."""
  return {_bounds(idx, a.shape): idx
          for idx in a.sharding.addressable_devices_indices_map(tuple(a.shape)).values()}


def _row_range(a: jax.ShapeDtypeStruct) -> tuple[int, int]:
  """The rows of `a` (axis 0) that this process's devices hold: [lo, hi). (0, 1) for scalars."""
  if not a.shape:
    return 0, 1
  rows = [b[0] for b in _local_shards(a)]
  return min(s for s, _ in rows), max(e for _, e in rows)


def _host_shape(a: jax.ShapeDtypeStruct, rows: tuple[int, int] | None = None) -> tuple[int, ...]:
  lo, hi = rows or _row_range(a)
  return (hi - lo, *a.shape[1:]) if a.shape else ()


def _by_shard(a: jax.ShapeDtypeStruct) -> bool:
  """Whether to read each of this process's shards on its own (by tensorstore) rather than the
  rows they span: when those rows hold over twice the shards' bytes (hosts of a multi-host mesh
  holding a few columns each). On one host the shards tile the array and rows are read."""
  if not a.shape:
    return False
  shard_elems = sum(int(np.prod([e - s for s, e in b], dtype=np.int64)) for b in _local_shards(a))
  return int(np.prod(_host_shape(a), dtype=np.int64)) > 2 * shard_elems


def _host_shapes(a: jax.ShapeDtypeStruct, rows=None) -> list[tuple[int, ...]]:
  """The host buffers a leaf is read into: one per distinct local shard, or one for its rows
  (`rows`: a block of them)."""
  if rows is None and _by_shard(a):
    return [tuple(e - s for s, e in b) for b in _local_shards(a)]
  return [_host_shape(a, rows)]


def _check_rows(k: tuple, a: jax.ShapeDtypeStruct, rows) -> None:
  if rows is None:
    return
  lo, hi = rows
  if len(a.sharding.device_set) != 1 or not a.shape or not 0 <= lo < hi <= a.shape[0]:
    raise ValueError(f"{'/'.join(map(str, k))}: rows {rows} of {list(a.shape)} on "
                     f"{a.sharding}: row blocks are read for arrays on one device, 0 <= lo < hi "
                     "<= rows")


def _nbytes(shape, dtype) -> int:
  return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def _round_up(n: int) -> int:
  return -(-n // _ALIGN) * _ALIGN


class _Arena:
  """A reusable, page-aligned host buffer, carved into arrays; grows when a group needs more."""

  def __init__(self):
    self._raw: np.ndarray | None = None
    self._buf: np.ndarray | None = None
    self._used = 0

  @property
  def nbytes(self) -> int:
    return 0 if self._buf is None else self._buf.size

  def reset(self, nbytes: int) -> None:
    if self._buf is None or self._buf.size < nbytes:
      self._raw = self._buf = None  # free the smaller one first
      self._raw = np.empty(nbytes + _ALIGN, np.uint8)
      off = (-self._raw.ctypes.data) % _ALIGN
      self._buf = self._raw[off:off + nbytes]
    self._used = 0

  def take(self, shape, dtype) -> np.ndarray:
    n = _nbytes(shape, dtype)
    view = self._buf[self._used:self._used + n].view(dtype).reshape(shape)
    self._used += _round_up(n)
    return view


def _read_ranges(reads: list[tuple[str, int, memoryview]]) -> None:
  """Fills each memoryview from (path, offset), in file order, with preadv."""
  fds: dict[str, int] = {}
  try:
    for path, offset, view in sorted(reads, key=lambda r: (r[0], r[1])):
      fd = fds.get(path)
      if fd is None:
        fd = fds[path] = os.open(path, os.O_RDONLY)
      done = 0
      while done < len(view):
        n = os.preadv(fd, [view[done:done + _PIECE]], offset + done)
        if n <= 0:
          raise EOFError(f"{path}: ended at byte {offset + done}, before the checkpoint's "
                         f"B+tree said it would ({offset + len(view)})")
        done += n
  finally:
    for fd in fds.values():
      os.close(fd)


class ArrayReader:
  """Reads groups of arrays of params items into two reused arenas, one group at a time in a
  background thread (see the module docstring). Use as a context manager, or call `close`."""

  def __init__(self, direct: bool = True, file_io_concurrency: int = 32):
    import tensorstore as ts
    self._ts = ts
    self.direct = direct  # False: every array through tensorstore (tests, benchmarks)
    self.context = ts.Context({"file_io_concurrency": {"limit": file_io_concurrency},
                               "cache_pool#ocdbt": {"total_bytes_limit": 100_000_000}})
    self._arenas = (_Arena(), _Arena())
    self._slot = 0
    self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="warm_jax-reader")
    self._ahead = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="warm_jax-prefetch")
    self._located: dict[str, dict | None] = {}  # item dir: its B+tree's entries
    self._blocks: dict = {}  # (item dir, key): (next row, digest parts) of blocks read in order
    self.stats = {"direct": 0, "tensorstore": 0}  # arrays (or row blocks) read each way

  def __enter__(self) -> "ArrayReader":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def close(self) -> None:
    self._ahead.shutdown(wait=True, cancel_futures=True)
    self._pool.shutdown(wait=True, cancel_futures=True)

  @property
  def buffer_bytes(self) -> int:
    """Host bytes held by the two arenas."""
    return sum(a.nbytes for a in self._arenas)

  @staticmethod
  def supports(item_dir: str) -> bool:
    return os.path.exists(os.path.join(item_dir, "manifest.ocdbt"))

  def start(self, item_dir: str | Sequence[str], keys: Sequence[tuple], abstract: Sequence[Any],
            expect: dict[str, str] | Sequence[dict | None] | None = None,
            rows: Sequence[tuple[int, int] | None] | None = None):
    """Starts reading the arrays at parameter paths `keys` of the item (targets: ShapeDtypeStructs
    with shardings) into the next arena; returns what `finish` takes. `expect`: {'a/b/c': digest}
    recorded when the checkpoint was saved (`checkpoints.array_digest`); an array read whole (or
    in row blocks, in order) whose bytes do not match it makes `finish` raise DamagedInput.
    `rows`: per array, None (the rows its target holds) or (lo, hi), a block of rows of an array
    whose target is one device. `item_dir` and `expect` may also be given per array (arrays of
    several checkpoints in one read)."""
    keys, abstract = list(keys), list(abstract)
    dirs = [item_dir] * len(keys) if isinstance(item_dir, (str, os.PathLike)) else list(item_dir)
    expects = list(expect) if isinstance(expect, (list, tuple)) else [expect] * len(keys)
    rows = list(rows) if rows is not None else [None] * len(keys)
    for k, a, r in zip(keys, abstract, rows):
      _check_rows(k, a, r)
    slot, self._slot = self._slot, 1 - self._slot
    need = sum(_round_up(_nbytes(shape, a.dtype))
               for a, r in zip(abstract, rows) for shape in _host_shapes(a, r))
    future = self._pool.submit(self._read_arrays, dirs, keys, abstract, slot, need, expects, rows)
    return future, abstract, rows

  def finish(self, pending) -> list[jax.Array]:
    """The arrays of `start`'s reads on their target shardings (CPU: views of the arena)."""
    future, abstract, rows = pending
    out = []
    for a, host, r in zip(abstract, future.result(), rows):
      if r is not None:  # a block of rows, on the array's one device
        (device,) = a.sharding.device_set
        out.append(jax.device_put(host, device, may_alias=True))
        continue
      lo, _ = _row_range(a)
      shards = []
      for device, index in a.sharding.addressable_devices_indices_map(tuple(a.shape)).items():
        bounds = _bounds(index, a.shape)
        if isinstance(host, dict):  # read shard by shard
          view = host[bounds]
        elif a.shape:
          view = host[(slice(bounds[0][0] - lo, bounds[0][1] - lo), *index[1:])]
        else:
          view = host
        shards.append(jax.device_put(view, device, may_alias=True))
      out.append(jax.make_array_from_single_device_arrays(tuple(a.shape), a.sharding, shards))
    return out

  # -------------------------------------------------------------------------- background thread

  def _locate(self, item_dir: str) -> dict | None:
    if item_dir not in self._located:
      self._located[item_dir] = locate(item_dir) if self.direct else None
    return self._located[item_dir]

  def _read_arrays(self, dirs, keys, abstract, slot, need, expects, rows) -> list:
    arena = self._arenas[slot]
    arena.reset(need)
    hosts, reads, checks, slow = [], [], [], []
    for j, (d, k, a, r) in enumerate(zip(dirs, keys, abstract, rows)):
      if r is None and _by_shard(a):
        hosts.append({b: arena.take(tuple(e - s for s, e in b), a.dtype) for b in _local_shards(a)})
        slow.append(j)
        continue
      host = arena.take(_host_shape(a, r), a.dtype)
      hosts.append(host)
      located = self._locate(d)
      plan = self._direct_plan(d, located, k, a, host, r) if located is not None else None
      if plan is None:
        slow.append(j)
      else:
        reads += plan[0]
        checks.append((j, plan[1]))
    _read_ranges(reads)
    for j, indexes in checks:
      if all(_check_index(bytes(buf), n) for buf, n in indexes):
        self.stats["direct"] += 1
      else:
        logging.getLogger(__name__).info("%s: %s: shard index not as expected; reading it with "
                                         "tensorstore", dirs[j], array_name(keys[j]))
        slow.append(j)
    for d in dict.fromkeys(dirs[j] for j in slow):
      mine = [j for j in slow if dirs[j] == d]
      self._tensorstore_reads(d, [keys[j] for j in mine], [abstract[j] for j in mine],
                              [hosts[j] for j in mine], [rows[j] for j in mine])
    for d in dict.fromkeys(dirs):
      self._check(d, [j for j in range(len(keys)) if dirs[j] == d], keys, abstract, hosts, rows,
                  expects)
    return hosts

  def _check(self, item_dir, mine, keys, abstract, hosts, rows, expects) -> None:
    """Checks the arrays `mine` of one item against its recorded digests: those read whole (all
    of them on one host), and arrays read in row blocks once their last block is in."""
    expect = next((expects[j] for j in mine if expects[j]), None)
    if not expect:
      return
    from warm_jax import checkpoints
    whole = {}
    for j in mine:
      k, a, h, r = keys[j], abstract[j], hosts[j], rows[j]
      if r is not None:
        whole.update(self._add_block(item_dir, k, a, h, r))
      elif not isinstance(h, dict) and _host_shape(a) == tuple(a.shape):
        whole["/".join(map(str, k))] = h
    step_dir = os.path.dirname(os.path.abspath(item_dir))
    checkpoints.check_digests(whole, expect, checkpoints.where(
        os.path.dirname(step_dir), os.path.basename(step_dir)), os.path.basename(item_dir))

  def _add_block(self, item_dir, k, a, host, rows) -> dict:
    """Adds a block's digest parts to its array's running ones; {'a/b/c': digest parts} once
    blocks read in order from row 0 cover the array (else {})."""
    from warm_jax import checkpoints
    lo, hi = rows
    at, parts = self._blocks.pop((item_dir, k), (0, []))
    if lo == 0:
      at, parts = 0, []
    if lo != at:
      return {}  # out of order: not checked
    parts = parts + [host]
    if hi < a.shape[0]:
      self._blocks[(item_dir, k)] = (hi, [checkpoints.DigestParts.of(parts)])
      return {}
    return {"/".join(map(str, k)): checkpoints.DigestParts.of(parts)}

  def _direct_plan(self, item_dir, located, k, a, host, rows=None):
    """([(path, offset, destination)], [(index buffer, data bytes)]) reading array `k`'s rows
    (`rows`, or those its target holds) into `host`; None if the array is not laid out for it."""
    chunks = _chunks(item_dir, located, k, a, rows)
    if chunks is None:
      return None
    dest = memoryview(host.reshape(-1).view(np.uint8))
    reads, indexes = [], []
    for value, src, at, nbytes, chunk_bytes in chunks:
      out = dest[at:at + nbytes]
      if isinstance(value, bytes):  # stored inline in the B+tree
        out[:] = value[src:src + nbytes]
        indexes.append((memoryview(value[chunk_bytes:]), chunk_bytes))
        continue
      path, offset, _ = value
      index = memoryview(bytearray(_INDEX_BYTES))
      reads += [(path, offset + src, out), (path, offset + chunk_bytes, index)]
      indexes.append((index, chunk_bytes))
    return reads, indexes

  def prefetch(self, item_dir: str | Sequence[str], keys: Sequence[tuple],
               abstract: Sequence[Any], rows: Sequence[tuple[int, int] | None] | None = None
               ) -> concurrent.futures.Future:
    """Asks the kernel to start reading the file ranges that a later `start` with the same
    arguments reads directly (posix_fadvise WILLNEED: into the page cache, not into this
    process), so that the disk works ahead of the one read in flight. Returns at once (another
    thread asks: the call can wait on the disk's queue); the future is done once it has asked.
    Items this reader has not read from yet, and arrays it reads otherwise, are left alone."""
    keys = list(keys)
    dirs = [item_dir] * len(keys) if isinstance(item_dir, (str, os.PathLike)) else list(item_dir)
    return self._ahead.submit(self._advise, dirs, keys, list(abstract),
                              list(rows) if rows is not None else [None] * len(keys))

  def _advise(self, dirs, keys, abstract, rows) -> None:
    ranges = []
    for d, k, a, r in zip(dirs, keys, abstract, rows):
      located = self._located.get(d)  # filled by the reading thread
      if located is None or (r is None and _by_shard(a)):
        continue
      ranges += [(v[0], v[1] + src, nbytes) for v, src, _, nbytes, _ in
                 _chunks(d, located, k, a, r) or () if not isinstance(v, bytes)]
    merged: list = []  # ranges of a file a page or less apart: one call
    for path, offset, nbytes in sorted(ranges):
      if merged and merged[-1][0] == path and offset - merged[-1][2] <= _ALIGN:
        merged[-1][2] = max(merged[-1][2], offset + nbytes)
      else:
        merged.append([path, offset, offset + nbytes])
    for path, start, end in merged:
      try:
        fd = os.open(path, os.O_RDONLY)
      except OSError:
        continue  # the read itself will say what is wrong
      try:
        os.posix_fadvise(fd, start, end - start, os.POSIX_FADV_WILLNEED)
      finally:
        os.close(fd)

  def _tensorstore_reads(self, item_dir, keys, abstract, hosts, rows) -> None:
    if not keys:
      return
    ts = self._ts
    spec = lambda k: {"driver": "zarr3", "recheck_cached_data": False,
                      "recheck_cached_metadata": False,
                      "kvstore": {"driver": "ocdbt", "path": array_name(k),
                                  "cache_pool": "cache_pool#ocdbt",
                                  "base": {"driver": "file", "path": os.path.abspath(item_dir) + "/"}}}
    opened = [ts.open(spec(k), context=self.context, read=True) for k in keys]
    writes = []
    for k, fut, a, host, r in zip(keys, opened, abstract, hosts, rows):
      store = fut.result()
      _check_target(item_dir, k, list(store.shape), store.dtype.numpy_dtype, a)
      if isinstance(host, dict):
        for b, index in _local_shards(a).items():
          writes.append(ts.array(host[b], copy=False, write=True).write(store[index]))
        continue
      lo, hi = r or _row_range(a)
      source = store[lo:hi] if a.shape else store
      writes.append(ts.array(host, copy=False, write=True).write(source))
    for w in writes:
      w.result()
    self.stats["tensorstore"] += len(keys)


def _chunks(item_dir, located: dict, k: tuple, a, rows=None) -> list | None:
  """[(stored value, first byte in the chunk, first byte in the destination, bytes, the chunk's
  data bytes)] of array `k`'s rows (`rows`, or those its target holds), chunk by chunk; a value
  is `bytes` (inline in the B+tree) or (path, offset, length). None if the array is not laid
  out to be read directly."""
  name = array_name(k)
  meta = _zarr_meta(located, name)
  if meta is None:
    return None
  _check_target(item_dir, k, meta.get("shape"), meta.get("data_type"), a)
  layout = _direct_layout(meta)
  if layout is None:
    return None
  rows_per_chunk, itemsize = layout
  row_bytes = itemsize * int(np.prod(a.shape[1:], dtype=np.int64))
  chunk_bytes = rows_per_chunk * row_bytes if a.shape else itemsize
  lo, hi = rows or _row_range(a)
  out = []
  for c in range(lo // rows_per_chunk, -(-hi // rows_per_chunk)):
    grid = [c] + [0] * (len(a.shape) - 1) if a.shape else []
    value = located.get(f"{name}/c" + "".join(f"/{i}" for i in grid))
    if value is None:
      return None  # a chunk not stored (all fill value): tensorstore fills it in
    length = len(value) if isinstance(value, bytes) else value[2]
    if length != chunk_bytes + _INDEX_BYTES:
      return None
    r0, r1 = max(lo, c * rows_per_chunk), min(hi, (c + 1) * rows_per_chunk)
    src = (r0 - c * rows_per_chunk) * row_bytes if a.shape else 0
    nbytes = (r1 - r0) * row_bytes if a.shape else itemsize
    out.append((value, src, (r0 - lo) * row_bytes if a.shape else 0, nbytes, chunk_bytes))
  return out


def _check_target(item_dir: str, k: tuple, shape, dtype, a) -> None:
  try:
    on_disk = np.dtype(jax.numpy.dtype(dtype))
  except TypeError:
    on_disk = dtype
  if shape is None or tuple(shape) != tuple(a.shape) or on_disk != np.dtype(a.dtype):
    raise ValueError(f"{item_dir}: {'/'.join(map(str, k))} is {on_disk}{list(shape or [])} on "
                     f"disk, the target wants {np.dtype(a.dtype)}{list(a.shape)}")
