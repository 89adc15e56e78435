"""Weight averaging over Hugging Face model directories (WARM of imported reward models, soups of
imported policies), streamed tensor by tensor, with no conversion first.

    average_hf(["rm_a", "rm_b"], out="warm_hf")                     # writes a Hugging Face dir
    pre = load_averaged_hf(["rm_a", "rm_b"], mesh=mesh, rules=rules)   # warm_jax params
    input_format(paths)                                             # 'hf' or 'warm_jax' (no mix)

`plan_hf` checks everything before any tensor's data is read or anything is written: every
directory's config.json (one family, one head, one architecture: the warm_jax model configs they
imply are compared, `pretrained.read_spec`), every safetensors header (a truncated file fails
naming the file and the tensor), the tensors the architecture implies (a missing or extra one
fails naming it), and the same tensor names, shapes and dtypes in every directory.

A tensor's average is accumulated in float32 (float64 for float64 tensors), input after input,
each read in chunks of about `chunk_bytes` with pread into one reused buffer
(`safetensors_io.Checkpoint.read`: the inputs are never mapped, so their pages do not count
toward this process's memory), then cast back to the tensor's stored dtype, as
`average_checkpoints` does for orbax checkpoints. Inputs of weight 0 are checked but not read.
Peak memory is the largest tensor in float32 plus its stored copy and the chunk buffers, whatever
the number of inputs and the model's size (the orbax path holds a whole model's running sum).
`average_hf` writes the output tensor by tensor into a temporary sibling directory renamed when
complete (`pretrained.convert.write_directory`): safetensors shards (5 GiB at most each), the first
input's config.json and tokenizer files, and `warm_jax_average.json` (the sources and weights).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from typing import Callable, Sequence

import numpy as np

from warm_jax.averaging.sources import _compare_model_configs
from warm_jax.averaging.tree import check_weights
from warm_jax.errors import InputError

AVERAGE_FILE = "warm_jax_average.json"
DEFAULT_CHUNK_BYTES = 16 << 20


def input_format(paths: Sequence[str]) -> str:
  """'hf' when every path is a Hugging Face directory (`pretrained.hf_dir`), 'warm_jax' when none
  is; a mix is an InputError naming one of each."""
  from warm_jax import pretrained
  hf = [p for p in paths if pretrained.hf_dir(p) is not None]
  if hf and len(hf) < len(paths):
    other = next(p for p in paths if p not in hf)
    raise InputError(f"cannot average {hf[0]} (a Hugging Face directory) with {other} (a warm_jax "
                     "checkpoint): give only Hugging Face directories of one architecture, or "
                     "only warm_jax checkpoints")
  return "hf" if hf else "warm_jax"


@dataclasses.dataclass
class HFSource:
  """One directory to average: its path, what its config.json says, its weights (raw names)."""
  path: str
  spec: object  # pretrained.convert.HFSpec
  ckpt: object  # pretrained.safetensors_io.Checkpoint

  @property
  def nbytes(self) -> int:
    return sum(self.ckpt.info(n).end - self.ckpt.info(n).start for n in self.ckpt.names())


def _open(path: str) -> HFSource:
  from warm_jax import pretrained
  from warm_jax.pretrained import safetensors_io as st
  directory = pretrained.hf_dir(path)
  if directory is None:
    raise InputError(f"{path} is not a Hugging Face directory (config.json and safetensors "
                     "weights)")
  return HFSource(directory, pretrained.read_spec(directory), st.open_checkpoint(directory))


def _check_same(first: HFSource, src: HFSource, i: int) -> None:
  """`src` holds the same model as `first`: config.json and every tensor's name, shape, dtype."""
  from warm_jax.pretrained.safetensors_io import CheckpointError
  a, b = first.spec, src.spec
  if (a.kind, a.family) != (b.kind, b.family):
    raise CheckpointError(
        f"cannot average {src.path} with {first.path}: {b.config_path} holds a {b.family} "
        f"{b.kind} ({b.hf_config.get('architectures')}), {a.config_path} a {a.family} {a.kind} "
        f"({a.hf_config.get('architectures')})")
  why = _compare_model_configs({"model": a.model_cfg.to_dict()}, {"model": b.model_cfg.to_dict()},
                               a.config_path, b.config_path)
  if why:
    raise CheckpointError(f"cannot average {src.path} with {first.path}: different architectures: "
                          f"{why}")
  names, others = set(first.ckpt.names()), set(src.ckpt.names())
  for name in sorted(names - others):
    raise CheckpointError(f"{src.path} (input {i}): tensor {name!r} is missing from its weights "
                          f"({', '.join(os.path.basename(f) for f in src.ckpt.files)}); "
                          f"{first.ckpt.info(name).file} holds it")
  for name in sorted(others - names):
    raise CheckpointError(f"{src.ckpt.info(name).file} (input {i}): tensor {name!r} is not in "
                          f"{first.path}")
  for name in sorted(names):
    t, u = first.ckpt.info(name), src.ckpt.info(name)
    if (t.shape, t.dtype) != (u.shape, u.dtype):
      raise CheckpointError(f"{u.file} (input {i}): tensor {name!r} is {u.dtype}{list(u.shape)}, "
                            f"but {t.dtype}{list(t.shape)} in {t.file}")


def plan_hf(paths: Sequence[str], weights: Sequence[float] | None = None, normalize: bool = True,
            out: str | None = None) -> tuple[list[HFSource], np.ndarray]:
  """Validates an average of Hugging Face directories without reading any tensor's data:
  returns (sources, weights). See the module docstring for what is checked; `out`, if given, must
  not exist and must not lie inside an input."""
  from warm_jax.pretrained import convert
  from warm_jax.pretrained.layout import tensor_layout
  from warm_jax.pretrained.safetensors_io import CheckpointError
  paths = list(paths)
  w = check_weights(weights, len(paths), normalize)
  if out is not None and os.path.exists(out):
    raise FileExistsError(f"output {out} exists; refusing to overwrite it")
  sources = [_open(p) for p in paths]
  first = sources[0]
  spec = first.spec
  renamed = first.ckpt.rename(spec.rename)
  convert.check_tensors(renamed, tensor_layout(spec.model_cfg, spec.kind), spec)
  for name in first.ckpt.names():
    t = first.ckpt.info(name)
    if np.dtype(t.dtype).kind != "f" and np.dtype(t.dtype).name != "bfloat16":
      raise CheckpointError(f"{t.file}: tensor {name!r} is {t.dtype}: only floating-point tensors "
                            "can be averaged")
  for i, src in enumerate(sources[1:], start=1):
    _check_same(first, src, i)
  if out is not None:
    out_abs = os.path.abspath(out)
    for src in sources:
      if os.path.commonpath([out_abs, os.path.abspath(src.path)]) == os.path.abspath(src.path):
        raise ValueError(f"output {out} lies inside the input {src.path}")
  return sources, w


class Averager:
  """The weighted average of one tensor over the sources (float32 sum, cast back to its dtype),
  computed in chunks read into reused buffers; one tensor at a time (the result is valid until
  the next call)."""

  def __init__(self, sources: list[HFSource], weights: np.ndarray,
               chunk_bytes: int = DEFAULT_CHUNK_BYTES):
    self.sources, self.weights = sources, np.asarray(weights, np.float64)
    self.chunk_bytes = max(int(chunk_bytes), 1 << 12)
    self._buffers: dict = {}

  def _buffer(self, key, dtype, n: int) -> np.ndarray:
    buf = self._buffers.get(key)
    if buf is None or buf.dtype != dtype or buf.size < n:
      buf = self._buffers[key] = np.empty((n,), dtype)
    return buf[:n]

  def __call__(self, name: str) -> np.ndarray:
    info = self.sources[0].ckpt.info(name)
    dtype = np.dtype(info.dtype)
    acc_dtype = np.float64 if dtype == np.float64 else np.float32
    n = math.prod(info.shape)
    acc = self._buffer("acc", acc_dtype, n)
    chunk = max(1, self.chunk_bytes // max(dtype.itemsize, 4))
    read = self._buffer(("read", dtype), dtype, min(chunk, max(n, 1)))
    tmp = self._buffer(("tmp", acc_dtype), acc_dtype, min(chunk, max(n, 1)))
    started = False
    for src, wi in zip(self.sources, self.weights):
      if wi == 0.0:  # contributes nothing: not read
        continue
      wi = acc_dtype(wi)
      for a in range(0, n, chunk):
        k = min(chunk, n - a)
        x = src.ckpt.read(name, a, k, read)
        t = tmp[:k]
        np.copyto(t, x, casting="unsafe")
        t *= wi
        if started:
          acc[a:a + k] += t
        else:
          acc[a:a + k] = t
      started = True
    if not started:  # every weight 0 (normalize=False)
      acc[:] = 0
    return acc.astype(dtype).reshape(info.shape)  # a fresh array: the buffers are reused

  def close(self) -> None:
    for src in self.sources:
      src.ckpt.close()


class AveragedCheckpoint:
  """The average of the sources with the reading interface of `safetensors_io.Checkpoint`
  (names as the first source's spec renames them: a multimodal gemma3's text model), for
  `pretrained.convert.load_tensors`: each `array(name)` is the averaged tensor."""

  def __init__(self, averager: Averager):
    first = averager.sources[0]
    self.averager = averager
    self._raw = {}
    for name in first.ckpt.names():
      new = first.spec.rename(name)
      if new is not None:
        self._raw[new] = name
    self.files = list(first.ckpt.files)

  def names(self) -> list[str]:
    return sorted(self._raw)

  def __contains__(self, name: str) -> bool:
    return name in self._raw

  def info(self, name: str):
    return self.averager.sources[0].ckpt.info(self._raw[name])

  def array(self, name: str) -> np.ndarray:
    return self.averager(self._raw[name])

  def release(self, name: str) -> None:
    del name  # nothing is mapped

  def close(self) -> None:
    self.averager.close()


def load_averaged_hf(paths: Sequence[str], weights: Sequence[float] | None = None, *,
                     normalize: bool = True, mesh=None, rules=None, dtype: str = "float32",
                     compute_dtype: str | None = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES):
  """The weighted average of Hugging Face directories as warm_jax params on `mesh`
  (`pretrained.load_hf` of the average: the same arrays as loading what `average_hf` writes),
  a `pretrained.Pretrained` whose path is the first directory. Nothing is written."""
  from warm_jax.pretrained import convert
  sources, w = plan_hf(paths, weights, normalize)
  spec = sources[0].spec
  if compute_dtype and compute_dtype != spec.model_cfg.dtype:
    spec = convert.read_spec(sources[0].path, compute_dtype)
  return convert.load_tensors(spec, AveragedCheckpoint(Averager(sources, w, chunk_bytes)),
                              sources[0].path, mesh=mesh, rules=rules, dtype=dtype)


def average_hf(paths: Sequence[str], weights: Sequence[float] | None = None, *, out: str,
               normalize: bool = True, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
               max_shard_bytes: int | None = None,
               on_tensor: Callable[[int, int, str], None] | None = None) -> dict:
  """Writes the weighted average of Hugging Face directories to `out` (a new directory, made
  atomically) and returns its metadata. `on_tensor(i, n, name)` is called after each tensor."""
  import warm_jax
  from warm_jax.pretrained import convert
  from warm_jax.pretrained import safetensors_io as st
  sources, w = plan_hf(paths, weights, normalize, out)
  first = sources[0]
  averager = Averager(sources, w, chunk_bytes)
  info = first.ckpt.info
  names = sorted(first.ckpt.names(), key=lambda n: (info(n).file, info(n).start))
  done = {"count": 0}

  def produce(name):
    out_array = averager(name)
    done["count"] += 1
    if on_tensor is not None:
      on_tensor(done["count"], len(names), name)
    return out_array

  entries = [st.TensorEntry(n, first.ckpt.info(n).shape, first.ckpt.info(n).dtype,
                            lambda n=n: produce(n)) for n in names]
  meta = {"sources": [{"path": os.path.abspath(s.path), "weight": float(wi)}
                      for s, wi in zip(sources, w)],
          "weights": [float(x) for x in w], "normalized": bool(normalize),
          "family": first.spec.family, "kind": first.spec.kind,
          "averaged_with": warm_jax.__version__}

  def fill(tmp):
    st.write_checkpoint(tmp, entries, max_shard_bytes or convert.DEFAULT_SHARD_BYTES,
                        metadata={"format": "pt"})
    shutil.copyfile(os.path.join(first.path, convert.CONFIG_FILE),
                    os.path.join(tmp, convert.CONFIG_FILE))
    convert.copy_tokenizer_files(first.path, tmp)
    convert.write_json(os.path.join(tmp, AVERAGE_FILE), meta)

  try:
    convert.write_directory(out, fill)
  finally:
    averager.close()
  return {**meta, "out": out, "bytes_read": int(sum(s.nbytes for s, wi in zip(sources, w) if wi))}


def read_meta(path: str) -> dict | None:
  """The `warm_jax_average.json` of an averaged directory, or None."""
  f = os.path.join(path, AVERAGE_FILE)
  if not os.path.exists(f):
    return None
  with open(f) as fh:
    return json.load(fh)
