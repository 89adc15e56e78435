"""The common record schema of every real data set, its validation, and strict readers of the
raw download formats (JSON lines / JSON arrays, plain or gzip / xz / bzip2 compressed).

Two kinds of records (plain python dicts):

* **preference** records (TL;DR comparisons, HH-RLHF, AlpacaFarm human preferences, PKU-SafeRLHF):
  `id` (str, unique in its data set), `prompt` (str), `chosen` (str), `rejected` (str), and
  optionally `labels`: {objective: int}, one entry per objective the pair was labelled on, whose
  value is the index of the preferred response in (chosen, rejected): **0 = chosen is preferred,
  1 = rejected is preferred** under that objective. The objective the pair was ordered by always
  has label 0; the others (e.g. 'safer' when ordered by 'better') may be 0 or 1 (MODPO's margin).
* **prompt** records (TL;DR SFT posts, AlpacaFarm instruction splits, IMDb prefixes):
  `id`, `prompt` and, where the data set has one, `response` (a reference / SFT target).

`prompt` holds everything the policy conditions on (formatted with the data set's template), and
`chosen` / `rejected` / `response` only the continuation, so `prompt + response` is the full text.
Builders may add a few extra typed fields (e.g. `sentiment`, `is_chosen_safe`); they are listed in
each builder's docstring.

`validate_record` raises `ValueError` naming the source file, the record (line number or array
index) and the field. A malformed record is never skipped: building the data set stops there.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
from typing import Any, Iterator

PREFERENCE = "preference"
PROMPT = "prompt"
KINDS = (PREFERENCE, PROMPT)

REQUIRED_FIELDS = {
    PREFERENCE: ("id", "prompt", "chosen", "rejected"),
    PROMPT: ("id", "prompt"),
}
OPTIONAL_TEXT_FIELDS = {PREFERENCE: (), PROMPT: ("response",)}


def where(source, index) -> str:
  """'<file>, record <index>': how every error of this module names a record."""
  return f"{os.fspath(source)}, record {index}"


def _err(source, index, msg: str) -> ValueError:
  return ValueError(f"{where(source, index)}: {msg}")


def infer_kind(record: dict) -> str:
  return PREFERENCE if ("chosen" in record or "rejected" in record) else PROMPT


def validate_record(record: Any, *, source, index, kind: str | None = None) -> dict:
  """Checks one record of the common schema and returns it (unchanged).

  `kind` is 'preference' or 'prompt' (inferred from the keys when None). Checks: the record is a
  dict; every required field is present, a `str`, and not empty or whitespace only; the optional
  `response` (prompt records) is a non-empty str when present; `labels`, when present, is a dict of
  str objective -> int in {0, 1}; chosen != rejected is NOT required (real data has a few ties).
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
  if "labels" in record:
    labels = record["labels"]
    if kind != PREFERENCE:
      raise _err(source, index, "field 'labels' is only allowed on preference records")
    if not isinstance(labels, dict):
      raise _err(source, index, f"field 'labels' must be a dict, got {type(labels).__name__}")
    for obj, v in labels.items():
      if not isinstance(obj, str) or not obj:
        raise _err(source, index, f"field 'labels' has a bad objective name {obj!r}")
      if isinstance(v, bool) or not isinstance(v, int) or v not in (0, 1):
        raise _err(source, index, f"field 'labels/{obj}' must be the int 0 or 1, got {v!r}")
  return record


def _check_text(value, name, source, index):
  if not isinstance(value, str):
    raise _err(source, index, f"field {name!r} must be a str, got {type(value).__name__}")
  if not value.strip():
    raise _err(source, index, f"field {name!r} is empty")


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


def open_text(path) -> io.TextIOBase:
  """Opens a downloaded file as UTF-8 text, decompressing gzip / xz / bzip2 by their magic bytes
  (TFDS renames downloads, so the extension cannot be trusted; TFDS cannot extract .xz at all)."""
  path = os.fspath(path)
  with open(path, "rb") as f:
    head = f.read(6)
  for magic, opener in _MAGIC:
    if head.startswith(magic):
      return opener(path, "rt", encoding="utf-8")
  return open(path, "rt", encoding="utf-8")


def iter_json_lines(path, *, source=None) -> Iterator[tuple[int, Any]]:
  """(line number from 1, parsed object) for every line of a JSON-lines file. A blank line in the
  middle or an unparsable line raises ValueError naming the file and line; trailing blank lines are
  allowed (files end with a newline)."""
  source = source or path
  pending_blank = None
  with open_text(path) as f:
    for n, line in enumerate(f, start=1):
      if not line.strip():
        pending_blank = pending_blank or n
        continue
      if pending_blank is not None:
        raise _err(source, pending_blank, "blank line inside a JSON-lines file")
      try:
        yield n, json.loads(line)
      except json.JSONDecodeError as e:
        raise _err(source, n, f"not valid JSON ({e.msg} at column {e.colno})") from None


def iter_json_array(path, *, source=None) -> Iterator[tuple[int, Any]]:
  """(index from 0, element) for a file holding one JSON array."""
  source = source or path
  with open_text(path) as f:
    try:
      data = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(
          f"{os.fspath(source)}: not valid JSON ({e.msg} at line {e.lineno})") from None
  if not isinstance(data, list):
    raise ValueError(f"{os.fspath(source)}: expected a JSON array, got {type(data).__name__}")
  yield from enumerate(data)
