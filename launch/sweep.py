r"""Sweeps: a grid of config overrides over any experiment, run one after another here (or printed
for another launcher), then gathered into one table and one plot.

    python launch/sweep.py --experiment=experiments/interpolate.py --variant=cpu \
        --workdir=runs/sweep_lambda --set=config.a=runs/warm/warm_label_noise/members/rm0 \
        --set=config.b=runs/warm/warm_label_noise/members/rm1 \
        --grid=config.lam=0,0.25,0.5,0.75,1 --metric=validation/accuracy --metric=ood/accuracy

Each point of the grid (the product of every --grid) is one run in <workdir>/<name>, where
<name> joins the point's overrides (`lam=0.25`); its command is the experiment's command line
with --config=<experiment>:<variant>, every --set and the point's overrides. `--run=local` (the
default) runs the points in order, each in its own process, and skips points whose run finished
before (a `sweep_done.json` in its directory), so a stopped sweep resumes; `--run=print` prints the
commands (e.g. to hand to launch/tpu.py or a cluster's job array). `--dry-run` prints the commands
and does nothing else. Gathering reads each finished run's `--result` file (JSON; a dotted --metric
is a path into it) or, by default, the last record of its metrics.jsonl for each split, and
writes <workdir>/sweep.json, sweep.md (one row per point) and sweep.png (each metric against the
first grid axis, one line per combination of the others).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DONE = "sweep_done.json"


def parse_grid(specs: list[str]) -> list[tuple[str, list[str]]]:
  """['config.lam=0,0.5,1', ...] -> [('config.lam', ['0', '0.5', '1']), ...]; each key once."""
  out, seen = [], set()
  for spec in specs:
    key, sep, values = spec.partition("=")
    vals = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not key.startswith("config.") or not vals:
      raise ValueError(f"--grid {spec!r}: expected config.<field>=<v1>,<v2>,...")
    if key in seen:
      raise ValueError(f"--grid {key} given twice")
    seen.add(key)
    out.append((key, vals))
  return out


def point_name(point: dict[str, str]) -> str:
  """A directory name for a grid point: 'lam=0.25,seed=1' (the last part of each key)."""
  name = ",".join(f"{k.split('.')[-1]}={v}" for k, v in point.items())
  return "".join(c if c.isalnum() or c in "=,.-_" else "_" for c in name)


def expand(grid: list[tuple[str, list[str]]]) -> list[dict[str, str]]:
  """Every point of the grid (Cartesian product), the first axis varying slowest."""
  keys = [k for k, _ in grid]
  return [dict(zip(keys, vals)) for vals in itertools.product(*(v for _, v in grid))]


def command(experiment: str, variant: str, sets: list[str], point: dict[str, str],
            workdir: str, python: str = "python") -> list[str]:
  """The command line of one run of the sweep."""
  return ([python, experiment, f"--config={experiment}:{variant}", f"--workdir={workdir}"]
          + [f"--{s}" for s in sets] + [f"--{k}={v}" for k, v in point.items()])


def plan(args) -> list[dict]:
  if not os.path.exists(os.path.join(ROOT, args.experiment)) and not os.path.exists(args.experiment):
    raise SystemExit(f"--experiment={args.experiment}: no such file")
  for s in args.set:
    if not s.startswith("config.") or "=" not in s:
      raise SystemExit(f"--set {s!r}: expected config.<field>=<value>")
  grid = parse_grid(args.grid)
  if not grid:
    raise SystemExit("no --grid given: nothing to sweep")
  runs = []
  for point in expand(grid):
    wd = os.path.join(args.workdir, point_name(point))
    runs.append({"point": point, "workdir": wd,
                 "command": command(args.experiment, args.variant, args.set, point, wd,
                                    args.python)})
  names = [r["workdir"] for r in runs]
  if len(set(names)) != len(names):
    raise SystemExit("two grid points map to one directory name: make the values distinct")
  return runs


def run_local(runs: list[dict]) -> None:
  from warm_jax.checkpoints import write_atomic
  for i, r in enumerate(runs):
    done = os.path.join(r["workdir"], DONE)
    if os.path.exists(done):
      print(f"[{i + 1}/{len(runs)}] {point_name(r['point'])}: finished before, skipped", flush=True)
      continue
    print(f"[{i + 1}/{len(runs)}] {shlex.join(r['command'])}", flush=True)
    t0 = time.time()
    rc = subprocess.call(r["command"], cwd=ROOT)
    if rc != 0:
      raise SystemExit(f"run {point_name(r['point'])} failed (exit {rc}); re-run the sweep to "
                       "resume from it")
    os.makedirs(r["workdir"], exist_ok=True)
    write_atomic(done, json.dumps({"seconds": time.time() - t0, "command": r["command"]}))


def lookup(obj, dotted: str):
  """obj['a']['b'] for 'a.b', or obj['a/b'] style flat keys (metrics) taken whole."""
  if isinstance(obj, dict) and dotted in obj:
    return obj[dotted]
  for part in dotted.split("."):
    if not isinstance(obj, dict) or part not in obj:
      return None
    obj = obj[part]
  return obj


def last_metrics(workdir: str) -> dict:
  """The last record of each split in a run's metrics.jsonl, flattened to 'split/metric'."""
  out = {}
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return out
  with open(path) as f:
    for line in f:
      if line.strip():
        r = json.loads(line)
        out.update({f"{r['split']}/{k}": v for k, v in r.items() if k not in ("split", "step")})
  return out


def gather(runs: list[dict], metrics: list[str], result: str | None) -> list[dict]:
  rows = []
  for r in runs:
    if result:
      path = os.path.join(r["workdir"], result)
      data = json.load(open(path)) if os.path.exists(path) else {}
    else:
      data = last_metrics(r["workdir"])
    row = {"point": r["point"], "finished": os.path.exists(os.path.join(r["workdir"], DONE)),
           "metrics": {m: lookup(data, m) for m in metrics}}
    rows.append(row)
  return rows


def table(rows: list[dict], metrics: list[str]) -> str:
  keys = list(rows[0]["point"])
  head = [k.split(".")[-1] for k in keys] + metrics
  lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
  for r in rows:
    vals = [r["point"][k] for k in keys]
    vals += ["-" if r["metrics"][m] is None else (f"{r['metrics'][m]:.4f}"
             if isinstance(r["metrics"][m], float) else str(r["metrics"][m])) for m in metrics]
    lines.append("| " + " | ".join(vals) + " |")
  return "\n".join(lines)


def plot(rows: list[dict], metrics: list[str], path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  from warm_jax.train.metrics import save_figure
  keys = list(rows[0]["point"])
  x_key, others = keys[0], keys[1:]
  fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.6), squeeze=False)
  groups: dict[tuple, list[dict]] = {}
  for r in rows:
    groups.setdefault(tuple(r["point"][k] for k in others), []).append(r)
  for ax, m in zip(axes[0], metrics):
    for g, rs in groups.items():
      pts = [(float(r["point"][x_key]), r["metrics"][m]) for r in rs
             if isinstance(r["metrics"][m], (int, float))]
      if pts:
        xs, ys = zip(*sorted(pts))
        label = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(others, g)) or None
        ax.plot(xs, ys, "-o", label=label)
    ax.set_xlabel(x_key.split(".")[-1])
    ax.set_title(m, fontsize=9)
    ax.grid(alpha=0.3)
    if others:
      ax.legend(fontsize=7)
  fig.tight_layout()
  save_figure(fig, path, dpi=120)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--experiment", required=True, help="experiments/X.py")
  p.add_argument("--variant", default="cpu")
  p.add_argument("--workdir", required=True)
  p.add_argument("--grid", action="append", default=[], help="config.<field>=v1,v2,... (repeat)")
  p.add_argument("--set", action="append", default=[], help="config.<field>=value for every run")
  p.add_argument("--metric", action="append", default=[], help="what to gather (repeat)")
  p.add_argument("--result", default=None, help="a JSON file in each run dir to gather from")
  p.add_argument("--run", choices=("local", "print"), default="local")
  p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
  p.add_argument("--python", default=sys.executable, help="the interpreter of every run")
  args = p.parse_args(argv)
  runs = plan(args)
  if args.dry_run or args.run == "print":
    for r in runs:
      print(shlex.join(r["command"]))
    return 0
  run_local(runs)
  if args.metric:
    from warm_jax.checkpoints import write_atomic
    rows = gather(runs, args.metric, args.result)
    report = table(rows, args.metric)
    write_atomic(os.path.join(args.workdir, "sweep.json"),
                 json.dumps({"runs": rows, "metrics": args.metric}, indent=1))
    write_atomic(os.path.join(args.workdir, "sweep.md"), report + "\n")
    plot(rows, args.metric, os.path.join(args.workdir, "sweep.png"))
    print(report)
    print(f"wrote {args.workdir}/sweep.json, sweep.md and sweep.png")
  return 0


if __name__ == "__main__":
  sys.exit(main())
