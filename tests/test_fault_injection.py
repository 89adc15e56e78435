"""Fault injection: every file and directory of a real tiny training checkpoint, of an averaged
checkpoint and of the embedded task's data set, damaged in each of several ways, then read the way
warm_jax reads it. Each (path, way, reader) case must end in an InputError naming the damaged
checkpoint (with its step) or data set, or in exactly the result of the undamaged input; no case
may leave a written output that looks complete. Nothing else is allowed.

    python -m pytest tests/test_fault_injection.py -s     # the test; -s shows its counts
    python tests/test_fault_injection.py                  # the counts alone (docs/reliability.md)

Ways: a file is truncated to half its size, has a block in its middle overwritten (every byte
changed), is deleted, or is replaced by an empty directory; a directory is deleted. Where a
directory holds many files of one kind (an OCDBT database's data files), the largest, the smallest
and the middle one by size are damaged; every kind of file is. Readers: a training checkpoint is
resumed the way the training loop resumes (`loop.open_checkpoints`) and streamed into an average
written to disk; an averaged checkpoint is loaded as a reward model (`load_reward_model`) and
averaged again; the data set's every split is read record by record. A resume that finds no
complete step starts afresh: that is its correct result when the damage removed the whole step.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
import shutil
import sys
import tempfile
import time
from typing import Any, Callable

import jax
import numpy as np
import pytest

import conftest  # noqa: F401  (8 fake CPU devices, the XLA flags: as in every test)
from warm_jax import averaging, checkpoints, errors, scoring
from warm_jax.data import embedded
from warm_jax.data.builders import embedded_tldr
from warm_jax.train import loop
from warm_jax.train import reward_model as rm
from warm_jax.train import state as state_lib

WAYS = ("truncate", "overwrite", "delete", "directory")
BLOCK = 256  # bytes overwritten in the middle of a file
PER_KIND = 3  # files of one kind damaged at most: the largest, the smallest, the middle one


def damage(path: str, way: str) -> None:
  if way == "delete":
    shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
  elif way == "directory":
    os.remove(path)
    os.makedirs(path)
  else:
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
      if way == "truncate":
        f.truncate(size // 2)
      else:
        start = max(0, size // 2 - BLOCK // 2)
        f.seek(start)
        block = f.read(BLOCK)
        f.seek(start)
        f.write(bytes(255 - b for b in block))


def _kind(rel: str) -> str:
  """A file's kind: its path with hex names (OCDBT's data files) made '*'."""
  return re.sub(r"[0-9a-f]{16,}", "*", rel)


def targets(root: str) -> list[tuple[str, str]]:
  """(relative path, way) of every case under `root`: every directory (deleted), and every file of
  each kind (at most PER_KIND of a kind) in each way."""
  files, dirs = collections.defaultdict(list), []
  for d, subdirs, names in os.walk(root):
    dirs += [os.path.relpath(os.path.join(d, s), root) for s in subdirs]
    for n in names:
      rel = os.path.relpath(os.path.join(d, n), root)
      files[_kind(rel)].append(rel)
  chosen = []
  for rels in files.values():
    rels = sorted(rels, key=lambda r: (os.path.getsize(os.path.join(root, r)), r))
    chosen += sorted({rels[-1], rels[0], rels[len(rels) // 2]}) if len(rels) > PER_KIND else rels
  return ([(rel, way) for rel in sorted(chosen) for way in WAYS] +
          [(rel, "delete") for rel in sorted(dirs)])


def _same(a, b) -> bool:
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return (jax.tree.structure(a) == jax.tree.structure(b) and
          all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb)))


@dataclasses.dataclass
class Artifact:
  """Something warm_jax writes, the readers that read it, and what each must return."""
  name: str
  root: str                      # a pristine copy, never damaged itself
  readers: dict[str, Callable]   # name -> read(damaged root, scratch dir) -> result
  expected: dict[str, Any]       # name -> the result of the undamaged root
  names: Callable[[str, str], str]  # (damaged root, damaged path) -> what an error must name
  fresh_ok: Callable[[str], bool] = lambda rel: False  # damage after which 'fresh' is correct


@dataclasses.dataclass
class Verdict:
  artifact: str
  path: str
  way: str
  reader: str
  outcome: str                   # 'named error', 'correct result' or 'other'
  detail: str = ""
  seconds: float = 0.0
  directory: bool = False


def _outputs_complete(scratch: str) -> list[str]:
  return [d for d in os.listdir(scratch) if checkpoints.complete_steps(os.path.join(scratch, d))]


def run_case(art: Artifact, rel: str, way: str, reader: str, tmp: str) -> Verdict:
  case = tempfile.mkdtemp(dir=tmp)
  root, scratch = os.path.join(case, "in"), os.path.join(case, "out")
  shutil.copytree(art.root, root)
  os.makedirs(scratch)
  damage(os.path.join(root, rel), way)
  verdict = Verdict(art.name, rel, way, reader, "other",
                    directory=os.path.isdir(os.path.join(art.root, rel)))
  t0 = time.time()
  try:
    got = art.readers[reader](root, scratch)
  except errors.InputError as e:
    named = art.names(root, rel)
    if named in str(e):
      verdict.outcome = "named error"
      left = _outputs_complete(scratch)
      if left:
        verdict.outcome, verdict.detail = "other", f"raised, but left complete outputs {left}"
    else:
      verdict.detail = f"{type(e).__name__} not naming {named}: {str(e)[:300]}"
  except Exception as e:  # noqa: BLE001 (anything else is what the walk looks for)
    verdict.detail = f"{type(e).__name__}: {str(e)[:300]}"
  else:
    if _same(got, art.expected[reader]) or (got == "fresh" and art.fresh_ok(rel)):
      verdict.outcome = "correct result"
    else:
      verdict.detail = "a result that differs from the undamaged input's"
  shutil.rmtree(case, ignore_errors=True)
  verdict.seconds = time.time() - t0
  return verdict


# ------------------------------------------------------------------------------------ artifacts
def _written(out: str) -> dict:
  """What an average wrote, as the digests of its arrays (checked against them when read)."""
  return checkpoints.read_meta(out)["digests"]


def rm_config():
  c = conftest.experiment("reward_model").get_config("tiny")
  c.model.vocab_size = 64
  c.train.update(ckpt_every=1, keep=1)
  return c


def train_checkpoint(tmp: str) -> Artifact:
  """A real training run's checkpoint (params, optimizer state, meta) at step 3, written by the
  loop's Checkpointer, and an intact run to average it with."""
  c = rm_config()
  setup = rm.build(c)
  workdir = os.path.join(tmp, "train")
  state = state_lib.create_state(setup.init_params, setup.tx, jax.random.key(0), setup.shardings)
  ckpt = checkpoints.Checkpointer(os.path.join(workdir, "checkpoints"), save_every=1, keep=1,
                                  config=c)
  ckpt.save(3, state, {"seed": 0, "next_batch": 3}, force=True)
  ckpt.close()
  other = os.path.join(tmp, "other_run")
  shutil.copytree(workdir, other)
  abstract = loop.abstract_state(setup)

  def resume(root, scratch):
    ckpt, restored = loop.open_checkpoints(c, root, abstract)
    ckpt.close()
    if restored is None:
      return "fresh"
    state, data_state, step = restored
    return {"params": state.params, "opt_state": state.opt_state, "step": np.int32(step),
            "data": np.asarray([data_state["seed"], data_state["next_batch"]])}

  def average(root, scratch):
    out = os.path.join(scratch, "avg")
    params, _ = averaging.average_checkpoints([root, other], out=out)
    return {"params": params, "written": _written(out)}

  readers = {"resume": resume, "average": average}
  expected = {k: read(workdir, tempfile.mkdtemp(dir=tmp)) for k, read in readers.items()}
  step = os.path.join("checkpoints", "3")
  return Artifact("training checkpoint", workdir, readers, expected,
                  names=lambda root, rel: (f"checkpoint {os.path.join(root, 'checkpoints')} step 3"
                                           if rel.startswith(step + os.sep) else root),
                  fresh_ok=lambda rel: rel in ("checkpoints", step))


def averaged_checkpoint(tmp: str) -> Artifact:
  """What `python -m warm_jax.average` writes: the average of two runs."""
  from test_averaging import rm_params, save_run
  c = rm_config()
  runs = [save_run(os.path.join(tmp, f"run{i}"), c, rm_params(c, i)) for i in range(2)]
  avg = os.path.join(tmp, "avg")
  averaging.average_checkpoints(runs, out=avg)

  def load(root, scratch):
    return scoring.load_reward_model(root).params

  def average_again(root, scratch):
    out = os.path.join(scratch, "again")
    params, _ = averaging.average_checkpoints([root, runs[0]], [1, 3], out=out)
    return {"params": params, "written": _written(out)}

  readers = {"load_reward_model": load, "average": average_again}
  expected = {k: read(avg, tempfile.mkdtemp(dir=tmp)) for k, read in readers.items()}
  return Artifact("averaged checkpoint", avg, readers, expected,
                  names=lambda root, rel: (f"checkpoint {root} step 0"
                                           if rel.startswith("0" + os.sep) else root))


def data_set(tmp: str) -> Artifact:
  """The embedded task's data set (tiny sizes), every split read record by record."""
  task = embedded.default_config()
  task.sizes.update({k: 8 for k in task.sizes})
  data_dir = os.path.join(tmp, "data")
  task.data_dir = data_dir
  embedded_tldr.load_split(task, "train")  # builds it
  variant = os.path.relpath(embedded_tldr.get_builder(task, prepare=False).data_dir, data_dir)

  def read_all(root, scratch):
    t = task.copy_and_resolve_references()
    t.data_dir = root
    return {s: [sorted(r.items()) for r in embedded_tldr.load_split(t, s)]
            for s in embedded.SPLITS}

  readers = {"every split": read_all}
  expected = {"every split": read_all(data_dir, None)}
  return Artifact("embedded data set", data_dir, readers, expected,
                  names=lambda root, rel: os.path.join(root, variant))


def walk(tmp: str) -> list[Verdict]:
  verdicts = []
  for make in (train_checkpoint, averaged_checkpoint, data_set):
    art = make(tmp)
    for rel, way in targets(art.root):
      for reader in art.readers:
        verdicts.append(run_case(art, rel, way, reader, tmp))
  return verdicts


OUTCOMES = ("named error", "correct result", "other")


def counts(verdicts: list[Verdict]) -> dict:
  """{artifact (and 'all'): {files, directories, cases, and the cases of each outcome}}."""
  out = {}
  for art in [*dict.fromkeys(v.artifact for v in verdicts), "all"]:
    vs = [v for v in verdicts if art in (v.artifact, "all")]
    paths = {(v.artifact, v.path, v.directory) for v in vs}
    out[art] = {"files": sum(not d for *_, d in paths), "directories": sum(d for *_, d in paths),
                "cases": len(vs),
                **{o: sum(v.outcome == o for v in vs) for o in OUTCOMES}}
  return out


def table(c: dict) -> str:
  rows = ["| input | files damaged (4 ways each) | directories deleted | cases (x readers) | "
          "named error | correct result | anything else |", "|---|---:|---:|---:|---:|---:|---:|"]
  for art, r in c.items():
    rows.append(f"| {art} | {r['files']} | {r['directories']} | {r['cases']} | "
                f"{r['named error']} | {r['correct result']} | {r['other']} |")
  return "\n".join(rows)


@pytest.mark.slow
def test_every_damaged_file_is_named_or_read_correctly(tmp_path):
  t0 = time.time()
  verdicts = walk(str(tmp_path))
  c = counts(verdicts)
  print(f"\n{table(c)}\n{time.time() - t0:.0f}s")
  others = [v for v in verdicts if v.outcome == "other"]
  assert not others, "\n".join(f"{v.artifact}: {v.path} {v.way} ({v.reader}): {v.detail}"
                               for v in others)
  # Every way was used, and every input had damage that it named.
  assert {v.way for v in verdicts} == set(WAYS)
  assert all(r["named error"] > 0 for r in c.values())


if __name__ == "__main__":
  with tempfile.TemporaryDirectory() as d:
    t0 = time.time()
    vs = walk(d)
    c = counts(vs)
    print(table(c))
    print(f"{time.time() - t0:.0f}s", file=sys.stderr)
    by = collections.defaultdict(float)
    for v in vs:
      by[(v.artifact, v.reader)] += v.seconds
    print("seconds per reader: " + ", ".join(f"{a} / {r}: {t:.0f}" for (a, r), t in by.items()),
          file=sys.stderr)
    for v in vs:
      if v.outcome == "other":
        print(f"OTHER {v.artifact}: {v.path} {v.way} ({v.reader}): {v.detail}", file=sys.stderr)
