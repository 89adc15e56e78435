"""The common record schema of every real data set, its validation, and strict readers of the
raw download formats (JSON lines / JSON arrays, plain or gzip / xz / bzip2 compressed; Parquet).

Three kinds of records (plain python dicts):

* **preference** records (TL;DR comparisons, HH-RLHF, AlpacaFarm human preferences, PKU-SafeRLHF):
  `id` (str, unique in its data set), `prompt` (str), `chosen` (str), `rejected` (str), and
  optionally `labels`: {objective: int}, one entry per objective the pair was labelled on, whose
  value is the index of the preferred response in (chosen, rejected): **0 = chosen is preferred,
  1 = rejected is preferred** under that objective. The objective the pair was ordered by always
  has label 0; the others (e.g. 'safer' when ordered by 'better') may be 0 or 1 (MODPO's margin).
* **prompt** records (TL;DR SFT posts, AlpacaFarm instruction splits, IMDb prefixes):
  `id`, `prompt` and, where the data set has one, `response` (a reference / SFT target).
* **ranking** records (RewardBench 2: one prompt, several answers known to be correct and several
  known to be wrong): `id`, `prompt`, `chosen` and `rejected`, each a non-empty list of non-empty
  str (the correct answers and the incorrect ones; a ranking record has as many correct answers as
  `len(chosen)`, so no separate count is stored). The kind is never inferred: a builder or caller
  asks for it (`kind='ranking'`).

`prompt` holds everything the policy conditions on (formatted with the data set's template), and
`chosen` / `rejected` / `response` only the continuation, so `prompt + response` is the full text.
Builders may add a few extra typed fields (e.g. `sentiment`, `is_chosen_safe`); they are listed in
each builder's docstring.

`validate_record` raises `ValueError` naming the source file, the record (line number or array
index) and the field. A malformed record is never skipped: building the data set stops there.
The readers likewise raise `ValueError` naming the file (and the line where it is known) for
anything they cannot read: invalid JSON, bytes that are not UTF-8, JSON nested too deeply to parse,
a truncated or corrupt compressed stream; never a raw json / UnicodeDecodeError / EOFError.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import re
import zlib
from typing import Any, Iterator

PREFERENCE = "preference"
PROMPT = "prompt"
RANKING = "ranking"
KINDS = (PREFERENCE, PROMPT, RANKING)

REQUIRED_FIELDS = {
    PREFERENCE: ("id", "prompt", "chosen", "rejected"),
    PROMPT: ("id", "prompt"),
    RANKING: ("id", "prompt"),
}
OPTIONAL_TEXT_FIELDS = {PREFERENCE: (), PROMPT: ("response",), RANKING: ()}
# Ranking records: these fields hold non-empty lists of non-empty str.
TEXT_LIST_FIELDS = {PREFERENCE: (), PROMPT: (), RANKING: ("chosen", "rejected")}


def where(source, index) -> str:
  """'<file>, record <index>': how every error of this module names a record."""
  return f"{os.fspath(source)}, record {index}"


def _err(source, index, msg: str) -> ValueError:
  return ValueError(f"{where(source, index)}: {msg}")


def infer_kind(record: dict) -> str:
  return PREFERENCE if ("chosen" in record or "rejected" in record) else PROMPT


def validate_record(record: Any, *, source, index, kind: str | None = None) -> dict:
  """Checks one record of the common schema and returns it (unchanged).

  `kind` is 'preference', 'prompt' or 'ranking' ('preference' or 'prompt' inferred from the keys
  when None). Checks: the record is a dict; every required field is present, a `str`, and not
  empty or whitespace only; a ranking record's `chosen` and `rejected` are non-empty lists of such
  str; the optional
  `response` (prompt records) is a non-empty str when present; `labels`, when present (preference
  records only), is a dict of objective (a str, not empty or whitespace only) -> int in {0, 1} (not
  a bool); chosen != rejected is NOT required (real data has a few ties). Other keys are allowed.
  Raises ValueError("<source>, record <index>: field '<name>' ...").
  """
  if not isinstance(record, dict):
    raise _err(source, index, f"expected a dict record, got {type(record).__name__}")
  kind = kind or infer_kind(record)
  if kind not in KINDS:
    raise ValueError(f"unknown record kind {kind!r}; choose one of {KINDS}")
  for name in REQUIRED_FIELDS[kind]:
    if name not in record:
      raise _err(source, index, f"field {name!r} is missing")
    _check_text(record[name], name, source, index)
  for name in OPTIONAL_TEXT_FIELDS[kind]:
    if name in record:
      _check_text(record[name], name, source, index)
  for name in TEXT_LIST_FIELDS[kind]:
    if name not in record:
      raise _err(source, index, f"field {name!r} is missing")
    _check_text_list(record[name], name, source, index)
  if "labels" in record:
    labels = record["labels"]
    if kind != PREFERENCE:
      raise _err(source, index, "field 'labels' is only allowed on preference records")
    if not isinstance(labels, dict):
      raise _err(source, index, f"field 'labels' must be a dict, got {type(labels).__name__}")
    for obj, v in labels.items():
      if not isinstance(obj, str) or not obj.strip():
        raise _err(source, index, f"field 'labels' has a bad objective name {obj!r}")
      if isinstance(v, bool) or not isinstance(v, int) or v not in (0, 1):
        raise _err(source, index, f"field 'labels/{obj}' must be the int 0 or 1, got {v!r}")
  return record


def _check_text(value, name, source, index):
  if not isinstance(value, str):
    raise _err(source, index, f"field {name!r} must be a str, got {type(value).__name__}")
  if not value.strip():
    raise _err(source, index, f"field {name!r} is empty")


def _check_text_list(value, name, source, index):
  if not isinstance(value, list):
    raise _err(source, index, f"field {name!r} must be a list of str, got {type(value).__name__}")
  if not value:
    raise _err(source, index, f"field {name!r} is an empty list")
  for j, item in enumerate(value):
    _check_text(item, f"{name}/{j}", source, index)


# ------------------------------------------------------------------------------ raw-format readers
def get(obj: Any, path: str, typ, *, source, index, allow_empty: bool = False):
  """`obj[a][b]...` for path 'a/b/...' (list indices allowed), checked to be of type `typ`.

  Used on the raw download records before they are mapped to the common schema, so an error says
  which raw key is wrong (e.g. "field 'summaries/1/text' is missing").
  """
  cur = obj
  for part in path.split("/"):
    if isinstance(cur, dict) and part in cur:
      cur = cur[part]
    elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
      cur = cur[int(part)]
    else:
      raise _err(source, index, f"field {path!r} is missing")
  types = typ if isinstance(typ, tuple) else (typ,)
  if cur is None or (isinstance(cur, bool) and bool not in types) or not isinstance(cur, types):
    names = "/".join(t.__name__ for t in types)
    raise _err(source, index, f"field {path!r} must be {names}, got {type(cur).__name__}")
  if isinstance(cur, str) and not allow_empty and not cur.strip():
    raise _err(source, index, f"field {path!r} is empty")
  return cur


def choice(obj, path, allowed, *, source, index):
  """A raw int field that must be one of `allowed` (e.g. choice in (0, 1), preference in (1, 2))."""
  v = get(obj, path, int, source=source, index=index)
  if v not in allowed:
    raise _err(source, index, f"field {path!r} must be one of {tuple(allowed)}, got {v!r}")
  return v


_MAGIC = ((b"\x1f\x8b", gzip.open), (b"\xfd7zXZ\x00", lzma.open), (b"BZh", bz2.open))


def _opener(path):
  """gzip.open / lzma.open / bz2.open by the file's magic bytes (TFDS renames downloads, so the
  extension cannot be trusted; TFDS cannot extract .xz at all), else the plain `open`."""
  with open(path, "rb") as f:
    head = f.read(6)
  for magic, opener in _MAGIC:
    if head.startswith(magic):
      return opener
  return open


def open_text(path) -> io.TextIOBase:
  """Opens a downloaded file as UTF-8 text, decompressing gzip / xz / bzip2 (`_opener`)."""
  path = os.fspath(path)
  return _opener(path)(path, "rt", encoding="utf-8")


# What a truncated or corrupt compressed stream raises while it is read (gzip.BadGzipFile and bz2's
# "Invalid data stream" are OSErrors).
_STREAM_ERRORS = (EOFError, OSError, lzma.LZMAError, zlib.error)
# Bytes that are not UTF-8, as errors="surrogateescape" decodes them (a decoded UTF-8 text never
# holds a lone surrogate).
_UNDECODABLE = re.compile("[\udc80-\udcff]")


def _parse(text: str, source, index):
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    raise _err(source, index, f"not valid JSON ({e.msg} at column {e.colno})") from None
  except RecursionError:
    raise _err(source, index, "JSON nested too deeply to parse") from None


def iter_json_lines(path, *, source=None) -> Iterator[tuple[int, Any]]:
  """(line number from 1, parsed object) for every line of a JSON-lines file. A blank line in the
  middle, an unparsable line or one that is not UTF-8 raises ValueError naming the file and line;
  trailing blank lines are allowed (files end with a newline). A truncated or corrupt compressed
  file raises ValueError naming the file and the line after the last one read."""
  source = source or path
  pending_blank = None
  n = 0
  with _open_lines(path) as f:
    lines = iter(f)
    while True:
      try:
        line = next(lines)
      except StopIteration:
        return
      except _STREAM_ERRORS as e:
        raise _err(source, n + 1, f"cannot read the file ({type(e).__name__}: {e}); truncated or "
                   "corrupt?") from None
      n += 1
      if not line.strip():
        pending_blank = pending_blank or n
        continue
      if pending_blank is not None:
        raise _err(source, pending_blank, "blank line inside a JSON-lines file")
      bad = _UNDECODABLE.search(line)
      if bad:
        raise _err(source, n, f"not UTF-8 text (an undecodable byte at column {bad.start() + 1})")
      yield n, _parse(line, source, n)


def _open_lines(path) -> io.TextIOBase:
  """`open_text`, with bytes that are not UTF-8 kept (as lone surrogates) for a per-line error."""
  path = os.fspath(path)
  return _opener(path)(path, "rt", encoding="utf-8", errors="surrogateescape")


def _read_bytes(path, source) -> bytes:
  """The whole (decompressed) content of a file; a truncated / corrupt stream: ValueError."""
  path = os.fspath(path)
  opener = _opener(path)
  if opener is open:
    with open(path, "rb") as f:
      return f.read()
  try:
    with opener(path, "rb") as f:
      return f.read()
  except _STREAM_ERRORS as e:
    raise ValueError(f"{os.fspath(source)}: cannot read the file ({type(e).__name__}: {e}); "
                     "truncated or corrupt?") from None


def iter_json_array(path, *, source=None) -> Iterator[tuple[int, Any]]:
  """(index from 0, element) for a file holding one JSON array. Unparsable JSON, bytes that are not
  UTF-8 or a truncated compressed file raise ValueError naming the file (and the line)."""
  source = source or path
  raw = _read_bytes(path, source)
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    line = raw[:e.start].count(b"\n") + 1
    raise ValueError(f"{os.fspath(source)}: not UTF-8 text (an undecodable byte at line "
                     f"{line})") from None
  try:
    data = json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(
        f"{os.fspath(source)}: not valid JSON ({e.msg} at line {e.lineno})") from None
  except RecursionError:
    raise ValueError(f"{os.fspath(source)}: JSON nested too deeply to parse") from None
  if not isinstance(data, list):
    raise ValueError(f"{os.fspath(source)}: expected a JSON array, got {type(data).__name__}")
  yield from enumerate(data)


def iter_parquet(path, *, source=None, batch_rows: int = 1024) -> Iterator[tuple[int, Any]]:
  """(row index from 0, row as a dict of python values) for every row of a Parquet file (how
  Hugging Face publishes data sets: lists come back as lists, structs as dicts, nulls as None).
  Read with pyarrow, which TFDS already depends on, `batch_rows` rows at a time. A file that is
  not Parquet, or a truncated or corrupt one, raises ValueError naming the file."""
  import pyarrow as pa
  import pyarrow.parquet as pq
  source = source or path
  try:
    f = pq.ParquetFile(os.fspath(path))
  except (pa.ArrowException, OSError) as e:
    raise ValueError(f"{os.fspath(source)}: not a readable Parquet file ({type(e).__name__}: "
                     f"{e})") from None
  index = 0
  with f:
    batches = f.iter_batches(batch_size=batch_rows)
    while True:
      try:
        batch = next(batches)
      except StopIteration:
        return
      except (pa.ArrowException, OSError) as e:
        raise _err(source, index, f"cannot read the Parquet file from here ({type(e).__name__}: "
                   f"{e}); truncated or corrupt?") from None
      for row in batch.to_pylist():
        yield index, row
        index += 1
