r"""The main job: WARM (arXiv 2401.12187) end to end on the embedded task, in one output directory.

    python experiments/warm.py --config=experiments/warm.py:cpu --workdir=runs/warm
    python experiments/warm.py --config=experiments/warm.py:cpu --workdir=runs/warm \
        --config.warm_rl.rl.kl_coef=0.003          # any stage's field can be overridden

Stages, each the `main` of its own experiment file with the sub-config of the same name:
  pretrain          the shared LM on the task's corpus                     (pretrain.py)
  sft               supervised fine-tuning; keeps the checkpoints Baklava starts from  (sft.py)
  warm_label_noise  M diverse RMs on 25%-corrupted labels; members vs ENS vs WARM  (warm_label_noise.py)
  warm_lmc          accuracy along the interpolation path, and vs M          (warm_lmc.py)
  warm_bon          best-of-N up to 256: single RM vs ENS vs WARM, gold-judged (warm_bon.py)
  warm_rl           REINFORCE against a single RM and against WARM; win rate  (warm_rl.py)
The paths between stages (init_from, label_noise) are filled in here. Each stage writes into
`<workdir>/<stage>/`; its exact config goes to `<workdir>/configs/<stage>.json`. A finished stage
is reused on a re-run when its config (and every upstream stage's) is unchanged; a stage whose
config changed is refused (remove its directory, or use another --workdir); an unfinished one
resumes from its checkpoints. At the end the job writes `<workdir>/results.md` (every table, and
each paper claim checked against the numbers: held or not) and copies the plots to
`<workdir>/plots/`. `python experiments/publish_warm.py <workdir>` puts them into the README.
Variants: tiny (tests, ~1 min), cpu (2 CPU cores, <= 20 min), paper (the paper's settings).
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import sys
import time

import ml_collections

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pretrain  # noqa: E402
import sft  # noqa: E402
import warm_bon  # noqa: E402
import warm_label_noise  # noqa: E402
import warm_lmc  # noqa: E402
import warm_rl  # noqa: E402

from warm_jax import configs  # noqa: E402

VARIANTS = ("tiny", "cpu", "paper")
STAGES = ("pretrain", "sft", "warm_label_noise", "warm_lmc", "warm_bon", "warm_rl")
MODULES = {"pretrain": pretrain, "sft": sft, "warm_label_noise": warm_label_noise,
           "warm_lmc": warm_lmc, "warm_bon": warm_bon, "warm_rl": warm_rl}
PLOTS = {"warm_label_noise": "memorisation.png", "warm_lmc": "lmc.png", "warm_bon": "bon.png",
         "warm_rl": "rl.png"}


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = configs.experiment_config(variant, VARIANTS, "experiments/warm.py")
  del c.mesh, c.sharding  # each stage's own config holds its mesh
  for stage in STAGES:
    c[stage] = MODULES[stage].get_config(variant)
  if variant == "cpu":
    # In-distribution texts are <= 75 tokens: 80 instead of pretrain.py's 112 saves 30% of the
    # compute of the LM stages (the OOD split, up to 107 tokens, is only scored, at 112).
    for stage in ("pretrain", "sft"):
      c[stage].data.max_len = 80
    c.pretrain.train.update(num_steps=800, eval_every=400, ckpt_every=400)
  elif variant == "paper":
    c.sft.train.num_steps = 12_000  # B.3: SFT for 12k steps; Baklava starts from 8k, 10k, 12k
  # SFT keeps the checkpoints the reward models start from (Baklava).
  steps = sorted(s for s in c.warm_label_noise.diversity.init_steps if s > 0)
  c.sft.train.keep = max(c.sft.train.keep, len(steps))
  if steps:
    c.sft.train.ckpt_every = math.gcd(*steps, c.sft.train.num_steps)
  return c


def stage_configs(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Each stage's config with the paths of its inputs (the upstream stages' directories)."""
  d = {s: os.path.join(workdir, s) for s in STAGES}
  out = {s: ml_collections.ConfigDict(config[s].to_dict()) for s in STAGES}
  for s in STAGES:
    out[s].seed = config[s].seed + config.seed
  out["sft"].init_from = d["pretrain"]
  out["warm_label_noise"].init_from = d["sft"]
  out["warm_lmc"].label_noise = d["warm_label_noise"]
  out["warm_bon"].init_from = d["sft"]
  out["warm_bon"].label_noise = d["warm_label_noise"]
  out["warm_rl"].init_from = d["sft"]
  out["warm_rl"].label_noise = d["warm_label_noise"]
  return out


UPSTREAM = {"pretrain": (), "sft": ("pretrain",), "warm_label_noise": ("sft",),
            "warm_lmc": ("warm_label_noise",), "warm_bon": ("sft", "warm_label_noise"),
            "warm_rl": ("sft", "warm_label_noise")}


def validate(config: ml_collections.ConfigDict) -> None:
  """Cross-stage checks, before any compute: the Baklava steps must be kept SFT checkpoints."""
  sft_train = config.sft.train
  for s in config.warm_label_noise.diversity.init_steps:
    if s != -1 and (s <= 0 or s > sft_train.num_steps or s % sft_train.ckpt_every):
      raise ValueError(f"config.warm_label_noise.diversity.init_steps has {s}, which the SFT run "
                       f"never saves (config.sft.train.num_steps={sft_train.num_steps}, "
                       f"ckpt_every={sft_train.ckpt_every})")
  kept = sorted(s for s in config.warm_label_noise.diversity.init_steps if s > 0)
  if kept and sft_train.num_steps - sft_train.ckpt_every * (sft_train.keep - 1) > kept[0]:
    raise ValueError(f"config.sft.train.keep={sft_train.keep} does not keep SFT step {kept[0]} "
                     "(a Baklava init); raise it")
  # Each study's own checks, so a bad value fails now rather than after the training stages.
  ln = config.warm_label_noise
  warm_label_noise.validate(ln)
  subsets = (*warm_label_noise.TRAIN_SUBSETS, ln.eval.rank_split, *ln.eval.splits)
  warm_lmc.validate(config.warm_lmc, ln.members, subsets)
  warm_bon.validate(config.warm_bon, ln.members)
  warm_rl.validate(config.warm_rl, ln.members)


def main(config: ml_collections.ConfigDict, workdir: str) -> dict:
  from warm_jax import stages
  from warm_jax.train.metrics import format_seconds
  validate(config)
  cfgs = stage_configs(config, workdir)
  os.makedirs(os.path.join(workdir, "configs"), exist_ok=True)
  job = stages.Job(workdir, UPSTREAM)
  results = {}
  for k, stage in enumerate(STAGES):
    with open(os.path.join(workdir, "configs", f"{stage}.json"), "w") as f:
      f.write(cfgs[stage].to_json_best_effort(indent=2))
    results[stage] = job.run(stage, cfgs[stage],
                             lambda: MODULES[stage].main(cfgs[stage], job.dir(stage)),
                             header=f"[{k + 1}/{len(STAGES)}] {stage}")
  plots = os.path.join(workdir, "plots")
  os.makedirs(plots, exist_ok=True)
  for stage, name in PLOTS.items():
    shutil.copyfile(os.path.join(workdir, stage, name), os.path.join(plots, name))
  report = results_markdown(config, results, job.rows)
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(report)
  print(report)
  print(f"wrote {workdir}/results.md and {plots}/ (job took "
        f"{format_seconds(time.time() - job.t0)} this time)")
  return results


# ----------------------------------------------------------------------------------------------
# The report: tables from each stage and the paper's claims checked against them.


def claims(results: dict) -> list[tuple[str, bool, str]]:
  """(claim, held, the numbers) for each of the paper's claims this job can test."""
  out = []
  ln = results["warm_label_noise"]
  rows = ln["rows"]
  for split in [s for s in ln["subsets"] if s not in warm_label_noise.TRAIN_SUBSETS
                and s != ln["rank_split"]]:
    w, e, i = rows["warm"][split], rows["ens"][split], rows["mean_individual"][split]
    numbers = f"WARM {w:.3f}, ENS {e:.3f}, mean individual {i:.3f}"
    out.append((f"label noise, {split}: WARM >= ENS (accuracy)", w >= e, numbers))
    out.append((f"label noise, {split}: ENS >= mean of the individual RMs", e >= i, numbers))
  w, e, i = (rows[k]["train_corrupted"] for k in ("warm", "ens", "mean_individual"))
  out.append(("label noise: WARM memorises fewer corrupted labels than ENS and than the mean "
              "individual RM",
              w < e and w < i, f"agreement with the flipped labels: WARM {w:.3f}, ENS {e:.3f}, "
              f"mean individual {i:.3f}"))
  lmc = results["warm_lmc"]
  for split in [s for s in lmc["subsets"] if s != "train_corrupted"]:
    b = lmc["barrier"][split]
    out.append((f"interpolation path, {split}: no barrier (WA >= Diag at every lambda)", b <= 0,
                f"max over lambda of Diag - WA = {b:+.3f}"))
  bon = results["warm_bon"]["curves"]
  wkey = f"WARM {max(results['warm_bon']['ms'])}"
  single, warm = bon["single"], bon[wkey]
  n_max = single[-1]["n"]
  peak = lambda rows: max(rows, key=lambda r: r["gold"])
  out.append((f"best-of-N: {wkey} ends higher in gold than the single RM (N = {n_max})",
              warm[-1]["gold"] > single[-1]["gold"],
              f"gold at N = {n_max}: {wkey} {warm[-1]['gold']:.3f}, single {single[-1]['gold']:.3f}"
              f"; peaks {peak(warm)['gold']:.3f} (N = {peak(warm)['n']}) vs "
              f"{peak(single)['gold']:.3f} (N = {peak(single)['n']})"))
  out.append((f"best-of-N: {wkey}'s picks win more than half the time against the single RM's "
              f"(N = {n_max})", warm[-1]["win_rate_vs_single"] > 0.5,
              f"win rate {warm[-1]['win_rate_vs_single']:.1%}"))
  rl = results["warm_rl"]
  s, w = rl["curves"]["single"], rl["curves"]["warm"]
  out.append(("RL: WARM delays reward hacking (higher gold at the end of training)",
              w["gold_end"] > s["gold_end"],
              f"gold at the end: WARM {w['gold_end']:.3f} (peak {w['gold_peak']:.3f} at step "
              f"{w['peak_step']}), single {s['gold_end']:.3f} (peak {s['gold_peak']:.3f} at step "
              f"{s['peak_step']})"))
  f = rl["final"]["warm_vs_single"]
  out.append((f"RL: the WARM (M = {rl['m']}) policy wins more than half the time against the "
              "single-RM policy (paper: 79.4% at M = 6)", f["win_rate"] > 0.5,
              f"win rate {f['win_rate']:.1%} +- {f['win_rate_stderr']:.1%} on {f['n']} prompts "
              f"(ties {f['ties']:.1%})"))
  return out


def results_markdown(config, results: dict, ledger: dict) -> str:
  from warm_jax.train.metrics import format_seconds
  ln, lmc, bon, rl = (results[s] for s in STAGES[2:])
  times = ", ".join(f"{s} {format_seconds(ledger[s]['seconds'])}" for s in STAGES)
  total = sum(ledger[s]["seconds"] for s in STAGES)
  lines = [
      f"# WARM on the embedded task (`experiments/warm.py:{config.variant}`)", "",
      f"Generated by `{command_line(config)}` "
      f"on {platform.machine()} with {os.cpu_count()} CPU cores; stage wall times: {times} "
      f"(total {format_seconds(total)}).", "",
      "## Pre-training and SFT", "",
      f"- pre-training: held-out corpus loss {results['pretrain'].get('corpus_validation/loss', float('nan')):.3f}",
      f"- SFT: held-out SFT loss {results['sft'].get('sft_validation/loss', float('nan')):.3f}", "",
      f"## 1. Label noise: {ln['counts']['train_corrupted']} of {ln['train_pairs']} training "
      f"labels flipped ({ln['counts']['train_corrupted'] / ln['train_pairs']:.1%})",
      "",
      "Pairwise accuracy; `train corrupted` is agreement with the flipped labels (memorisation: "
      f"lower is better); members ranked on `{ln['rank_split']}`. Subset sizes: "
      + ", ".join(f"{k} {v}" for k, v in ln["counts"].items()) + ".", "",
      warm_label_noise.table(ln), "", "![memorisation](plots/memorisation.png)", "",
      "## 2. Linear mode connectivity", "", warm_lmc.table(lmc), "",
      "WARM of the M best vs ENS of the M best vs the mean of the M individuals:", "",
      lmc_m_table(lmc), "", "![lmc](plots/lmc.png)", "",
      f"## 3. Best-of-N ({bon['prompts']} prompts x {bon['max_n']} samples)", "",
      "Gold reward of the kept response (in brackets: gold-judged win rate of its picks against "
      "the single RM's).", "", warm_bon.table(bon), "", "![best-of-N](plots/bon.png)", "",
      "## 4. RL (REINFORCE, KL-regularised)", "", warm_rl.table(rl), "", "![rl](plots/rl.png)", "",
      "## The paper's claims on this run", "",
      "| claim | held? | numbers |", "|---|---|---|"]
  for claim, held, numbers in claims(results):
    lines.append(f"| {claim} | {'yes' if held else '**no**'} | {numbers} |")
  return "\n".join(lines) + "\n"


def command_line(config) -> str:
  """The command that ran this job (with its overrides) when run from the command line."""
  if sys.argv and sys.argv[0].endswith("warm.py"):
    return " ".join(["python", *sys.argv])
  return f"python experiments/warm.py --config=experiments/warm.py:{config.variant}"


def lmc_m_table(lmc: dict) -> str:
  subsets = lmc["subsets"]
  lines = ["| M | " + " | ".join(f"{s.replace('_', ' ')} (WARM / ENS / mean)" for s in subsets)
           + " |", "|" + "---|" * (len(subsets) + 1)]
  for r in lmc["by_m"]:
    lines.append(f"| {r['m']} | " + " | ".join(
        f"{r['wa'][s]:.3f} / {r['ens'][s]:.3f} / {r['mean_individual'][s]:.3f}"
        for s in subsets) + " |")
  return "\n".join(lines)


if __name__ == "__main__":
  from warm_jax import cli
  cli.run(main)
