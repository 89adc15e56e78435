"""Random access to one split of a TFDS data set written as ArrayRecord files (the embedded task's
and the papers' data sets), as python dicts checked against the data set's features as they are
read.

    builder = source.open_builder(cls, data_set_dir, config=..., data_dir=...)
    src = source.open_split(builder, "train")                 # every feature of each record
    src = source.open_split(builder, "train", keys=("id", "prompt", "chosen"))
    len(src), src[0], src[3:5], src.__getitems__([7, 2]), list(src)

When the split is opened, each of its files must be there, be a readable ArrayRecord file and hold
the number of records the data set's metadata says (a truncated file holds fewer; ArrayRecord
would read its records back as empty bytes, which TFDS decodes into records whose every field is
None). Each record read must have every feature with a value of the feature's type (a str for
text, an int, a float or a bool for scalars, a dict for nested features). Any failure to read is an
`errors.DamagedInput` / `MissingInput` naming the file and the record's index in it.
"""

from __future__ import annotations

import bisect
import os
from typing import Any, Sequence

import numpy as np
import tensorflow_datasets as tfds

from warm_jax import errors

_FIX = "remove the data set's directory to rebuild it"


def _python(v):
  """A decoded TFDS value as python: str for bytes, numbers and bools for numpy scalars, lists for
  arrays, dicts of those for nested features."""
  if isinstance(v, dict):
    return {k: _python(x) for k, x in v.items()}
  if isinstance(v, bytes):
    return v.decode("utf-8")
  if isinstance(v, (np.ndarray, np.generic)):
    v = v.item() if v.ndim == 0 else v.tolist()
  if isinstance(v, list):  # a Sequence feature (ranking records' lists of answers)
    return [_python(x) for x in v]
  return v.decode("utf-8") if isinstance(v, bytes) else v


def feature_types(features) -> dict:
  """{feature: the python type its decoded value has (a nested dict for nested features)}; object
  for features of other shapes (anything but None)."""
  out: dict[str, Any] = {}
  for name, f in features.items():
    if isinstance(f, tfds.features.FeaturesDict):
      out[name] = feature_types(f)
    elif isinstance(f, tfds.features.Text):
      out[name] = str
    elif tuple(getattr(f, "shape", (None,))) == () and getattr(f, "np_dtype", None) is not None:
      dt = np.dtype(f.np_dtype)
      out[name] = (bool if dt == np.bool_ else int if np.issubdtype(dt, np.integer)
                   else float if np.issubdtype(dt, np.floating) else object)
    else:
      out[name] = object
  return out


_A = {str: "a str", int: "an int", float: "a float", bool: "a bool"}


def check_record(record: dict, types: dict, where: str, prefix: str = "") -> None:
  """DamagedInput naming `where` and the first field of `types` that `record` lacks or holds a
  value of another type in (None: a record read back from a damaged file)."""
  for name, t in types.items():
    v = record.get(name) if isinstance(record, dict) else None
    ok = isinstance(v, dict) if isinstance(t, dict) else (v is not None and isinstance(v, t))
    if not ok:
      want = "a dict" if isinstance(t, dict) else _A.get(t, "a value")
      raise errors.DamagedInput(f"{where}: field {prefix + name!r} is {v!r}, not {want} (the "
                                f"file is damaged); {_FIX}")
    if isinstance(t, dict):
      check_record(v, t, where, f"{prefix}{name}/")


def check_files(instructions) -> None:
  """DamagedInput / MissingInput naming the first file of a split that is not there, is not a
  readable ArrayRecord file, or holds another number of records than the metadata says."""
  from array_record.python import array_record_module
  for fi in instructions:
    path = os.fspath(fi.filename)
    if not os.path.exists(path):
      raise errors.MissingInput(f"data file {path} is missing; {_FIX}")
    with errors.reading(f"data file {path} is not a readable ArrayRecord file", _FIX):
      reader = array_record_module.ArrayRecordReader(path, "readahead_buffer_size:0")
      try:
        ok, n = reader.ok(), reader.num_records()
      finally:
        reader.close()
    if not ok or n != fi.examples_in_shard:
      held = n if ok else "no readable"
      raise errors.DamagedInput(f"data file {path} holds {held} records where the data set's "
                                f"metadata says {fi.examples_in_shard} (it is truncated or "
                                f"damaged); {_FIX}")


class Source:
  """Random access to one split as python dicts: `len(src)`, `src[i]`, `src[i:j]`,
  `src.__getitems__(indices)`, iteration; each record checked as it is read (`check_record`)."""

  def __init__(self, tfds_source, instructions: Sequence, types: dict,
               keys: Sequence[str] | None = None):
    self._src = tfds_source
    self.keys = tuple(keys) if keys is not None else None
    self._types = {k: types[k] for k in self.keys} if self.keys is not None else types
    self._files = [(os.fspath(fi.filename), int(fi.skip)) for fi in instructions]
    self._starts = list(np.cumsum([0] + [int(fi.take) for fi in instructions])[:-1])

  def __len__(self):
    return len(self._src)

  def where(self, i: int) -> str:
    """'data file <path>, record <index in that file>' of the split's record i."""
    f = bisect.bisect_right(self._starts, i) - 1
    path, skip = self._files[f]
    return f"data file {path}, record {skip + i - self._starts[f]}"

  def _record(self, ex, i: int) -> dict:
    rec = _python(ex) if self.keys is None else {k: _python(ex[k]) for k in self.keys}
    check_record(rec, self._types, self.where(i))
    return rec

  def __getitem__(self, i):
    if isinstance(i, slice):
      return [self[j] for j in range(*i.indices(len(self)))]
    n, i = len(self), int(i)
    if i < 0:
      i += n
    if not 0 <= i < n:
      raise IndexError(f"index {i} out of range for a split of {n} records")
    with errors.reading(self.where(i), _FIX):
      ex = self._src[i]
    return self._record(ex, i)

  def __getitems__(self, indices):
    indices = [int(i) for i in indices]
    try:
      exs = self._src.__getitems__(indices)
    except Exception:  # noqa: BLE001 (read them one at a time: the failing one is named)
      return [self[i] for i in indices]
    return [self._record(ex, i) for ex, i in zip(exs, indices)]

  def __iter__(self):
    for i in range(len(self)):
      yield self[i]

  def __repr__(self):
    return f"Source({self._src!r})"


def open_builder(cls, directory: str, **kwargs):
  """`cls(**kwargs)`: a TFDS builder, which reads its prepared data set's metadata
  (`dataset_info.json`) in `directory`; a failure is an InputError naming the directory."""
  with errors.reading(f"data set {directory}", "remove that directory to rebuild it"):
    return cls(**kwargs)


def open_split(builder, split: str, keys: Sequence[str] | None = None) -> Source:
  """The records of `split` of a prepared builder (TFDS slicing allowed: 'train[:100]'), its files
  checked first (`check_files`); `keys`: the features returned (default: all)."""
  where = f"split {split!r} of the data set in {builder.data_dir}"
  with errors.reading(where, _FIX):
    instructions = builder.info.splits[split].file_instructions
  check_files(instructions)
  with errors.reading(where, _FIX):
    tfds_source = builder.as_data_source(split=split)
  return Source(tfds_source, instructions, feature_types(builder.info.features), keys)
