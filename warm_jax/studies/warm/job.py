"""The main job: WARM (arXiv 2401.12187) end to end on one workdir, declared as a list of stages.

    pretrain          the shared LM on the task's corpus                        (studies.lm)
    sft               supervised fine-tuning; keeps the checkpoints Baklava starts from
    warm_label_noise  M diverse RMs on corrupted labels; members vs ENS vs WARM  (warm.label_noise)
    warm_lmc          accuracy along the interpolation path, and vs M            (warm.lmc)
    warm_bon          best-of-N: single RM vs ENS vs WARM, gold-judged           (warm.bon)
    warm_rl           REINFORCE against a single RM and against WARM; win rate   (warm.rl)

Each stage is the study of the same name run on the job config's section of that name
(`experiments/<stage>.py` configures it; `experiments/warm.py` gathers them), with the
directories of the stages it reads filled in (`warm_jax.stages.study`).

From a pretrained model (config.init_from = hf:DIR, a Hugging Face *ForCausalLM): there is no
pre-training stage, SFT starts from DIR, and every stage's config.model is DIR's architecture
(with the section's own max_len, dtype, dropout, remat and attention blocks) and its tokenizer
DIR's (`pretrained_stages`, `pretrained_job_config`); the rest runs as above. At the end the job writes
`<workdir>/results.md`: every stage's section of the report, and each paper claim checked
against the numbers (held or not), with the plots copied to `<workdir>/plots/`.
`python -m warm_jax.studies.warm.publish <workdir>` puts the report into docs/warm.md.
"""

from __future__ import annotations

import os
import platform
import sys
import time

import ml_collections

from warm_jax import configs, errors, stages
from warm_jax.studies import lm
from warm_jax.studies.warm import bon, label_noise, lmc, rl


# ---------------------------------------------------------------------------- report sections

def _lm_section(results: dict) -> str:
  sft = results["sft"].get("sft_validation/loss", float("nan"))
  if "pretrain" not in results:  # SFT of a pretrained model
    return "\n".join(["## SFT", "", f"- SFT: held-out SFT loss {sft:.3f}"])
  pre = results["pretrain"].get("corpus_validation/loss", float("nan"))
  return "\n".join(["## Pre-training and SFT", "", f"- pre-training: held-out corpus loss {pre:.3f}",
                    f"- SFT: held-out SFT loss {sft:.3f}"])


def _label_noise_section(results: dict) -> str:
  ln = results["warm_label_noise"]
  return "\n".join([
      f"## 1. Label noise: {ln['counts']['train_corrupted']} of {ln['train_pairs']} training "
      f"labels flipped ({ln['counts']['train_corrupted'] / ln['train_pairs']:.1%})", "",
      "Pairwise accuracy; `train corrupted` is agreement with the flipped labels (memorisation: "
      f"lower is better); members ranked on `{ln['rank_split']}`. Subset sizes: "
      + ", ".join(f"{k} {v}" for k, v in ln["counts"].items()) + "." + _probe_line(ln), "",
      label_noise.table(ln), "", "![memorisation](plots/memorisation.png)"])


def _probe_line(ln: dict) -> str:
  p = ln.get("probe")
  if not p:
    return " Every member starts from a zero reward head."
  return (f" Every member starts from one reward head, linear-probed on the frozen features of the "
          f"SFT run ({p['steps']} full-batch steps; the probe alone agrees with "
          f"{p['accuracy']:.1%} of the training labels).")


def _lmc_section(results: dict) -> str:
  r = results["warm_lmc"]
  return "\n".join(["## 2. Linear mode connectivity", "", lmc.table(r), "",
                    "WARM of the M best vs ENS of the M best vs the mean of the M individuals:", "",
                    lmc_m_table(r), "", "![lmc](plots/lmc.png)"])


def _bon_section(results: dict) -> str:
  r = results["warm_bon"]
  return "\n".join([f"## 3. Best-of-N ({r['prompts']} prompts x {r['max_n']} samples)", "",
                    "Gold reward of the kept response (in brackets: gold-judged win rate of its "
                    "picks against the single RM's).", "", bon.table(r), "",
                    "![best-of-N](plots/bon.png)"])


def _rl_section(results: dict) -> str:
  return "\n".join(["## 4. RL (REINFORCE, KL-regularised)", "", rl.table(results["warm_rl"]), "",
                    "![rl](plots/rl.png)"])


def lmc_m_table(result: dict) -> str:
  subsets = result["subsets"]
  lines = ["| M | " + " | ".join(f"{s.replace('_', ' ')} (WARM / ENS / mean)" for s in subsets)
           + " |", "|" + "---|" * (len(subsets) + 1)]
  for r in result["by_m"]:
    lines.append(f"| {r['m']} | " + " | ".join(
        f"{r['wa'][s]:.3f} / {r['ens'][s]:.3f} / {r['mean_individual'][s]:.3f}"
        for s in subsets) + " |")
  return "\n".join(lines)


# ---------------------------------------------------------------------------- the paper's claims

def _label_noise_claims(results: dict) -> list:
  ln = results["warm_label_noise"]
  rows, out = ln["rows"], []
  for split in [s for s in ln["subsets"] if s not in label_noise.TRAIN_SUBSETS
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
  return out


def _lmc_claims(results: dict) -> list:
  r = results["warm_lmc"]
  return [(f"interpolation path, {split}: no barrier (WA >= Diag at every lambda)",
           r["barrier"][split] <= 0, f"max over lambda of Diag - WA = {r['barrier'][split]:+.3f}")
          for split in r["subsets"] if split != "train_corrupted"]


def _bon_claims(results: dict) -> list:
  r = results["warm_bon"]
  wkey = f"WARM {max(r['ms'])}"
  single, warm = r["curves"]["single"], r["curves"][wkey]
  n_max = single[-1]["n"]
  peak = lambda rows: max(rows, key=lambda x: x["gold"])  # noqa: E731
  return [
      (f"best-of-N: {wkey} ends higher in gold than the single RM (N = {n_max})",
       warm[-1]["gold"] > single[-1]["gold"],
       f"gold at N = {n_max}: {wkey} {warm[-1]['gold']:.3f}, single {single[-1]['gold']:.3f}"
       f"; peaks {peak(warm)['gold']:.3f} (N = {peak(warm)['n']}) vs "
       f"{peak(single)['gold']:.3f} (N = {peak(single)['n']})"),
      (f"best-of-N: {wkey}'s picks win more than half the time against the single RM's "
       f"(N = {n_max})", warm[-1]["win_rate_vs_single"] > 0.5,
       f"win rate {warm[-1]['win_rate_vs_single']:.1%}")]


def _rl_claims(results: dict) -> list:
  r = results["warm_rl"]
  s, w = r["curves"]["single"], r["curves"]["warm"]
  f = r["final"]["warm_vs_single"]
  return [
      ("RL: WARM delays reward hacking (higher gold at the end of training)",
       w["gold_end"] > s["gold_end"],
       f"gold at the end: WARM {w['gold_end']:.3f} (peak {w['gold_peak']:.3f} at step "
       f"{w['peak_step']}), single {s['gold_end']:.3f} (peak {s['gold_peak']:.3f} at step "
       f"{s['peak_step']})"),
      (f"RL: the WARM (M = {r['m']}) policy wins more than half the time against the "
       "single-RM policy (paper: 79.4% at M = 6)", f["win_rate"] > 0.5,
       f"win rate {f['win_rate']:.1%} +- {f['win_rate_stderr']:.1%} on {f['n']} prompts "
       f"(ties {f['ties']:.1%})")]


# ---------------------------------------------------------------------------- the job

SHARED = [
    stages.study("pretrain", lm.pretrain),
    stages.study("sft", lm.sft, inputs={"init_from": "pretrain"}, report=_lm_section),
]


def seed_stages(seed: int = 0) -> list[stages.Stage]:
  """The stages that depend on the job's seed (everything after SFT), under one of config.seeds:
  seed 0's are the job's plain stages, with the report's sections, plots and claims; another
  seed's are named with `stages.seed_suffix` and read that seed's label-noise run."""
  sfx, main = stages.seed_suffix(seed), seed == 0
  ln = "warm_label_noise" + sfx
  shown = lambda **kw: kw if main else {}  # noqa: E731
  return [
      stages.study(ln, label_noise.main, inputs={"init_from": "sft"}, section="warm_label_noise",
                   seed=seed, **shown(report=_label_noise_section, plot="memorisation.png",
                                      claims=_label_noise_claims)),
      stages.study("warm_lmc" + sfx, lmc.main, inputs={"label_noise": ln}, section="warm_lmc",
                   seed=seed, **shown(report=_lmc_section, plot="lmc.png", claims=_lmc_claims)),
      stages.study("warm_bon" + sfx, bon.main, inputs={"init_from": "sft", "label_noise": ln},
                   section="warm_bon", seed=seed,
                   **shown(report=_bon_section, plot="bon.png", claims=_bon_claims)),
      stages.study("warm_rl" + sfx, rl.main, inputs={"init_from": "sft", "label_noise": ln},
                   section="warm_rl", seed=seed,
                   **shown(report=_rl_section, plot="rl.png", claims=_rl_claims)),
  ]


STAGES = [*SHARED, *seed_stages(0)]  # the job under its one default seed
NAMES = tuple(s.name for s in STAGES)
# The job from a pretrained model: no pre-training, SFT from config.sft.init_from (hf:DIR).
PRETRAINED_SHARED = [stages.study("sft", lm.sft, report=_lm_section)]


def pretrained_base(config: ml_collections.ConfigDict) -> str | None:
  """The Hugging Face directory the job starts from (config.init_from = hf:DIR), or None."""
  from warm_jax.train import init
  return init.hf_dir(config.get("init_from", ""))


def job_stages(config: ml_collections.ConfigDict) -> list[stages.Stage]:
  """The job's stages: pre-training and SFT (only SFT, from the model, when the job starts from a
  pretrained one), then everything after SFT under every seed of config.seeds (seed 0 first: its
  stages are the report's)."""
  shared = PRETRAINED_SHARED if pretrained_base(config) else SHARED
  seeds = stages.job_seeds(config)
  return [*shared, *(st for s in seeds for st in seed_stages(s))]


def pretrained_job_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The job config starting from config.init_from = hf:DIR: SFT's init_from is DIR, and every
  section holding a model (a stage's config.model, the members' config.rm.model) gets DIR's
  architecture and tokenizer (`warm_jax.train.init.pretrained_config`); unchanged without one."""
  from warm_jax.train import init
  base = config.get("init_from", "")
  if not pretrained_base(config):
    return config
  out = ml_collections.ConfigDict(config.to_dict())
  out.sft.init_from = base
  print(f"starting from {base}: no pre-training; every stage's config.model and tokenizer come "
        "from it", flush=True)
  for name in NAMES:
    for section in (out[name], out[name].get("rm")):
      if section is not None and "model" in section:
        with_base = ml_collections.ConfigDict(section.to_dict())
        with_base.init_from = base
        with_base = init.pretrained_config(with_base, verbose=False)
        section.model, section.data.tokenizer = with_base.model, with_base.data.tokenizer
  return out


def claims(results: dict) -> list[tuple[str, bool, str]]:
  """(claim, held, the numbers) for each of the paper's claims this job can test."""
  return stages.claims(STAGES, results)


# The job's own field: what it starts from ('' = pre-training on the task; hf:DIR).
RULES = (configs.init_source("init_from", optional=True),)


def validate(config: ml_collections.ConfigDict) -> None:
  """Cross-stage checks, before any compute: the seeds and the starting point; the Baklava steps
  must be kept SFT checkpoints; and each study's own checks, so a bad value fails now rather than
  after the training stages."""
  configs.check(config, RULES)
  stages.check_seeds(config)  # configs saved before it existed: (0,)
  sft_train = config.sft.train
  for s in config.warm_label_noise.diversity.init_steps:
    if s != -1 and (s <= 0 or s > sft_train.num_steps or s % sft_train.ckpt_every):
      raise errors.InputError(
          f"config.warm_label_noise.diversity.init_steps has {s}, which the SFT run never saves "
          f"(config.sft.train.num_steps={sft_train.num_steps}, ckpt_every={sft_train.ckpt_every})")
  kept = sorted(s for s in config.warm_label_noise.diversity.init_steps if s > 0)
  if kept and sft_train.num_steps - sft_train.ckpt_every * (sft_train.keep - 1) > kept[0]:
    raise errors.InputError(f"config.sft.train.keep={sft_train.keep} does not keep SFT step "
                            f"{kept[0]} (a Baklava init); raise it")
  from warm_jax.train import lm as lm_train
  for stage in ("pretrain", "sft"):
    configs.check(config[stage], lm_train.RULES, prefix=f"{stage}.")
  ln = config.warm_label_noise
  label_noise.validate(ln)
  subsets = (*label_noise.TRAIN_SUBSETS, ln.eval.rank_split, *ln.eval.splits)
  lmc.validate(config.warm_lmc, ln.members, subsets)
  bon.validate(config.warm_bon, ln.members)
  rl.validate(config.warm_rl, ln.members)


def main(config: ml_collections.ConfigDict, workdir: str) -> dict:
  from warm_jax.train.metrics import format_seconds
  validate(config)
  config = pretrained_job_config(config)
  job = job_stages(config)
  ctx = stages.run_job(config, workdir, job)
  plots = stages.copy_plots(job, workdir)
  text = report(config, ctx.results, ctx.job.rows)
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(text)
  print(text)
  print(f"wrote {workdir}/results.md and {plots}/ (job took "
        f"{format_seconds(time.time() - ctx.job.t0)} this time)")
  return ctx.results


def report(config, results: dict, ledger: dict) -> str:
  """The job's report: its command and stage times, each stage's section, the claims."""
  from warm_jax.train.metrics import format_seconds
  seeds = stages.job_seeds(config)
  job = job_stages(config)
  names = [s.name for s in job]
  times = ", ".join(f"{s} {format_seconds(ledger[s]['seconds'])}" for s in names)
  total = sum(ledger[s]["seconds"] for s in names)
  head = [f"# WARM on the embedded task (`experiments/warm.py:{config.variant}`)", "",
          f"Generated by `{command_line(config)}` on {platform.machine()} with {os.cpu_count()} "
          f"CPU cores; stage wall times: {times} (total {format_seconds(total)}).", ""]
  body = "\n\n".join(stages.report_sections(job, results))
  text = "\n".join(head) + "\n" + body + "\n\n## The paper's claims on this run\n\n" + \
      stages.claims_table(job, results) + "\n"
  if len(seeds) > 1:
    text += "\n" + seeds_section(results, seeds) + "\n"
  return text


def headline(results: dict, seed: int) -> list[tuple[str, tuple[float, ...], bool]]:
  """The main job's headline claims under one seed: (what, its numbers, held)."""
  sfx = stages.seed_suffix(seed)
  ln, bon_r, rl_r = (results[n + sfx] for n in ("warm_label_noise", "warm_bon", "warm_rl"))
  mem = tuple(ln["rows"][k]["train_corrupted"] for k in ("warm", "ens", "mean_individual"))
  ood = tuple(ln["rows"][k]["ood"] for k in ("warm", "ens"))
  wkey = f"WARM {max(bon_r['ms'])}"
  end_w, end_s = bon_r["curves"][wkey][-1], bon_r["curves"]["single"][-1]
  rl_w, rl_s = rl_r["curves"]["warm"], rl_r["curves"]["single"]
  win = rl_r["final"]["warm_vs_single"]["win_rate"]
  n = end_s["n"]
  return [
      ("memorisation: agreement with the flipped labels, WARM / ENS / mean individual", mem,
       mem[0] < mem[1] and mem[0] < mem[2]),
      ("label noise, ood accuracy: WARM / ENS", ood, ood[0] >= ood[1]),
      (f"best-of-N, gold at N = {n}: {wkey} / single RM", (end_w["gold"], end_s["gold"]),
       end_w["gold"] > end_s["gold"]),
      (f"best-of-N: {wkey}'s win rate against the single RM's picks (N = {n})",
       (end_w["win_rate_vs_single"],), end_w["win_rate_vs_single"] > 0.5),
      ("RL: gold at the end, WARM / single RM", (rl_w["gold_end"], rl_s["gold_end"]),
       rl_w["gold_end"] > rl_s["gold_end"]),
      ("RL: the WARM policy's win rate against the single-RM policy", (win,), win > 0.5),
  ]


def seeds_section(results: dict, seeds) -> str:
  """The headline claims under every seed: each seed's numbers, their mean +- standard deviation
  over the seeds, and in how many seeds the claim held."""
  return stages.seeds_table(
      {s: headline(results, s) for s in seeds},
      "Everything after SFT re-run under each seed (the reward models' hyper-parameter draws, "
      "data order and dropout, best-of-N's samples, RL).")


def command_line(config) -> str:
  """The command that ran this job (with its overrides) when run from the command line."""
  if sys.argv and sys.argv[0].endswith("warm.py"):
    return " ".join(["python", *sys.argv])
  return f"python experiments/warm.py --config=experiments/warm.py:{config.variant}"
