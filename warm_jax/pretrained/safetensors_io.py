"""Reading and writing safetensors files (the weights format of Hugging Face checkpoints), without
torch: an 8-byte little-endian header length, a JSON header (name -> dtype, shape, data offsets;
optional `__metadata__`), then the raw little-endian tensor data.

    ckpt = open_checkpoint("hf_dir")       # model.safetensors, or the shards of its index
    ckpt.names(); ckpt.info("model.norm.weight").shape
    view = ckpt.array("model.norm.weight")   # a read-only numpy view of the mmap'd file
    ckpt.release("model.norm.weight")        # its pages leave this process's memory
    part = ckpt.read("model.norm.weight", 0, 16, buffer)   # pread into a reused buffer

Every header is validated against its file before anything is read: a known dtype, a shape of
non-negative ints, data offsets that hold exactly shape x itemsize bytes and end inside the file
(a truncated file fails naming the file and the tensor). Arrays are views of an mmap, so reading a
slice of a tensor touches only the pages of that slice; nothing is copied until a caller slices
and converts, and `release` drops a tensor's pages from the process once it is converted. `read`
reads a range of a tensor's elements with pread into a caller's buffer instead (streams that
should not map files). bfloat16 comes from ml_dtypes.

`write_safetensors` writes one file from (name, shape, dtype, producer) entries, computing each
tensor only when its bytes are written, so a model is never held whole in host memory.
"""

from __future__ import annotations

import dataclasses
import json
import math
import mmap
import os
import struct
import sys
from typing import Callable, Iterable

import ml_dtypes
import numpy as np

from warm_jax.errors import InputError

if sys.byteorder != "little":  # safetensors data is little-endian; arrays are views of it
  raise ImportError("warm_jax.pretrained reads and writes safetensors on little-endian hosts only")

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16), "I64": np.dtype("<i8"), "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"), "I8": np.dtype("i1"), "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
_MAX_HEADER = 100 * 2 ** 20  # the safetensors library's own limit on the JSON header


class CheckpointError(InputError):
  """A Hugging Face checkpoint that cannot be read: the message names the file and the tensor
  or field."""


@dataclasses.dataclass(frozen=True)
class TensorInfo:
  """Where one tensor lies: its file, dtype, shape and absolute byte range [start, end)."""
  name: str
  file: str
  dtype: np.dtype
  shape: tuple[int, ...]
  start: int
  end: int


def read_header(path: str) -> dict[str, TensorInfo]:
  """The tensors of one safetensors file, each checked against the file's size."""
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    head = f.read(8)
    if len(head) < 8:
      raise CheckpointError(f"{path}: {size} bytes, too short for a safetensors file (its first "
                            "8 bytes give the header length)")
    (n,) = struct.unpack("<Q", head)
    if n > _MAX_HEADER or 8 + n > size:
      raise CheckpointError(f"{path}: header of {n} bytes does not fit in the file ({size} bytes): "
                            "truncated or not a safetensors file")
    raw = f.read(n)
  try:
    header = json.loads(raw)
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise CheckpointError(f"{path}: the header is not valid JSON ({e})") from None
  if not isinstance(header, dict):
    raise CheckpointError(f"{path}: the header is a JSON {type(header).__name__}, not an object")
  base = 8 + n
  out = {}
  for name, entry in header.items():
    if name == "__metadata__":
      continue
    out[name] = _tensor_info(path, name, entry, base, size)
  return out


def _tensor_info(path: str, name: str, entry, base: int, size: int) -> TensorInfo:
  """One header entry, validated: known dtype, int shape, offsets matching shape x itemsize and
  ending inside the file."""
  def bad(why):
    return CheckpointError(f"{path}: tensor {name!r}: {why}")
  if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
    raise bad(f"header entry {entry!r} lacks dtype, shape or data_offsets")
  if entry["dtype"] not in DTYPES:
    raise bad(f"dtype {entry['dtype']!r} is not one of {sorted(DTYPES)}")
  dtype = DTYPES[entry["dtype"]]
  shape, offsets = entry["shape"], entry["data_offsets"]
  if not (isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape)):
    raise bad(f"shape {shape!r} is not a list of non-negative integers")
  if not (isinstance(offsets, list) and len(offsets) == 2
          and all(isinstance(o, int) and o >= 0 for o in offsets) and offsets[0] <= offsets[1]):
    raise bad(f"data_offsets {offsets!r} are not [begin, end] with 0 <= begin <= end")
  nbytes = math.prod(shape) * dtype.itemsize
  if offsets[1] - offsets[0] != nbytes:
    raise bad(f"data_offsets {offsets} span {offsets[1] - offsets[0]} bytes but shape {shape} of "
              f"{entry['dtype']} needs {nbytes}")
  if base + offsets[1] > size:
    raise bad(f"its data ends at byte {base + offsets[1]} but the file has {size} bytes: the file "
              "is truncated")
  return TensorInfo(name, path, dtype, tuple(shape), base + offsets[0], base + offsets[1])


class Checkpoint:
  """The tensors of a checkpoint directory (one file or the shards of an index), mmap'd lazily."""

  def __init__(self, tensors: dict[str, TensorInfo], files: list[str]):
    self._tensors = tensors
    self.files = files
    self._maps: dict[str, mmap.mmap] = {}
    self._fds: dict[str, int] = {}

  def names(self) -> list[str]:
    return sorted(self._tensors)

  def __contains__(self, name: str) -> bool:
    return name in self._tensors

  def info(self, name: str) -> TensorInfo:
    return self._tensors[name]

  def array(self, name: str) -> np.ndarray:
    """A read-only view of the tensor in its stored dtype and shape (no data is read yet)."""
    t = self._tensors[name]
    if t.file not in self._maps:
      with open(t.file, "rb") as f:
        self._maps[t.file] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    count = math.prod(t.shape)
    flat = np.frombuffer(self._maps[t.file], dtype=t.dtype, count=count, offset=t.start)
    return flat.reshape(t.shape)

  def release(self, name: str) -> None:
    """Drops the pages of the tensor's bytes from this process's memory (madvise DONTNEED on the
    read-only map: touched again, they are read again from the file)."""
    t = self._tensors[name]
    m = self._maps.get(t.file)
    if m is None or t.end <= t.start:
      return
    start = t.start - t.start % mmap.PAGESIZE
    m.madvise(mmap.MADV_DONTNEED, start, t.end - start)

  def read(self, name: str, start: int, count: int, out: np.ndarray) -> np.ndarray:
    """Elements [start, start + count) of the flattened tensor, read with pread into `out` (a
    caller's buffer of the tensor's dtype with at least `count` elements); returns out[:count]."""
    t = self._tensors[name]
    if out.dtype != t.dtype or out.size < count or not 0 <= start <= start + count <= math.prod(
        t.shape):
      raise ValueError(f"{t.file}: tensor {name!r}: cannot read elements [{start}, "
                       f"{start + count}) of {list(t.shape)} into a {out.dtype}[{out.size}] buffer")
    if t.file not in self._fds:
      self._fds[t.file] = os.open(t.file, os.O_RDONLY)
    nbytes = count * t.dtype.itemsize
    view = memoryview(out.reshape(-1).view(np.uint8))[:nbytes]
    offset, done = t.start + start * t.dtype.itemsize, 0
    while done < nbytes:
      n = os.preadv(self._fds[t.file], [view[done:]], offset + done)
      if n <= 0:
        raise CheckpointError(f"{t.file}: tensor {name!r}: the file ended at byte {offset + done} "
                              "while reading (it was truncated after it was opened)")
      done += n
    return out.reshape(-1)[:count]

  def rename(self, mapping: Callable[[str], str | None]) -> "Checkpoint":
    """The same checkpoint with each name replaced by mapping(name), or dropped when None."""
    out = {}
    for name, t in self._tensors.items():
      new = mapping(name)
      if new is not None:
        if new in out:
          raise CheckpointError(f"{t.file}: tensors {out[new].name!r} and {name!r} both stand for "
                                f"{new!r}")
        out[new] = t
    return Checkpoint(out, self.files)

  def close(self) -> None:
    for m in self._maps.values():
      try:
        m.close()
      except BufferError:  # a view of it is still alive; the map closes when that is collected
        pass
    for fd in self._fds.values():
      os.close(fd)
    self._maps, self._fds = {}, {}


def open_checkpoint(directory: str) -> Checkpoint:
  """The safetensors weights of a directory: model.safetensors, or the shards that
  model.safetensors.index.json names (each must exist and hold the tensors the index puts in it)."""
  index = os.path.join(directory, INDEX_FILE)
  single = os.path.join(directory, SINGLE_FILE)
  if os.path.exists(index):
    return _open_sharded(directory, index)
  if os.path.exists(single):
    return Checkpoint(read_header(single), [single])
  found = sorted(f for f in os.listdir(directory) if f.endswith((".bin", ".pt", ".pth", ".h5",
                                                                  ".msgpack", ".gguf")))
  hint = (f" (it holds {found}: only safetensors weights are read, never pickles)" if found else "")
  raise CheckpointError(f"{directory}: no weights: neither {SINGLE_FILE} nor {INDEX_FILE}{hint}")


def _open_sharded(directory: str, index_path: str) -> Checkpoint:
  try:
    with open(index_path) as f:
      index = json.load(f)
  except json.JSONDecodeError as e:
    raise CheckpointError(f"{index_path}: not valid JSON ({e})") from None
  weight_map = index.get("weight_map") if isinstance(index, dict) else None
  if not isinstance(weight_map, dict) or not weight_map:
    raise CheckpointError(f"{index_path}: no 'weight_map' object (tensor name -> shard file)")
  for name, shard in weight_map.items():
    if not isinstance(shard, str) or not shard or os.path.basename(shard) != shard:
      raise CheckpointError(f"{index_path}: tensor {name!r} maps to {shard!r}, not a file name in "
                            f"{directory}")
  headers = {}
  for shard in sorted(set(weight_map.values())):
    path = os.path.join(directory, shard)
    if not os.path.exists(path):
      names = sorted(n for n, s in weight_map.items() if s == shard)
      raise CheckpointError(f"{index_path} puts {len(names)} tensors (first: {names[0]!r}) in "
                            f"shard {shard}, which does not exist")
    headers[shard] = read_header(path)
  tensors = {}
  for name, shard in sorted(weight_map.items()):
    if name not in headers[shard]:
      raise CheckpointError(f"{index_path} puts tensor {name!r} in {shard}, whose header does not "
                            "hold it")
    tensors[name] = headers[shard][name]
  for shard, header in headers.items():
    for name in header:
      if weight_map.get(name) != shard:
        raise CheckpointError(f"{os.path.join(directory, shard)} holds tensor {name!r}, which "
                              f"{index_path} does not map to it")
  return Checkpoint(tensors, [os.path.join(directory, s) for s in sorted(headers)])


@dataclasses.dataclass(frozen=True)
class TensorEntry:
  """A tensor to write: its name, shape, dtype and a function that returns its data (called once,
  when its bytes are written)."""
  name: str
  shape: tuple[int, ...]
  dtype: np.dtype
  produce: Callable[[], np.ndarray]

  @property
  def nbytes(self) -> int:
    return math.prod(self.shape) * np.dtype(self.dtype).itemsize


def header_bytes(entries: Iterable[TensorEntry], metadata: dict[str, str] | None = None) -> bytes:
  """The 8-byte length plus the JSON header for `entries` laid out in order, padded with spaces
  to a multiple of 8 bytes (as the safetensors library pads it)."""
  header: dict = {"__metadata__": dict(metadata)} if metadata else {}
  offset = 0
  for e in entries:
    header[e.name] = {"dtype": DTYPE_NAMES[np.dtype(e.dtype)], "shape": list(e.shape),
                      "data_offsets": [offset, offset + e.nbytes]}
    offset += e.nbytes
  raw = json.dumps(header, separators=(",", ":")).encode()
  raw += b" " * (-len(raw) % 8)
  return struct.pack("<Q", len(raw)) + raw


def write_safetensors(path: str, entries: list[TensorEntry],
                      metadata: dict[str, str] | None = None) -> None:
  """Writes `entries` into one safetensors file, producing each tensor just before its bytes are
  written (checking its shape and dtype) and fsyncing the file at the end."""
  with open(path, "wb") as f:
    f.write(header_bytes(entries, metadata))
    for e in entries:
      data = np.asarray(e.produce())
      if data.shape != tuple(e.shape) or data.dtype != np.dtype(e.dtype):
        raise ValueError(f"{path}: tensor {e.name!r} came out {data.dtype}{list(data.shape)}, "
                         f"expected {np.dtype(e.dtype)}{list(e.shape)}")
      f.write(np.ascontiguousarray(data).reshape(-1).view(np.uint8))  # no copy; little-endian
    f.flush()
    os.fsync(f.fileno())


def shard_entries(entries: list[TensorEntry], max_bytes: int) -> list[list[TensorEntry]]:
  """Splits entries, in order, into shards of at most `max_bytes` of data each (a tensor larger
  than that gets a shard of its own)."""
  shards: list[list[TensorEntry]] = [[]]
  size = 0
  for e in entries:
    if shards[-1] and size + e.nbytes > max_bytes:
      shards.append([])
      size = 0
    shards[-1].append(e)
    size += e.nbytes
  return shards


def write_checkpoint(directory: str, entries: list[TensorEntry], max_shard_bytes: int,
                     metadata: dict[str, str] | None = None) -> list[str]:
  """Writes model.safetensors, or, beyond `max_shard_bytes`, model-0000i-of-0000n.safetensors
  shards and their model.safetensors.index.json, into `directory`; returns the files written."""
  shards = shard_entries(entries, max_shard_bytes)
  if len(shards) == 1:
    write_safetensors(os.path.join(directory, SINGLE_FILE), shards[0], metadata)
    return [SINGLE_FILE]
  names, weight_map = [], {}
  for i, shard in enumerate(shards):
    name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
    write_safetensors(os.path.join(directory, name), shard, metadata)
    names.append(name)
    weight_map.update({e.name: name for e in shard})
  index = {"metadata": {"total_size": sum(e.nbytes for e in entries)},
           "weight_map": dict(sorted(weight_map.items()))}
  with open(os.path.join(directory, INDEX_FILE), "w") as f:
    json.dump(index, f, indent=2)
    f.write("\n")
  return names + [INDEX_FILE]
