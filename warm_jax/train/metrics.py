"""Metric logging (JSONL + TensorBoard event files) and a progress bar with ETA.

Only process 0 writes; other processes get no-op writers, so multi-host runs log once.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Mapping

import jax
import numpy as np


class MetricWriter:
  """Appends `{"step": s, "split": ..., **scalars}` lines to <workdir>/metrics.jsonl and writes the
  same scalars as TensorBoard events under <workdir>/tb/ (tags `<split>/<name>`)."""

  def __init__(self, workdir: str, enabled: bool | None = None):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self._tb = None
    self._jsonl = None
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
      from tensorboardX import SummaryWriter  # imported lazily: only the writing process needs it
      self._tb = SummaryWriter(os.path.join(workdir, "tb"), flush_secs=10)

  def write(self, step: int, scalars: Mapping[str, float], split: str = "train") -> None:
    if not self.enabled:
      return
    scalars = {k: float(np.asarray(v)) for k, v in scalars.items()}
    self._jsonl.write(json.dumps({"step": int(step), "split": split, **scalars}) + "\n")
    self._jsonl.flush()
    for k, v in scalars.items():
      self._tb.add_scalar(f"{split}/{k}", v, int(step))

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      self._tb.close()


def read_metrics(workdir: str, split: str | None = None) -> list[dict]:
  """The JSONL log of a run as a list of dicts (optionally one split only)."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return [r for r in rows if split is None or r["split"] == split]


class Progress:
  """A one-line progress bar with rate and ETA, printed by process 0 to stderr.

  Rewrites its line in place on a terminal; elsewhere (CI, log files) prints a line every
  `every_s` seconds so logs stay short.
  """

  def __init__(self, total: int, desc: str, start: int = 0, every_s: float = 5.0,
               enabled: bool | None = None):
    self.total, self.desc, self.start, self.every_s = total, desc, start, every_s
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self._t0 = time.time()
    self._last = 0.0
    self._tty = sys.stderr.isatty()

  def update(self, n: int, info: str = "", force: bool = False) -> None:
    if not self.enabled:
      return
    now = time.time()
    if not force and now - self._last < (0.2 if self._tty else self.every_s):
      return
    self._last = now
    done = n - self.start
    rate = done / max(now - self._t0, 1e-9)
    eta = (self.total - n) / rate if rate > 0 else float("inf")
    line = (f"{self.desc} {n}/{self.total} [{100.0 * n / max(self.total, 1):5.1f}%] "
            f"{rate:6.2f} it/s elapsed {format_seconds(now - self._t0)} eta {format_seconds(eta)} {info}")
    sys.stderr.write(("\r" + line) if self._tty else line + "\n")
    sys.stderr.flush()

  def close(self, n: int, info: str = "") -> None:
    self.update(n, info, force=True)
    if self.enabled and self._tty:
      sys.stderr.write("\n")


def format_seconds(seconds: float) -> str:
  """h:mm:ss (or ? for an unknown duration)."""
  if seconds == float("inf"):
    return "?"
  seconds = int(seconds)
  return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def save_figure(fig, path: str, dpi: int = 110) -> None:
  """Saves a matplotlib figure atomically (a crash leaves no half-written image), from process 0
  only in a multi-host run, and closes it."""
  import matplotlib.pyplot as plt
  if jax.process_index() == 0:
    root, ext = os.path.splitext(path)
    tmp = f"{root}.tmp{ext}"
    fig.savefig(tmp, dpi=dpi)
    os.replace(tmp, path)
  plt.close(fig)


def format_bytes(n: float) -> str:
  for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
    if abs(n) < 1024 or unit == "TiB":
      return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
    n /= 1024
  return f"{n:.1f} TiB"
