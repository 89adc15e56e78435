"""Jobs of several stages in one workdir (the WARM main job, the RLP pipeline): what ran, with
which config, and whether it finished.

    job = stages.Job(workdir, upstream={"rm": (), "ppo": ("rm",)})
    rm = job.run("rm", rm_config, lambda: train_rm(...))          # JSON-able result
    ppo = job.run("ppo", ppo_config, lambda: train_ppo(...))

Each stage writes into `<workdir>/<stage>/` and its result into `<stage>/stage_result.json`. The
ledger `<workdir>/stages.json` records per stage the fingerprint of its config and, through
them, of every upstream stage's (paths inside the workdir are recorded relative to it, so a moved
workdir stays reusable), whether it finished, and its wall time. On a re-run a finished stage with
an unchanged fingerprint is reused; a directory holding a run of another config is refused (remove
the directory to re-run that stage: the stages that read it then run again too); an unfinished
stage runs again, and its trainers resume from their checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any, Callable

import ml_collections

from warm_jax import checkpoints

RESULT = "stage_result.json"


def fingerprint(config: ml_collections.ConfigDict | dict, workdir: str,
                upstream: tuple[str, ...] = ()) -> str:
  """sha256 (16 hex digits) of a stage's config, with `workdir` written as '<workdir>', and of
  its upstream stages' fingerprints."""
  if not isinstance(config, ml_collections.ConfigDict):
    config = ml_collections.ConfigDict(config)
  blob = config.to_json(sort_keys=True).replace(workdir, "<workdir>") + "".join(upstream)
  return hashlib.sha256(blob.encode()).hexdigest()[:16]


def check_reusable(stage: str, row: dict | None, fingerprint: str, stage_dir: str) -> bool:
  """True if the stage finished with this config; False if it has to run (never ran, was removed
  to be re-run, or did not finish: it resumes); raises if its directory holds a run of another
  config, or one the ledger does not vouch for."""
  if not (os.path.isdir(stage_dir) and os.listdir(stage_dir)):
    return False
  if row is None:
    raise SystemExit(f"{stage_dir} holds a run that this workdir's stages.json does not record "
                     "(or an upstream stage was re-run since): remove it, or use another --workdir")
  if row["fingerprint"] != fingerprint:
    raise SystemExit(f"stage {stage} in {stage_dir} was run with another config (or other "
                     f"upstream stages) than this one: remove {stage_dir} (and the stages after "
                     "it) to re-run it, or use another --workdir")
  return bool(row.get("finished")) and os.path.exists(os.path.join(stage_dir, RESULT))


class Job:
  """The stages of one job, run in the order of `upstream` (stage -> the stages it reads)."""

  def __init__(self, workdir: str, upstream: dict[str, tuple[str, ...]]):
    for stage, ups in upstream.items():
      unknown = [u for u in ups if u not in upstream or list(upstream).index(u) >= list(upstream).index(stage)]
      if unknown:
        raise ValueError(f"stage {stage!r} reads {unknown}: not stages that run before it")
    self.workdir, self.upstream = workdir, dict(upstream)
    self.path = os.path.join(workdir, "stages.json")
    self.rows: dict[str, dict] = {}
    if os.path.exists(self.path):
      with open(self.path) as f:
        self.rows = json.load(f)
    self.prints: dict[str, str] = {}
    self.t0 = time.time()

  def _write(self) -> None:  # atomic: a crash never leaves a half-written ledger
    os.makedirs(self.workdir, exist_ok=True)
    checkpoints.write_atomic(self.path, json.dumps(self.rows, indent=1))

  def dir(self, stage: str) -> str:
    return os.path.join(self.workdir, stage)

  def downstream(self, stage: str) -> list[str]:
    """The stages that read `stage`'s outputs, directly or through others."""
    out: list[str] = []
    for s, ups in self.upstream.items():
      if any(u == stage or u in out for u in ups):
        out.append(s)
    return out

  def seconds(self, stage: str) -> float:
    return float(self.rows.get(stage, {}).get("seconds", 0.0))

  def run(self, stage: str, config, fn: Callable[[], Any], header: str | None = None) -> Any:
    """`fn()` (which writes into `self.dir(stage)`) unless the stage already finished with this
    config; returns its JSON-able result either way."""
    from warm_jax.train.metrics import format_seconds
    if stage not in self.upstream:
      raise ValueError(f"unknown stage {stage!r}; the stages are {list(self.upstream)}")
    missing = [u for u in self.upstream[stage] if u not in self.prints]
    if missing:
      raise ValueError(f"stage {stage!r} runs before the stages it reads: {missing}")
    fp = fingerprint(config, self.workdir, tuple(self.prints[u] for u in self.upstream[stage]))
    self.prints[stage] = fp
    stage_dir, header = self.dir(stage), header or stage
    if check_reusable(stage, self.rows.get(stage), fp, stage_dir):
      with open(os.path.join(stage_dir, RESULT)) as f:
        result = json.load(f)
      print(f"{header}: reusing the finished stage ({format_seconds(self.seconds(stage))} when it "
            "ran)", flush=True)
      return result
    print(f"{header} -> {stage_dir} (job elapsed {format_seconds(time.time() - self.t0)})",
          flush=True)
    resumed = os.path.isdir(stage_dir) and os.listdir(stage_dir)
    self.rows[stage] = {"fingerprint": fp, "finished": False,
                        "seconds": self.seconds(stage) if resumed else 0.0}
    for later in self.downstream(stage):  # their outputs would be stale: they must run again
      self.rows.pop(later, None)
    self._write()
    t0 = time.time()
    result = checkpoints.jsonable(fn())
    os.makedirs(stage_dir, exist_ok=True)
    checkpoints.write_atomic(os.path.join(stage_dir, RESULT), json.dumps(result, indent=1))
    self.rows[stage].update(finished=True, seconds=self.rows[stage]["seconds"] + time.time() - t0)
    self._write()
    return result


def write_report(workdir: str, name: str, result: dict, markdown: str,
                 plot: Callable[[str], None] | None = None) -> None:
  """A job's outputs: <name>.json (the result), <name>.md (the tables, also printed) and, with
  `plot(path)`, <name>.png; each written atomically."""
  out = lambda ext: os.path.join(workdir, f"{name}.{ext}")  # noqa: E731
  checkpoints.write_atomic(out("json"), json.dumps(checkpoints.jsonable(result), indent=1))
  if plot is not None:
    plot(out("png"))
  checkpoints.write_atomic(out("md"), markdown + "\n")
  print(markdown)
  print(f"wrote {out('json')}, {out('md')}" + (f" and {out('png')}" if plot else ""), flush=True)
