"""Rewarded soups (Rame et al. 2023, arXiv 2306.04488) against multi-objective RL (MORLHF).

`main(config, workdir)`: two criteria of the embedded task's gold reward (`objectives.names`, default coverage and
brevity) pull against each other: covering a post's facts takes words, a short TL;DR drops them.
The pipeline, each stage in its own directory of the workdir (`warm_jax.stages`: finished stages
are reused, changed ones refused, unfinished ones resume):
  rm_<criterion>/   a Bradley-Terry reward model per criterion, from the SFT decoder, on the first
                    `pairs` preference pairs relabelled by that criterion alone
                    (`multi_objective.relabel`: the task's Bradley-Terry rule on the criterion's
                    scores, ties dropped);
  norm/             each reward model's mean and standard deviation on the SFT policy's responses
                    to `norm.prompts` prompts: every RL run optimises standardised rewards, so one
                    weight means the same for every method;
  rl_<criterion>/   RL from the SFT policy against each criterion's reward model alone: the
                    soups' ingredients (and MORL's end points, lambda = 1 and 0);
  morl_<lambda>/    RL against lambda * r_1 + (1 - lambda) * r_2 for each `morl_lambdas`.
Then every policy answers the same `final.prompts` prompts (same sampling seed) and the gold
criteria judge them: the soups (1 - lambda) * theta_2 + lambda * theta_1 for each `lambdas`, and
the MORL policies. The fronts of (criterion 1, criterion 2) are compared point by point (same
lambda) and by their hypervolume above (0, 0), next to what each costs: the soups need two RL
runs for any number of lambdas, MORL one RL run per lambda. Writes soups.json, soups.md, soups.png.

The default second criterion judges brevity against a fixed budget (`objectives.brevity`: 8 words
whatever the post, where the task's total reward grows the budget with the post's facts), so that
the two criteria conflict on every post.
"""

from __future__ import annotations

import time

import ml_collections
import numpy as np

from warm_jax import configs, stages
from warm_jax.studies import SFT_RUN
from warm_jax.studies import reward_model, rl

SOUP_FIELDS = ("rm", "pairs", "objectives", "norm", "lambdas", "morl_lambdas", "final")


# ---------------------------------------------------------------- configs of the stages

def embedded_task(config) -> bool:
  return config.data.name == "embedded_tldr"


def rules():
  """The soups' own fields and the RL runs' (the job config's rl, data, model, optim and train
  sections are every RL run's); config.rm is checked with the reward-model rules (`validate`)."""
  from warm_jax import configs, evaluation
  from warm_jax.data import embedded
  from warm_jax.train import policy
  name = lambda x: isinstance(x, str) and x != ""  # noqa: E731
  return (
      *policy.RULES, *evaluation.GOLD_RULES,
      configs.sequence("objectives.names", name, "two different criteria", min_len=2,
                       distinct=True),
      configs.Rule("objectives.names", lambda v, c: len(v) == 2, "two different criteria"),
      configs.Rule("objectives.rm_paths", lambda v, c: isinstance(v, (tuple, list)) and (
          len(v) == 0 or (len(v) == 2 and all(name(p) for p in v))),
          "() or one run per criterion (two paths)"),
      configs.Rule("objectives.rm_paths", lambda v, c: len(v) == 2 or embedded_task(c),
                   "one run per criterion: rm_paths is empty, and without the embedded task's gold "
                   "criteria the two reward models must be given", reads=("data.name",)),
      configs.Rule("objectives.names", lambda v, c: bool(c.objectives.rm_paths)
                   or all(n in embedded.CRITERIA for n in v),
                   f"criteria of the embedded task {embedded.CRITERIA} (or give objectives.rm_paths)",
                   reads=("objectives.rm_paths",)),
      configs.integer("objectives.brevity.base", lo=0),
      configs.integer("objectives.brevity.per_fact", lo=0),
      configs.number("objectives.brevity.scale", 0.0, lo_open=True),
      configs.Rule("objectives.brevity.base", lambda v, c: v + c.objectives.brevity.per_fact > 0,
                   "positive with per_fact (a budget of 0 words)",
                   reads=("objectives.brevity.per_fact",)),
      configs.seed("objectives.label_seed"), configs.integer("pairs", lo=0),
      configs.distinct_numbers("lambdas", 0.0, 1.0, min_len=2),
      configs.distinct_numbers("morl_lambdas", 0.0, 1.0, min_len=0),
      configs.text("norm.split"), configs.integer("norm.prompts", lo=2), configs.seed("norm.seed"),
      configs.text("final.split"), configs.integer("final.prompts"),
      configs.integer("final.prompt_len"), configs.integer("final.max_new_tokens"),
      configs.integer("final.batch_size"), configs.seed("final.seed"),
      configs.fits_model("final.prompt_len", "final.max_new_tokens"), *stages.SEEDS_RULES,
  )


def validate(config: ml_collections.ConfigDict) -> None:
  """Every stage's settings, before any compute; raises InputError naming the field."""
  from warm_jax import configs
  from warm_jax.train import reward_model as rm_lib
  configs.check(config, rules())
  if not config.objectives.rm_paths:
    configs.check(config.rm, rm_lib.RULES, prefix="rm.")


def judge_task(config):
  """The embedded task's config as this experiment judges the criteria (its brevity budget)."""
  task = ml_collections.ConfigDict(config.data.task.to_dict())
  task.brevity = ml_collections.ConfigDict(config.objectives.brevity.to_dict())
  return task


def criteria_fn(config):
  """(prompts, responses) -> float32 [N, 2]: the two criteria of each response (the embedded
  task's gold criteria, or the given reward models on real data)."""
  names = tuple(config.objectives.names)
  if config.objectives.rm_paths:
    scorers = [rl.load_scorer(p, config) for p in config.objectives.rm_paths]
    return lambda p, r: np.stack([np.asarray(s.score(p, r), np.float32) for s in scorers], 1)
  from warm_jax.data import embedded
  task = judge_task(config)

  def fn(prompts, responses):
    g = embedded.gold_reward_batch(prompts, responses, task)
    return np.stack([g[n] for n in names], axis=1)
  return fn


def rm_config(config) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict(config.rm.to_dict())
  c.init_from = config.init_from
  return c


def rl_config(config, weights, paths, offsets, scales) -> ml_collections.ConfigDict:
  """An RL run's config: this one's RL settings against sum_i weights[i] * standardised RM_i."""
  c = ml_collections.ConfigDict(config.to_dict())
  for field in SOUP_FIELDS:
    del c[field]
  c.reward = ml_collections.ConfigDict(dict(
      kind="rms", path="", paths=tuple(paths), weights=tuple(float(w) for w in weights),
      offsets=tuple(float(x) for x in offsets), scales=tuple(float(x) for x in scales)))
  return c


def criterion_sources(config, name: str) -> dict:
  """The reward model's data for criterion `name`: the train pairs (first `pairs`) and each eval
  split, relabelled by that criterion."""
  from warm_jax import data as data_lib
  from warm_jax.data import embedded
  from warm_jax import multi_objective
  d, task = config.rm.data, judge_task(config)
  out = {}
  for split in (d.get("train_split", "train"), *config.rm.train.eval_splits):
    src = data_lib.load_split(d, split)
    n = len(src) if split != d.get("train_split", "train") or not config.pairs else min(
        config.pairs, len(src))
    recs = [src[i] for i in range(n)]
    prompts = [r["prompt"] for r in recs]
    sc = embedded.gold_reward_batch(prompts, [r["chosen"] for r in recs], task)[name]
    sr = embedded.gold_reward_batch(prompts, [r["rejected"] for r in recs], task)[name]
    out["train" if split == d.get("train_split", "train") else split] = multi_objective.relabel(
        recs, sc, sr, d.task.bt_temperature, config.objectives.label_seed)
  return out


def stored_statistics(config, paths) -> dict | None:
  """The norm stage's result from the reward models' stored statistics (`warm_jax.reward_norm`),
  used instead of recomputing them on the SFT policy's responses; None when neither reward model
  stores any (the stage then computes them). Where they were computed is reported as 'stored'."""
  from warm_jax import checkpoints, reward_norm
  if all(reward_norm.read(checkpoints.resolve_checkpoint_dir(p)) is None for p in paths):
    return None  # today's path: nothing is loaded here
  scorers = [rl.load_scorer(p, config) for p in paths]
  offsets, scales = reward_norm.stored_offsets_scales(scorers, list(paths))
  return {"offsets": offsets, "scales": scales, "stored": [s.norm.reference for s in scorers]}


def sampler_of(config):
  """A PolicySampler of the policy architecture with the `final` lengths and batch."""
  from warm_jax import sampling
  return sampling.PolicySampler.of(config, config.final, config.rl.temperature)


def lam_name(lam: float) -> str:
  return f"morl_{lam:.2f}"


# ---------------------------------------------------------------- evaluation

def judge_policy(config, sampler, params, prompts, judge) -> dict:
  """Mean criteria (and, on the embedded task, gold total) of one response per prompt."""
  texts = sampler.sample(params, prompts, seed=config.final.seed)
  scores = judge(prompts, texts)
  out = {"criteria": [float(x) for x in scores.mean(0)],
         "length": float(np.mean([len(t.split()) for t in texts])), "example": texts[0]}
  if embedded_task(config):
    from warm_jax.data import embedded
    out["gold_total"] = float(embedded.gold_reward_batch(prompts, texts, config.data.task)["total"].mean())
  return out


def fronts(config, job, rl_runs: dict, morl_runs: dict) -> dict:
  """The soups over `lambdas` and the MORL policies, judged on the same prompts."""
  from warm_jax import averaging, multi_objective
  from warm_jax import data as data_lib
  a, b = config.objectives.names
  prompts = data_lib.load_prompts(config.data, config.final.split, config.final.prompts)
  sampler, judge = sampler_of(config), criteria_fn(config)
  out = {"prompts": len(prompts), "sft": judge_policy(config, sampler, config.init_from, prompts,
                                                      judge)}
  theta_a, theta_b = sampler.load(rl_runs[a]), sampler.load(rl_runs[b])
  out["soups"], t0 = {}, time.time()
  for lam in config.lambdas:
    out["soups"][f"{lam:.2f}"] = judge_policy(
        config, sampler, averaging.interpolate(theta_b, theta_a, lam), prompts, judge)
  soup_eval_s = time.time() - t0
  out["morl"] = {f"{lam:.2f}": judge_policy(config, sampler, path, prompts, judge)
                 for lam, path in sorted(morl_runs.items())}
  pts = {k: np.asarray([p["criteria"] for p in out[k].values()]) for k in ("soups", "morl")}
  shared = sorted(set(out["soups"]) & set(out["morl"]))
  out["hypervolume"] = {k: multi_objective.hypervolume_2d(v) for k, v in pts.items()}
  out["hypervolume_shared_lambdas"] = {
      k: multi_objective.hypervolume_2d([out[k][s]["criteria"] for s in shared])
      for k in ("soups", "morl")}
  out["shared_lambdas"] = shared
  rl_s = {n: job.seconds(f"rl_{n}") for n in (a, b)}
  morl_s = {f"{lam:.2f}": (rl_s[a] if lam == 1.0 else rl_s[b] if lam == 0.0 else
                           job.seconds(lam_name(lam))) for lam in morl_runs}
  out["cost"] = {"soups_rl_runs": 2, "soups_rl_seconds": sum(rl_s.values()),
                 "soups_lambdas": len(config.lambdas),
                 "soups_seconds_per_lambda": sum(rl_s.values()) / len(config.lambdas),
                 "soup_eval_seconds": soup_eval_s,
                 "morl_rl_runs": len(morl_runs), "morl_rl_seconds": sum(morl_s.values()),
                 "morl_seconds_per_lambda": morl_s}
  return out


def plot(result: dict, names, path: str, extra: dict | None = None) -> None:
  """Criterion 2 vs criterion 1: the soups' line (lambda labelled), the MORL points, SFT, and any
  `extra` fronts {label: {lambda: point}} (e.g. MODPO's)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from warm_jax.train import metrics
  fig, ax = plt.subplots(figsize=(5.5, 4.5))
  series = {"rewarded soups": ("soups", "-o", "tab:blue"), "MORL": ("morl", "s", "tab:red")}
  for label, (key, style, color) in series.items():
    pts = result[key]
    xy = np.asarray([pts[k]["criteria"] for k in sorted(pts)])
    ax.plot(xy[:, 0], xy[:, 1], style, color=color, label=label, ms=5)
    for k, (x, y) in zip(sorted(pts), xy):
      ax.annotate(k, (x, y), fontsize=7, color=color, xytext=(3, 3), textcoords="offset points")
  for label, pts in (extra or {}).items():
    xy = np.asarray([pts[k]["criteria"] for k in sorted(pts)])
    ax.plot(xy[:, 0], xy[:, 1], "^--", color="tab:green", label=label, ms=5)
    for k, (x, y) in zip(sorted(pts), xy):
      ax.annotate(k, (x, y), fontsize=7, color="tab:green", xytext=(3, -9), textcoords="offset points")
  sx, sy = result["sft"]["criteria"]
  ax.plot([sx], [sy], "*", color="black", ms=10, label="SFT")
  ax.set_xlabel(f"{names[0]} (gold, mean)")
  ax.set_ylabel(f"{names[1]} (gold, mean)")
  ax.set_title("Fronts: labels are the weight on " + names[0])
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  metrics.save_figure(fig, path, dpi=120)


def tables(result: dict, names) -> str:
  f = result["fronts"]
  a, b = names
  lines = [f"Mean gold criteria of one response to each of {f['prompts']} held-out prompts "
           f"(same prompts and sampling seed for every policy); lambda = the weight on {a}.", "",
           f"| lambda | soup {a} | soup {b} | soup gold total | MORL {a} | MORL {b} | MORL gold total |",
           "|---|---|---|---|---|---|---|"]
  fmt = lambda p, i: f"{p['criteria'][i]:.3f}"  # noqa: E731
  tot = lambda p: f"{p['gold_total']:.3f}" if "gold_total" in p else "-"  # noqa: E731
  for lam in sorted(set(f["soups"]) | set(f["morl"])):
    s, m = f["soups"].get(lam), f["morl"].get(lam)
    row = [lam] + ([fmt(s, 0), fmt(s, 1), tot(s)] if s else ["-"] * 3)
    row += [fmt(m, 0), fmt(m, 1), tot(m)] if m else ["-"] * 3
    lines.append("| " + " | ".join(row) + " |")
  sft = f["sft"]
  lines += ["", f"SFT: {a} {sft['criteria'][0]:.3f}, {b} {sft['criteria'][1]:.3f}"
            + (f", gold total {sft['gold_total']:.3f}" if "gold_total" in sft else "") + ".", "",
            f"Hypervolume above (0, 0) (higher is better): soups {f['hypervolume']['soups']:.4f} "
            f"({len(f['soups'])} lambdas), MORL {f['hypervolume']['morl']:.4f} ({len(f['morl'])} "
            f"lambdas); on the lambdas both have ({', '.join(f['shared_lambdas'])}): soups "
            f"{f['hypervolume_shared_lambdas']['soups']:.4f}, MORL "
            f"{f['hypervolume_shared_lambdas']['morl']:.4f}."]
  c = f["cost"]
  lines += ["", f"Cost: the soups took {c['soups_rl_runs']} RL runs ({c['soups_rl_seconds']:.0f} s) "
            f"for {c['soups_lambdas']} lambdas ({c['soups_seconds_per_lambda']:.0f} s of RL per "
            f"lambda; interpolating and judging all of them {c['soup_eval_seconds']:.0f} s); MORL "
            f"took {c['morl_rl_runs']} RL runs ({c['morl_rl_seconds']:.0f} s) for "
            f"{c['morl_rl_runs']} lambdas ({c['morl_rl_seconds'] / c['morl_rl_runs']:.0f} s per "
            "lambda)."]
  return "\n".join(lines)


# ---------------------------------------------------------------- the job

def stages_of(config: ml_collections.ConfigDict) -> list:
  """rm_<criterion> (unless objectives.rm_paths), norm, rl_<criterion>, morl_<lambda>."""
  from warm_jax import data as data_lib
  from warm_jax import multi_objective
  S = stages.Stage
  a, b = config.objectives.names
  o = config.objectives
  out = []
  if o.rm_paths:
    rms = lambda ctx: dict(zip((a, b), o.rm_paths))  # noqa: E731
  else:
    rms = lambda ctx: {n: ctx.dir(f"rm_{n}") for n in (a, b)}  # noqa: E731
    for name in (a, b):
      out.append(S(f"rm_{name}",
                   lambda ctx, n=name: reward_model.main(
                       rm_config(config), ctx.dir(f"rm_{n}"), criterion_sources(config, n),
                       data_lib.load_tokenizer(config.rm.data)),
                   lambda ctx: {"rm": rm_config(config), "objectives": o.to_dict(),
                                "pairs": config.pairs},
                   header=f"reward model of {name}"))

  def standardise(ctx):
    stored = stored_statistics(config, [rms(ctx)[a], rms(ctx)[b]])
    if stored is not None:
      return stored
    prompts = data_lib.load_prompts(config.data, config.norm.split, config.norm.prompts)
    texts = sampler_of(config).sample(config.init_from, prompts, seed=config.norm.seed)
    stats = [multi_objective.standardisation(rl.load_scorer(rms(ctx)[n], config).score(prompts, texts))
             for n in (a, b)]
    return {"offsets": [x[0] for x in stats], "scales": [x[1] for x in stats],
            "prompts": len(prompts)}
  out.append(S("norm", standardise,
               lambda ctx: {"norm": config.norm.to_dict(), "rms": [rms(ctx)[a], rms(ctx)[b]],
                            "policy": config.init_from, "final": config.final.to_dict()},
               tuple(s.name for s in out),
               header="reward standardisation on the SFT policy's responses"))

  def run_cfg(ctx, weights):
    norm = ctx.results["norm"]
    return rl_config(config, weights, (rms(ctx)[a], rms(ctx)[b]), norm["offsets"], norm["scales"])
  points = [(f"rl_{a}", (1.0, 0.0), f"RL against the {a} reward model"),
            (f"rl_{b}", (0.0, 1.0), f"RL against the {b} reward model")]
  points += [(lam_name(lam), (lam, 1.0 - lam), f"MORL: RL against {lam:.2f} x {a} + "
              f"{1 - lam:.2f} x {b}") for lam in config.morl_lambdas if lam not in (0.0, 1.0)]
  for name, w, header in points:
    out.append(S(name, lambda ctx, n=name, w=w: rl.main(run_cfg(ctx, w), ctx.dir(n)),
                 lambda ctx, w=w: run_cfg(ctx, w), ("norm",), header=header))
  return out


def main(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """The job under each of config.seeds (`stages.over_seeds`: seed 0 in the workdir, the others in
  <workdir>/seed<s>, their spread in soups_seeds.md); returns seed 0's result."""
  return stages.over_seeds(run, config, workdir, "soups", headline,
                           "Every stage re-run under each seed (the reward models' seeds and label "
                           "draws, the RL runs, the sampling of the judged responses).")


def headline(result: dict) -> list[stages.Claim]:
  """One seed's headline numbers: the fronts' hypervolumes on the lambdas both have (soups, MORL)
  and the soups' cost per lambda against MORL's (RL seconds)."""
  f = result["fronts"]
  hv, c = f["hypervolume_shared_lambdas"], f["cost"]
  morl_s = c["morl_rl_seconds"] / c["morl_rl_runs"]
  return [("hypervolume on the shared lambdas: soups / MORL (held: soups within 5% of MORL)",
           (hv["soups"], hv["morl"]), hv["soups"] >= 0.95 * hv["morl"]),
          ("RL seconds per lambda: soups / MORL", (c["soups_seconds_per_lambda"], morl_s),
           c["soups_seconds_per_lambda"] < morl_s)]


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """The job under one seed (see the module docstring)."""
  configs.require(config, {"init_from": f"{SFT_RUN} (every policy starts from it)"})
  validate(config)
  stages.record_config(config, workdir)
  ctx = stages.run_job(config, workdir, stages_of(config))
  a, b = config.objectives.names
  rms = dict(zip((a, b), config.objectives.rm_paths)) if config.objectives.rm_paths else {
      n: ctx.dir(f"rm_{n}") for n in (a, b)}
  rl_runs = {n: ctx.dir(f"rl_{n}") for n in (a, b)}
  morl_runs = {1.0: rl_runs[a], 0.0: rl_runs[b]}
  morl_runs.update({lam: ctx.dir(lam_name(lam)) for lam in config.morl_lambdas
                    if lam not in (0.0, 1.0)})

  print("== the fronts", flush=True)
  result = {"names": [a, b], "reward_models": rms, "standardisation": ctx.results["norm"],
            "rl_runs": rl_runs, "morl_runs": {f"{k:.2f}": v for k, v in morl_runs.items()},
            "fronts": fronts(config, ctx.job, rl_runs, morl_runs),
            "seconds": {st: ctx.job.seconds(st) for st in ctx.job.rows}}
  stages.write_report(workdir, "soups", result, tables(result, (a, b)),
                      lambda path: plot(result["fronts"], (a, b), path))
  return result
