"""TFDS builders: the embedded task (`embedded_tldr`) and the papers' data sets (`registry`)."""

from __future__ import annotations

import contextlib
import fcntl
import os


@contextlib.contextmanager
def file_lock(path: str):
  """An exclusive advisory lock on `path` (created if missing) for the duration of the block:
  concurrent first builds of one data set on a host run one after the other."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "a+") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)
