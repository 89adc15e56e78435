"""Jobs of several stages in one workdir (the WARM main job, RLP, the soups, ...): declared as a
list of stages, run in order; what ran, with which config, and whether it finished.

    STAGES = [
        stages.study("pretrain", lm.pretrain),
        stages.study("sft", lm.sft, inputs={"init_from": "pretrain"}),
        stages.Stage("samples", run=make_samples, config=lambda ctx: {...}, upstream=("sft",)),
    ]
    ctx = stages.run_job(config, workdir, STAGES)      # ctx.results[name]: each stage's result

A `Stage` names what it runs (`run(ctx)`), what its fingerprint covers (`config(ctx)`), the
stages it reads (`upstream`) and, optionally, its section of the job's report (`report`, with
`plot` and `claims`); `study(name, main, inputs)` makes the common one: a study's
`main(config, workdir)` on the job config's section `name`, with the directories of the stages it
reads filled into its path fields. Adding a stage to a job is adding one entry to its list (and
its section to the job's config).

Each stage writes into `<workdir>/<stage>/` and its result into `<stage>/stage_result.json`. The
ledger `<workdir>/stages.json` records per stage the fingerprint of its config and, through
them, of every upstream stage's (paths inside the workdir are recorded relative to it, so a moved
workdir stays reusable), whether it finished, and its wall time. On a re-run a finished stage with
an unchanged fingerprint is reused; a directory holding a run of another config is refused (remove
the directory to re-run that stage: the stages that read it then run again too); an unfinished
stage runs again, and its trainers resume from their checkpoints.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from typing import Any, Callable, Sequence

import ml_collections

from warm_jax import checkpoints, configs
from warm_jax.errors import InputError

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
    raise InputError(f"{stage_dir} holds a run that this workdir's stages.json does not record "
                     "(or an upstream stage was re-run since): remove it, or use another --workdir")
  if row["fingerprint"] != fingerprint:
    raise InputError(f"stage {stage} in {stage_dir} was run with another config (or other "
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


@dataclasses.dataclass
class Context:
  """What a stage sees: the job's config and workdir, and the results of the stages run so far."""
  config: ml_collections.ConfigDict
  workdir: str
  job: "Job"
  results: dict = dataclasses.field(default_factory=dict)

  def dir(self, stage: str) -> str:
    return self.job.dir(stage)


@dataclasses.dataclass(frozen=True)
class Stage:
  """One stage of a job.

  name: its directory under the workdir and its key in `Context.results`.
  run: ctx -> the stage's JSON-able result (it writes into ctx.dir(name)).
  config: ctx -> what the stage's fingerprint covers (a ConfigDict or a JSON-able dict); the
    fingerprints of its upstream stages are added, so re-running one of them re-runs this one.
  upstream: the stages it reads (they come before it in the list).
  header: what the progress line says (default: the name).
  report: results -> its markdown section of the job's report (it may summarise its upstream
    stages' results too); plot: a file of its directory the report shows (copied to
    <workdir>/plots/); claims: results -> [(claim, held, the numbers)] checked against a paper.
  """
  name: str
  run: Callable[[Context], Any]
  config: Callable[[Context], Any]
  upstream: tuple[str, ...] = ()
  header: str = ""
  report: Callable[[dict], str] | None = None
  plot: str | None = None
  claims: Callable[[dict], list] | None = None


SEED_STRIDE = 1000  # a job's seed s offsets its stochastic stages' seeds by s * SEED_STRIDE


def seed_suffix(seed: int) -> str:
  """The suffix of a stage's name for a job's seed: none for seed 0 (the job's plain stages)."""
  return "" if seed == 0 else f"_seed{seed}"


def seed_fields(config, path: str = "") -> list[str]:
  """The dotted paths of a config's seed fields (named `seed` or `*_seed`) that a study's seed
  varies: every one outside a `task` section (the embedded task's seed makes the data itself,
  which every seed of a study shares)."""
  out = []
  for key, value in config.items():
    if hasattr(value, "items"):
      if key != "task":
        out += seed_fields(value, f"{path}{key}.")
    elif key == "seed" or key.endswith("_seed"):
      out.append(path + key)
  return out


def reseeded(config: ml_collections.ConfigDict, seed: int) -> ml_collections.ConfigDict:
  """A copy of a study's config for one of its config.seeds: every seed field (`seed_fields`)
  offset by seed * SEED_STRIDE, and no `seeds` field (the copy is one run). Seed 0's copy
  computes what the config computes."""
  c = ml_collections.ConfigDict(config.to_dict())
  if "seeds" in c:
    del c["seeds"]
  for path in seed_fields(c):
    *parents, key = path.split(".")
    node = c
    for p in parents:
      node = node[p]
    node[key] = node[key] + seed * SEED_STRIDE
  return c


def seed_workdir(workdir: str, seed: int) -> str:
  """Where a study's run under one of its config.seeds lives: seed 0's is the workdir itself
  (the plain run, the one its report shows), another seed's <workdir>/seed<s>."""
  return workdir if seed == 0 else os.path.join(workdir, f"seed{seed}")


def job_seeds(config) -> list[int]:
  """config.seeds in order (seed 0 first); (0,) for a config without the field."""
  return sorted(config.get("seeds", (0,)))


# config.seeds of a job: seed 0 is the run its report shows, the others give the spread.
SEEDS_RULES = (
    configs.sequence("seeds", lambda s: configs.is_int(s) and 0 <= s < 1000,
                     "distinct seeds in [0, 1000)", distinct=True, optional=True),
    configs.Rule("seeds", lambda v, c: 0 in v, "a list that includes 0 (the run the report shows)",
                 optional=True),
)

Claim = tuple  # (what, its numbers: a tuple of floats, held: bool or None where nothing is claimed)


def seeds_table(per_seed: dict[int, list[Claim]], what_varies: str) -> str:
  """Markdown: a study's headline numbers under every seed (`per_seed`: seed -> [(what, numbers,
  held)], the same rows in the same order for every seed), their mean +- standard deviation over
  the seeds and, for a claim, in how many seeds it held."""
  import numpy as np
  seeds = sorted(per_seed)
  fmt = lambda xs: " / ".join(f"{x:.3f}" for x in xs)  # noqa: E731
  lines = [f"## Over {len(seeds)} seeds", "",
           f"{what_varies} Seed 0 is the run above. Mean +- standard deviation over the seeds.", "",
           "| | " + " | ".join(f"seed {s}" for s in seeds) + " | mean +- sd | held |",
           "|---|" + "---|" * (len(seeds) + 2)]
  for k, (what, _, claimed) in enumerate(per_seed[seeds[0]]):
    rows = [per_seed[s][k] for s in seeds]
    vals = np.asarray([r[1] for r in rows], np.float64)
    sd = vals.std(0, ddof=1) if len(seeds) > 1 else np.zeros(vals.shape[1])
    spread = " / ".join(f"{m:.3f} +- {d:.3f}" for m, d in zip(vals.mean(0), sd))
    held = "-" if claimed is None else f"{sum(bool(r[2]) for r in rows)}/{len(seeds)}"
    lines.append(f"| {what} | " + " | ".join(fmt(r[1]) for r in rows) + f" | {spread} | {held} |")
  return "\n".join(lines)


def over_seeds(run: Callable[[ml_collections.ConfigDict, str], dict],
               config: ml_collections.ConfigDict, workdir: str, name: str,
               headline: Callable[[dict], list[Claim]], what_varies: str) -> dict:
  """A study run under each of config.seeds: `run(reseeded(config, s), seed_workdir(workdir, s))`
  (seed 0 first: the plain run, unchanged by the other seeds); with more than one seed,
  <workdir>/<name>_seeds.{md,json}: `headline(result)` of every seed's result in `seeds_table`.
  Returns seed 0's result."""
  check_seeds(config)
  seeds = job_seeds(config)
  results = {}
  for s in seeds:
    if len(seeds) > 1:
      print(f"== seed {s} ({seeds.index(s) + 1} of {len(seeds)}) -> {seed_workdir(workdir, s)}",
            flush=True)
    results[s] = run(reseeded(config, s), seed_workdir(workdir, s))
  if len(seeds) > 1:
    per_seed = {s: headline(r) for s, r in results.items()}
    write_report(workdir, f"{name}_seeds",
                 {"seeds": seeds, "workdirs": {s: seed_workdir(workdir, s) for s in seeds},
                  "headline": per_seed}, seeds_table(per_seed, what_varies))
  return results[seeds[0]]


def check_seeds(config) -> None:
  """Raises InputError when config.seeds is not a list of distinct seeds in [0, 1000) with 0."""
  configs.check(config, SEEDS_RULES)


def study(name: str, main: Callable[[ml_collections.ConfigDict, str], Any],
          inputs: dict[str, str] | None = None, section: str | None = None, seed: int = 0,
          **kwargs) -> Stage:
  """A stage running `main(config, workdir)` of a study on the job config's section `section`
  (default: the stage's `name`), with each field of `inputs` (config field -> upstream stage) set
  to that stage's directory and the job's seed added to the section's seed; `seed`: one of the
  job's config.seeds, offsetting it by seed * SEED_STRIDE (the same study repeated under other
  seeds: its stage named with `seed_suffix`). `kwargs`: the other fields of `Stage`."""
  inputs = dict(inputs or {})
  section = section or name

  def config(ctx: Context) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict(ctx.config[section].to_dict())
    c.seed = ctx.config[section].seed + ctx.config.get("seed", 0) + seed * SEED_STRIDE
    for field, stage in inputs.items():
      c[field] = ctx.dir(stage)
    return c

  upstream = tuple(dict.fromkeys([*inputs.values(), *kwargs.pop("upstream", ())]))
  return Stage(name, run=lambda ctx: main(config(ctx), ctx.dir(name)), config=config,
               upstream=upstream, **kwargs)


def run_job(config: ml_collections.ConfigDict, workdir: str, stages: Sequence[Stage]) -> Context:
  """Runs `stages` in order in `workdir` (see the module docstring: a finished stage with an
  unchanged fingerprint is reused, a changed one refused, an unfinished one resumed), each with a
  "[k/n] header" progress line; each stage's config is written to <workdir>/configs/<name>.json.
  Returns the context: `ctx.results` holds every stage's result, `ctx.job` the ledger. Programs
  are cached across stages (`compilation_cache`)."""
  compilation_cache(workdir)
  job = Job(workdir, {s.name: tuple(s.upstream) for s in stages})
  ctx = Context(config, workdir, job)
  os.makedirs(os.path.join(workdir, "configs"), exist_ok=True)
  for k, stage in enumerate(stages):
    cfg = stage.config(ctx)
    if not isinstance(cfg, ml_collections.ConfigDict):
      cfg = ml_collections.ConfigDict(cfg)
    checkpoints.write_atomic(os.path.join(workdir, "configs", f"{stage.name}.json"),
                             cfg.to_json_best_effort(indent=2))
    ctx.results[stage.name] = job.run(stage.name, cfg, lambda: stage.run(ctx),
                                      header=f"[{k + 1}/{len(stages)}] {stage.header or stage.name}")
  return ctx


def compilation_cache(workdir: str) -> None:
  """A job's stages compile many of the same programs (RL's sampling, scoring and update against
  each reward; every member's evaluation; their params are arguments, not constants): jax's
  persistent compilation cache in <workdir>/jax_cache lets each compile once, and a resumed job
  reuse them, unless the user configured a cache of their own (JAX_COMPILATION_CACHE_DIR). Only
  programs that took a second or more to compile are written."""
  import jax
  if not jax.config.jax_compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", os.path.join(os.path.abspath(workdir),
                                                                "jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def report_sections(stages: Sequence[Stage], results: dict) -> list[str]:
  """The report sections of the stages that have one, in order."""
  return [s.report(results) for s in stages if s.report is not None]


def claims(stages: Sequence[Stage], results: dict) -> list[tuple[str, bool | None, str]]:
  """Every stage's claims, in order: (claim, held, the numbers); held is None where the results
  cannot decide the claim (the numbers say why)."""
  return [c for s in stages if s.claims for c in s.claims(results)]


def claims_table(stages: Sequence[Stage], results: dict) -> str:
  """Markdown: every stage's claims, checked against the results (held: yes / **no** / not
  measured)."""
  lines = ["| claim | held? | numbers |", "|---|---|---|"]
  for claim, held, numbers in claims(stages, results):
    verdict = "not measured" if held is None else "yes" if held else "**no**"
    lines.append(f"| {claim} | {verdict} | {numbers} |")
  return "\n".join(lines)


def copy_plots(stages: Sequence[Stage], workdir: str) -> str:
  """Copies each stage's plot to <workdir>/plots/; returns that directory."""
  import shutil
  plots = os.path.join(workdir, "plots")
  os.makedirs(plots, exist_ok=True)
  for s in stages:
    if s.plot:
      shutil.copyfile(os.path.join(workdir, s.name, s.plot), os.path.join(plots, s.plot))
  return plots


def record_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """<workdir>/config.json: the config of the latest run of a study or job whose outputs are
  recomputed on every run (so the file is replaced, atomically; a trainer's own run keeps the
  config of its first start, see `loop.write_config`)."""
  from warm_jax.train import loop
  loop.write_config(config, workdir, "config.json", overwrite=True)


def write_report(workdir: str, name: str, result: dict, markdown: str,
                 plot: Callable[[str], None] | None = None, plot_file: str | None = None) -> None:
  """A study's outputs: <name>.json (the result), <name>.md (the tables, also printed) and, with
  `plot(path)`, <name>.png (or `plot_file`); the text files written atomically."""
  os.makedirs(workdir, exist_ok=True)
  out = lambda ext: os.path.join(workdir, f"{name}.{ext}")  # noqa: E731
  png = os.path.join(workdir, plot_file) if plot_file else out("png")
  checkpoints.write_atomic(out("json"), json.dumps(checkpoints.jsonable(result), indent=1))
  if plot is not None:
    plot(png)
  checkpoints.write_atomic(out("md"), markdown + "\n")
  print(markdown)
  print(f"wrote {out('json')}, {out('md')}" + (f" and {png}" if plot else ""), flush=True)
