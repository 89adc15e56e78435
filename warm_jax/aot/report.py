"""The tables of `python -m warm_jax.aot`: printed as each stage is measured, and as a page."""

from __future__ import annotations

import dataclasses
import os
import sys
import time


from warm_jax import configs
from warm_jax.aot import check, topologies
from warm_jax.aot.experiments import trained
from warm_jax.errors import InputError
from warm_jax.pretrained.presets import PRESETS

OWN = "own"  # --model: the experiment's own architecture


def experiments_of(config, filename: str | None, names, variant: str) -> list:
  """[(experiment name, config)] from --config (its file names the experiment) or from
  --experiment names at --variant."""
  if config is not None:
    if names:
      raise InputError("give --config or --experiment, not both")
    return [(os.path.splitext(os.path.basename(filename))[0], config)]
  if not names:
    raise InputError("give --config=experiments/<name>.py:<variant> or --experiment=<names>")
  return [(n, configs.load_experiment(n).get_config(variant)) for n in names]


@dataclasses.dataclass
class Block:
  """The rows of one experiment on one slice with one model, and each stage's verdict."""
  experiment: str
  slice: topologies.Slice
  model: str
  rows: list
  verdicts: dict  # stage -> [] (fits), [overrides] (fits with them) or None (no fix found)


@dataclasses.dataclass
class Result:
  blocks: list

  @property
  def all_fit(self) -> bool:
    return all(v == [] for b in self.blocks for v in b.verdicts.values())


def _check_inputs(topology_names, models, utilisation) -> list[topologies.Slice]:
  slices = [topologies.slice_of(n) for n in topology_names]
  for m in models:
    if m != OWN and m not in PRESETS:
      raise InputError(f"--model={m!r}: choose '{OWN}' or one of {sorted(PRESETS)}")
  if not 0 < utilisation <= 1:
    raise InputError(f"--utilisation={utilisation}: must be in (0, 1]")
  topologies.require_libtpu()
  return slices


def run(runs: list, topology_names, models, utilisation: float, suggest: bool,
        out=None) -> Result:
  """Measures every stage of every experiment on every slice with every model, printing each
  block's table as it is done (and to stderr, each setting as it starts compiling, with the time
  so far). Every input is checked before anything compiles."""
  slices = _check_inputs(topology_names, models, utilisation)
  plans = [(name, cfg, trained(name, cfg)) for name, cfg in runs]
  blocks = []
  t0 = time.time()
  for sl in slices:
    devices = topologies.devices(sl.name)
    for name, cfg, stages in plans:
      for model in models:
        block = Block(name, sl, model, [], {})
        for t in stages:
          stage_cfg = check.with_model(t.config(cfg), "" if model == OWN else model)
          where = f"aot: {name} on {sl.name}, model {model}, {t.label}"
          log = lambda line, where=where: print(  # noqa: E731
              f"{where}: {line} ({_seconds(time.time() - t0)} so far)", file=sys.stderr,
              flush=True)
          rows, verdict = check.check_stage(t, stage_cfg, sl, devices, model, suggest, log)
          block.rows += rows
          block.verdicts[t.label] = verdict
        blocks.append(block)
        print(text(block, utilisation), file=out or sys.stdout, flush=True)
  return Result(blocks)


def _seconds(s: float) -> str:
  if s < 1:
    return f"{s * 1e3:.1f} ms"
  return f"{s:.2f} s" if s < 100 else f"{s / 60:.1f} min"


HEADER = ("stage", "program", "model (params)", "mesh (data, fsdp, tensor)", "remat",
          "batch (per device)", "arguments GiB", "outputs GiB", "temporaries GiB",
          "peak / HBM GiB", "fits", "TFLOP per device", "at peak", "at {u:.0%}")


def table(rows, chip: topologies.Chip, utilisation: float) -> str:
  """The markdown table of `rows`; a fix's rows are marked (fix)."""
  g = lambda n: f"{n / topologies.GiB:.2f}"  # noqa: E731
  head = [h.format(u=utilisation) for h in HEADER]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in rows:
    b, s = r.budget, r.setting
    cells = [r.stage + (" (fix)" if r.suggested else ""), r.program,
             f"{r.model} ({r.params / 1e9:.2f}B)", ", ".join(map(str, s.mesh)), s.remat,
             f"{s.batch} ({s.batch / s.ways:g})", g(b.argument), g(b.output - b.alias),
             ("not compiled: the arguments exceed HBM" if b.skipped else
              g(b.temp) + (" (compiler: out of HBM)" if b.refused else "")),
             f"{g(b.peak)} / {g(chip.hbm_bytes)}", "yes" if b.fits(chip) else "**no**",
             f"{b.flops / 1e12:.2f}", _seconds(b.seconds(chip)),
             _seconds(b.seconds(chip, utilisation))]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def verdict_lines(block: Block) -> list[str]:
  out = []
  for stage, v in block.verdicts.items():
    if v == []:
      out.append(f"- {stage}: fits as configured")
    elif v is None:
      out.append(f"- {stage}: **does not fit**, and nothing tried fits (FSDP over every device, "
                 "rematerialisation, one row per device)")
    else:
      out.append(f"- {stage}: **does not fit as configured**; fits with " + " ".join(v))
  return out


def title(block: Block) -> str:
  sl = block.slice
  return (f"{block.experiment} on {sl.name} ({sl.chips} x TPU {sl.chip.name}, "
          f"{sl.chip.hbm_bytes / topologies.GiB:.0f} GiB HBM, {sl.chip.peak_flops / 1e12:.0f} "
          f"TFLOP/s bf16 per chip), model: {block.model}")


def text(block: Block, utilisation: float) -> str:
  return "\n".join([f"## {title(block)}", "", table(block.rows, block.slice.chip, utilisation),
                    "", *verdict_lines(block), ""])


def _describe(fix: check.Setting, given: check.Setting) -> str:
  parts = []
  if fix.mesh != given.mesh:
    parts.append(f"mesh {','.join(map(str, fix.mesh))}")
  if fix.remat != given.remat:
    parts.append(f"remat {fix.remat}")
  if fix.batch != given.batch:
    parts.append(f"batch {fix.batch}")
  return ", ".join(parts)


def summary(result: Result) -> str:
  """One line per (experiment stage, model), one column per slice: whether it fits as
  configured (and its largest program's peak memory per device), or the fix that fits."""
  slices = list(dict.fromkeys(b.slice.name for b in result.blocks))
  cells: dict = {}
  for b in result.blocks:
    for stage, v in b.verdicts.items():
      given = [r for r in b.rows if r.stage == stage and not r.suggested]
      fixed = [r for r in b.rows if r.stage == stage and r.suggested]
      peak = lambda rows: f"{max(r.budget.peak for r in rows) / topologies.GiB:.1f} GiB"  # noqa
      params = f"{given[0].params / 1e9:.2f}B"
      cell = (f"fits ({peak(given)})" if v == [] else f"no ({peak(given)})" if v is None else
              f"with {_describe(fixed[0].setting, given[0].setting)} ({peak(fixed)})")
      cells.setdefault((b.experiment, stage, f"{b.model} ({params})"), {})[b.slice.name] = cell
  lines = ["| experiment: stage | model | " + " | ".join(slices) + " |",
           "|" + "---|" * (len(slices) + 2)]
  for (exp, stage, model), per in cells.items():
    lines.append(f"| {exp}: {stage} | {model} | "
                 + " | ".join(per.get(s, "") for s in slices) + " |")
  return "\n".join(lines)


def chips_table(result: Result) -> str:
  chips = list(dict.fromkeys(b.slice.chip for b in result.blocks))
  lines = ["| chip | HBM GiB | bf16 peak TFLOP/s | HBM bandwidth GB/s |", "|---|---|---|---|"]
  for c in chips:
    lines.append(f"| TPU {c.name} | {c.hbm_bytes / topologies.GiB:.0f} | {c.peak_flops / 1e12:.0f} "
                 f"| {c.hbm_bandwidth / 1e9:.0f} |")
  return "\n".join(lines)


def page(result: Result, command: str, utilisation: float, seconds: float) -> str:
  """A markdown page: how the numbers are made, the summary, every block's table."""
  import jax
  from importlib import metadata
  try:
    libtpu = metadata.version("libtpu")
  except metadata.PackageNotFoundError:
    libtpu = "?"
  return "\n".join([
      "# Paper scale: what fits which TPU slice", "",
      "Generated by the command below (`warm_jax.aot`; do not edit by hand: re-run it). Every "
      "program is compiled for the slice's devices as libtpu describes them, on a machine "
      "without a TPU; nothing is allocated.", "",
      "```bash", command, "```", "",
      f"jax {jax.__version__}, libtpu {libtpu}; {len(result.blocks)} blocks in "
      f"{seconds / 60:.0f} min on a shared 2-core CPU machine.", "",
      "How to read it: memory is XLA's account of the compiled program per device (arguments: "
      "parameters, optimiser state, batch; outputs not aliased to donated arguments; "
      "temporaries), its peak against the chip's HBM. FLOPs are the matrix multiplies of the "
      "traced program with every loop counted as often as it runs (layers under scan, PPO's "
      "minibatch updates, the sampler's tokens), spread evenly over the devices. Times are "
      f"those FLOPs at the chip's bf16 peak and at {utilisation:.0%} of it; a sampler's are at "
      "least its parameters re-read from HBM once per generated token. A stage that does not "
      "fit as configured is compiled again with FSDP over every device, then rematerialisation, "
      "then halved batches, and the first that fits is shown (`fix`).", "",
      chips_table(result), "",
      "## Summary", "", summary(result), "",
      "## Every program", "",
      *[text(b, utilisation).replace("## ", "### ", 1) for b in result.blocks]])
