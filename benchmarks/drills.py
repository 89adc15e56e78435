r"""Reliability drill: SIGKILL at random points of training, averaging and data preparation.

    python benchmarks/drills.py                          # 20 kills of each, in runs/drills
    python benchmarks/drills.py --kills=5 --targets=train --workdir=/tmp/drills

For each target, an uninterrupted reference run first, which also times when its output first
appears on disk (after the interpreter, imports and, for averaging, reading the sources: killing
earlier can only leave nothing behind); then cycles of: start the real command in a fresh
directory, SIGKILL it after a random delay drawn uniformly from [output appears, reference ends],
check what it left, restart it, ... until it completes; then compare the completed result with the
reference. Cycles repeat until --kills kills have landed (a process that
finished before its kill time is restarted in the next cycle and does not count as a kill).

Checked after every kill:
- train (`experiments/reward_model.py:tiny`, a checkpoint every step): every checkpoint step that
  reads as complete restores and holds exactly the reference run's params of that step; the
  restart resumes from the last complete step (the `config.resumed_at_<step>.json` it writes).
- average (`python -m warm_jax.average` of 4 checkpoints of 1 GiB): the output either holds no
  complete checkpoint, or holds one equal to the reference average; the restart (same command)
  succeeds. A kill that lands once the output is complete leaves nothing to restart (the command
  refuses to overwrite a complete output, by design).
- data (the embedded task's TFDS build): the data set either reads as not prepared, or is prepared
  and record for record equal to the reference build; the restart (first use) succeeds.
Finally: each completed result equals the uninterrupted one (bit for bit).

Prints one table: the kill window, kills landed, what each kill left, restarts, and anything lost
or inconsistent (also in <workdir>/drills.json). Exit status 1 if anything was.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}


def run_to_end(cmd, log: str, timeout: float = 1800) -> float:
  """Runs `cmd` to completion (raises on failure); returns its wall time."""
  t = time.perf_counter()
  with open(log, "a") as f:
    out = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=ENV, cwd=REPO,
                         timeout=timeout)
  if out.returncode:
    raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}); see {log}")
  return time.perf_counter() - t


def timed_reference(cmd, marker: str, log: str) -> tuple[float, float]:
  """Runs the uninterrupted reference; returns (wall time, when `marker` first appeared: the
  moment its output began to be written)."""
  t = time.perf_counter()
  began = None
  with open(log, "a") as f:
    proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=ENV, cwd=REPO)
    while proc.poll() is None:
      if began is None and os.path.exists(marker):
        began = time.perf_counter() - t
      time.sleep(0.02)
  wall = time.perf_counter() - t
  if proc.returncode:
    raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}); see {log}")
  return wall, wall if began is None else began


def start_and_kill(cmd, delay: float, log: str) -> bool:
  """Starts `cmd`, SIGKILLs it after `delay` s; True if the kill landed (it was still running)."""
  with open(log, "a") as f:
    proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=ENV, cwd=REPO)
    try:
      proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
      proc.send_signal(signal.SIGKILL)
      proc.wait()
      return True
  if proc.returncode:
    raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}) before its kill; see {log}")
  return False


def params_digest(params) -> str:
  import jax
  import numpy as np
  h = hashlib.sha256()
  for path, x in jax.tree_util.tree_flatten_with_path(params)[0]:
    a = np.asarray(x)
    h.update(jax.tree_util.keystr(path).encode() + str(a.dtype).encode() + a.tobytes())
  return h.hexdigest()


# ------------------------------------------------------------------------------------- targets
class Train:
  """A tiny reward-model run of the real experiment, checkpointing every step."""
  name = "train"

  def __init__(self, root: str, steps: int):
    self.root, self.steps = root, steps
    self.data_dir = os.path.join(root, "data")

  def cmd(self, workdir: str) -> list[str]:
    return [PY, "experiments/reward_model.py", "--config=experiments/reward_model.py:tiny",
            f"--workdir={workdir}", f"--config.train.num_steps={self.steps}",
            "--config.train.ckpt_every=1", f"--config.train.keep={self.steps}",
            f"--config.train.eval_every={self.steps}", "--config.train.log_every=5",
            f"--config.data.task.data_dir={self.data_dir}"]

  def marker(self, workdir: str) -> str:
    return os.path.join(workdir, "checkpoints")

  def prepare(self, log: str) -> None:
    # The data set is built once, before the timed reference run: kills land in training.
    run_to_end(self.cmd(os.path.join(self.root, "warmup")), log)

  def digests(self, workdir: str) -> dict[int, str]:
    from warm_jax import checkpoints
    ckpt = os.path.join(workdir, "checkpoints")
    return {s: params_digest(checkpoints.restore_params(ckpt, s))
            for s in checkpoints.complete_steps(ckpt)}

  def reference(self, workdir: str):
    return self.digests(workdir)

  def after_kill(self, workdir: str, ref) -> tuple[str, list[str], dict]:
    """(what the kill left, problems, the complete steps' digests: what the restart must resume
    from)."""
    got = self.digests(workdir)
    bad = [f"checkpoint {s} differs from the reference's" for s, d in got.items() if ref.get(s) != d]
    state = ("before the first checkpoint" if not got else "mid-training" if max(got) < self.steps
             else "after the last checkpoint")
    return state, bad, got

  def done(self, workdir: str) -> bool:
    return False  # a finished run restarted just re-evaluates: always restart

  def after_restart(self, workdir: str, before: dict | None) -> list[str]:
    """The restart after a kill resumed from the last complete step (before: the digests then)."""
    if not before:
      return []
    last = max(before)
    if last >= self.steps:
      return []
    if not os.path.exists(os.path.join(workdir, f"config.resumed_at_{last}.json")):
      return [f"the restart did not resume from the last complete step {last}"]
    return []

  def final(self, workdir: str, ref) -> list[str]:
    from warm_jax import checkpoints
    last = params_digest(checkpoints.restore_params(os.path.join(workdir, "checkpoints"),
                                                    self.steps))
    return [] if last == ref[self.steps] else ["final params differ"]


class Average:
  """`python -m warm_jax.average` of 4 checkpoints of --average_mb MiB each."""
  name = "average"

  def __init__(self, root: str, mb: int):
    self.root, self.mb = root, mb
    self.sources = [os.path.join(root, "sources", f"rm{i}") for i in range(4)]

  def cmd(self, workdir: str) -> list[str]:
    return [PY, "-m", "warm_jax.average", *sum((["--ckpt", s] for s in self.sources), []),
            "--weights", "1", "2", "3", "4", "--out", os.path.join(workdir, "avg")]

  def marker(self, workdir: str) -> str:
    return os.path.join(workdir, "avg")

  def prepare(self, log: str) -> None:
    import numpy as np
    from warm_jax import checkpoints
    n = self.mb * 2 ** 20 // 4 // 8  # 8 float32 arrays per checkpoint
    for i, path in enumerate(self.sources):
      if checkpoints.complete_steps(path):
        continue
      rng = np.random.default_rng(i)
      params = {f"layer_{j}": {"kernel": rng.standard_normal(n, np.float32)} for j in range(8)}
      checkpoints.save_params(path, params, {"drill": i})

  def reference(self, workdir: str):
    from warm_jax import checkpoints
    return params_digest(checkpoints.restore_params(os.path.join(workdir, "avg")))

  def after_kill(self, workdir: str, ref) -> tuple[str, list[str], str]:
    from warm_jax import checkpoints
    out = os.path.join(workdir, "avg")
    if not checkpoints.complete_steps(out):
      left = "partial output left" if os.path.isdir(out) and os.listdir(out) else "no output"
      return left, [], left
    same = params_digest(checkpoints.restore_params(out)) == ref
    return "complete output", [] if same else ["a complete-looking output differs"], ""

  def done(self, workdir: str) -> bool:
    """A complete output: the same command would (rightly) refuse to overwrite it."""
    from warm_jax import checkpoints
    return bool(checkpoints.complete_steps(os.path.join(workdir, "avg")))

  def after_restart(self, workdir: str, before) -> list[str]:
    return []

  def final(self, workdir: str, ref) -> list[str]:
    return [] if self.reference(workdir) == ref else ["final average differs"]


class Data:
  """The embedded task's TFDS build (cpu-scale sizes, so it takes seconds)."""
  name = "data"

  def __init__(self, root: str):
    self.root = root

  def cmd(self, workdir: str) -> list[str]:
    code = ("from warm_jax import configs; "
            "from warm_jax.data.builders import embedded_tldr as b; "
            "c = configs.load_experiment('reward_model').get_config('cpu').data.task; "
            f"b.get_builder(c, data_dir={os.path.join(workdir, 'data')!r})")
    return [PY, "-c", code]

  def marker(self, workdir: str) -> str:
    return os.path.join(workdir, "data", "embedded_tldr")

  def prepare(self, log: str) -> None:
    pass

  @staticmethod
  def _builder(workdir: str):
    from warm_jax import configs
    from warm_jax.data.builders import embedded_tldr as b
    task = configs.load_experiment("reward_model").get_config("cpu").data.task
    return b, task, os.path.join(workdir, "data")

  def digest(self, workdir: str) -> str | None:
    """sha256 of every record of every split; None if the data set is not prepared."""
    from warm_jax.data import embedded
    b, task, data_dir = self._builder(workdir)
    if not b.get_builder(task, data_dir, prepare=False).is_prepared():
      return None
    h = hashlib.sha256()
    for split in embedded.SPLITS:
      for rec in b.load_split(task, split, data_dir):
        h.update(json.dumps(rec, sort_keys=True, default=str).encode())
    return h.hexdigest()

  def reference(self, workdir: str):
    return self.digest(workdir)

  def after_kill(self, workdir: str, ref) -> tuple[str, list[str], str]:
    got = self.digest(workdir)
    if got is None:
      left = glob.glob(os.path.join(workdir, "data", "*", "*", "incomplete.*"))
      state = "partial build left" if left else "nothing built"
      return state, [], state
    return "prepared", [] if got == ref else ["a prepared-looking data set differs"], "prepared"

  def done(self, workdir: str) -> bool:
    return False  # a restart of a finished build just loads it

  def after_restart(self, workdir: str, before) -> list[str]:
    return []

  def final(self, workdir: str, ref) -> list[str]:
    return [] if self.digest(workdir) == ref else ["final data set differs"]


# ---------------------------------------------------------------------------------------- drill
def drill(target, kills: int, rng, log: str) -> dict:
  root = target.root
  target.prepare(log)
  ref_dir = os.path.join(root, "reference")
  shutil.rmtree(ref_dir, ignore_errors=True)
  wall, began = timed_reference(target.cmd(ref_dir), target.marker(ref_dir), log)
  ref = target.reference(ref_dir)
  landed, restarts, cycles, where, problems, delays = 0, 0, 0, {}, [], []
  while landed < kills:
    cycles += 1
    work = os.path.join(root, f"cycle_{cycles}")
    shutil.rmtree(work, ignore_errors=True)
    before, finished = None, False
    while landed < kills and not finished:
      if before is not None:
        restarts += 1
      delay = rng.uniform(began, wall)
      if not start_and_kill(target.cmd(work), delay, log):
        problems += target.after_restart(work, before)
        finished = True  # it ended before its kill time
        break
      landed += 1
      delays.append(delay)
      state, bad, before = target.after_kill(work, ref)
      where[state] = where.get(state, 0) + 1
      problems += [f"kill {landed}: {b}" for b in bad]
      print(f"  {target.name}: kill {landed}/{kills} left {state}", file=sys.stderr, flush=True)
      finished = target.done(work)  # killed after its work was complete: nothing to restart
    if not finished:  # the cycle's last restart runs to the end
      restarts += 1
      run_to_end(target.cmd(work), log)
      problems += target.after_restart(work, before)
    problems += [f"cycle {cycles}: {p}" for p in target.final(work, ref)]
    shutil.rmtree(work, ignore_errors=True)  # checked: keep the disk use to one cycle's
  return {"target": target.name, "reference_s": wall, "output_appears_s": began,
          "kill_delays_s": delays, "kills": landed, "restarts": restarts,
          "cycles": cycles, "where": where, "problems": problems}


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--kills", type=int, default=20, help="kills to land per target")
  p.add_argument("--targets", default="train,average,data")
  p.add_argument("--workdir", default="runs/drills")
  p.add_argument("--train_steps", type=int, default=40)
  p.add_argument("--average_mb", type=int, default=1024, help="size of each averaged checkpoint")
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args()
  import numpy as np
  rng = np.random.default_rng(args.seed)
  root = os.path.abspath(args.workdir)
  make = {"train": lambda: Train(os.path.join(root, "train"), args.train_steps),
          "average": lambda: Average(os.path.join(root, "average"), args.average_mb),
          "data": lambda: Data(os.path.join(root, "data"))}
  names = [t for t in args.targets.split(",") if t]
  for t in names:
    if t not in make:
      raise SystemExit(f"--targets: unknown target {t!r}; choose from {sorted(make)}")
  results = []
  for t in names:
    target = make[t]()
    os.makedirs(target.root, exist_ok=True)
    log = os.path.join(target.root, "drill.log")
    print(f"{t}: reference run, then {args.kills} kills (log: {log})", file=sys.stderr, flush=True)
    results.append(drill(target, args.kills, rng, log))
  print("| target | kill window s (output appears - reference ends) | kills landed | restarts | "
        "cycles completed | what each kill left | lost or inconsistent |")
  print("|---|---|---|---|---|---|---|")
  for r in results:
    where = ", ".join(f"{k}: {v}" for k, v in sorted(r["where"].items()))
    print(f"| {r['target']} | {r['output_appears_s']:.1f} - {r['reference_s']:.1f} | {r['kills']} | "
          f"{r['restarts']} | {r['cycles']} | {where} | {len(r['problems'])} |")
  for r in results:
    for prob in r["problems"]:
      print(f"{r['target']}: {prob}")
  with open(os.path.join(root, "drills.json"), "w") as f:
    json.dump(results, f, indent=1)
  sys.exit(1 if any(r["problems"] for r in results) else 0)


if __name__ == "__main__":
  main()
