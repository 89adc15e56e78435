"""MODPO (multi-objective DPO, Zhou et al. 2023, arXiv 2310.03708) over a grid of objective weights,
against the rewarded soups' and MORL's fronts of a rewarded-soups run.

`main(config, workdir)`: for each weight lambda on criterion 1 (`lambdas`; criterion 2 gets
1 - lambda), one DPO-style run from the SFT policy (`modpo_<lambda>/`, resumable, reused when
finished) on the preference pairs of the criterion with the larger weight k (the soups run's
relabelled pairs of that criterion), with MODPO's margin from the other criterion's fixed reward
model. MORL optimises sum_i w_i r_i / s_i, each reward divided by its standard deviation s_i on the
SFT policy's responses (the soups run's norm stage); MODPO is put on the same scale:

    loss = -log sigmoid((s_k / w_k) (beta * h - w_{-k} (r_{-k}(y_c) - r_{-k}(y_r)) / s_{-k}))

(h: DPO's log-ratio margin to the SFT policy; the data objective's preferences are in its own
reward's units, hence s_k). lambda = 0 or 1 is DPO on one criterion. Taking the larger weight's
data keeps 1 / w_k <= 2 (MODPO's weights must be > 0 on the data's objective).
Every policy then answers the soups run's held-out prompts with its sampling seed, judged by its
criteria, so the three fronts are comparable point by point. Writes modpo.json, modpo.md and
modpo.png (the soups', MORL's and MODPO's fronts). MODPO at beta is the optimum of MORLHF at KL
coefficient beta; the RL runs use their own coefficient (see the report's note).
"""

from __future__ import annotations

import json
import os

import ml_collections
import numpy as np

from warm_jax import errors, stages
from warm_jax.studies import rewarded_soups, rl


def soups_config(config) -> ml_collections.ConfigDict:
  """The config of the rewarded_soups.py run at config.soups (its workdir's config.json)."""
  path = os.path.join(config.soups, "config.json")
  if not config.soups or not os.path.exists(os.path.join(config.soups, "soups.json")):
    raise errors.MissingInput(f"config.soups={config.soups!r}: not a finished rewarded_soups.py "
                              "workdir (no soups.json); run experiments/rewarded_soups.py first")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def rules():
  """MODPO's weights and every run's DPO fields (`warm_jax.train.dpo.RULES`)."""
  from warm_jax import configs
  from warm_jax.train import dpo
  return (*dpo.RULES, configs.distinct_numbers("lambdas", 0.0, 1.0),
          configs.Rule("dpo.loss_type", lambda v, c: v == "modpo", "'modpo' (this experiment's)"),
          *stages.SEEDS_RULES)


def validate(config, soups_cfg) -> None:
  """`rules()`, then what the soups run decides: its reward models and its policy's model."""
  from warm_jax import configs
  configs.check(config, rules())
  if soups_cfg.objectives.rm_paths:
    raise errors.InputError("the soups run used given reward models (objectives.rm_paths): MODPO "
                            "needs each criterion's preference pairs, which only the embedded task "
                            "relabels")
  if config.model.to_dict() | {"max_len": 0} != soups_cfg.model.to_dict() | {"max_len": 0}:
    raise errors.InputError("config.model differs from the soups run's policy model (beyond "
                            "max_len): MODPO must fine-tune the same SFT policy")


def data_objective(lam: float) -> int:
  """Which criterion's pairs train the policy: the one with the larger weight (0 on a tie)."""
  return 0 if lam >= 0.5 else 1


def run_config(config, lam: float, scales=None) -> ml_collections.ConfigDict:
  """One MODPO run's DPO config: w_k on the data objective k and, with `scales` (the soups run's
  reward standard deviations on SFT responses, by criterion), s_k: the data objective's implicit
  reward on MORL's standardised scale, as the margin's other objective already is."""
  c = ml_collections.ConfigDict(config.to_dict())
  del c.lambdas
  k = data_objective(lam)
  c.dpo.modpo_weight = float(lam if k == 0 else 1.0 - lam)
  if scales is not None:
    c.dpo.modpo_scale = float(scales[k])
  return c


def soups_scales(config) -> list[float]:
  """The soups run's reward standard deviations on the SFT policy's responses (its norm stage):
  the scale MORL divides each criterion's reward by."""
  with open(os.path.join(config.soups, "norm", "stage_result.json")) as f:
    return [float(x) for x in json.load(f)["scales"]]


def sources_with_margins(config, soups_cfg, lam: float) -> dict:
  """The pairs of the larger-weight criterion (as the soups run relabelled them for its reward
  model), each with MODPO's margin w_other * (r_other(y_c) - r_other(y_r)) / scale_other."""
  names = tuple(soups_cfg.objectives.names)
  k = data_objective(lam)
  other = 1 - k
  w_other = lam if other == 0 else 1.0 - lam
  sources = rewarded_soups.criterion_sources(soups_cfg, names[k])
  if w_other == 0.0:
    return {s: [{**r, "margin": 0.0} for r in recs] for s, recs in sources.items()}
  scale = soups_scales(config)[other]
  scorer = rl.load_scorer(os.path.join(config.soups, f"rm_{names[other]}"), soups_cfg)
  out = {}
  for split, recs in sources.items():
    p = [r["prompt"] for r in recs]
    d = (np.asarray(scorer.score(p, [r["chosen"] for r in recs]), np.float64)
         - np.asarray(scorer.score(p, [r["rejected"] for r in recs]), np.float64))
    out[split] = [{**r, "margin": float(w_other * x / scale)} for r, x in zip(recs, d)]
  return out


def train_one(config, soups_cfg, lam: float, workdir: str) -> dict:
  from warm_jax import data as data_lib
  from warm_jax.train import dpo, init
  c = run_config(config, lam, soups_scales(config))
  setup = dpo.build(c)
  ref = init.load_lm_params(soups_cfg.init_from, c.model, setup.mesh, setup.rules)
  sources = sources_with_margins(config, soups_cfg, lam)
  result = dpo.train(c, workdir, sources, data_lib.load_tokenizer(c.data), ref)
  result.pop("state")
  return {**result, "data_objective": data_objective(lam), "pairs": len(sources["train"]),
          "mean_abs_margin": float(np.mean([abs(r["margin"]) for r in sources["train"]]))}


def main(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """MODPO under each of config.seeds (`stages.over_seeds`: seed 0 in the workdir, the others in
  <workdir>/seed<s>, their spread in modpo_seeds.md), every seed against the same soups run's
  fronts; returns seed 0's result."""
  return stages.over_seeds(run, config, workdir, "modpo", headline,
                           "The MODPO runs re-run under each seed (their seed and data order, the "
                           "sampling of the judged responses); the soups and MORL fronts are the "
                           "soups run's.")


def headline(result: dict) -> list[stages.Claim]:
  """One seed's headline numbers: the hypervolumes on the lambdas all three fronts have."""
  hv = result["hypervolume_shared_lambdas"]
  return [("hypervolume on the shared lambdas: MODPO / MORL / soups",
           (hv["modpo"], hv["morl"], hv["soups"]), None),
          ("MODPO's front above the soups' (hypervolume)", (hv["modpo"] - hv["soups"],),
           hv["modpo"] > hv["soups"])]


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """MODPO under one seed (see the module docstring)."""
  from warm_jax import data as data_lib
  from warm_jax import multi_objective
  soups_cfg = soups_config(config)
  validate(config, soups_cfg)
  config.dpo.ref_checkpoint = soups_cfg.init_from  # recorded in config.json: the SFT reference
  stages.record_config(config, workdir)
  names = tuple(soups_cfg.objectives.names)
  with open(os.path.join(config.soups, "soups.json")) as f:
    soups = json.load(f)
  job = [stages.Stage(f"modpo_{lam:.2f}",
                      lambda ctx, lam=lam: train_one(config, soups_cfg, lam, ctx.dir(f"modpo_{lam:.2f}")),
                      lambda ctx, lam=lam: {"run": run_config(config, lam, soups_scales(config)),
                                            "soups": soups["reward_models"]},
                      header=f"MODPO, weight {lam:.2f} on {names[0]}")
         for lam in config.lambdas]
  ctx = stages.run_job(config, workdir, job)
  runs = {f"{lam:.2f}": ctx.dir(f"modpo_{lam:.2f}") for lam in config.lambdas}
  info = {f"{lam:.2f}": ctx.results[f"modpo_{lam:.2f}"] for lam in config.lambdas}

  print("== the MODPO front", flush=True)
  prompts = data_lib.load_prompts(soups_cfg.data, soups_cfg.final.split, soups_cfg.final.prompts)
  sampler, judge = rewarded_soups.sampler_of(soups_cfg), rewarded_soups.criteria_fn(soups_cfg)
  points = {lam: rewarded_soups.judge_policy(soups_cfg, sampler, path, prompts, judge)
            for lam, path in runs.items()}
  f = soups["fronts"]
  shared = sorted(set(points) & set(f["morl"]) & set(f["soups"]))
  hv = lambda pts, keys: multi_objective.hypervolume_2d([pts[k]["criteria"] for k in keys])  # noqa: E731
  result = {"names": list(names), "soups_run": config.soups, "runs": runs, "train": info,
            "modpo": points, "shared_lambdas": shared,
            "hypervolume_shared_lambdas": {"modpo": hv(points, shared), "morl": hv(f["morl"], shared),
                                           "soups": hv(f["soups"], shared)},
            "seconds": {lam: ctx.job.seconds(f"modpo_{lam}") for lam in runs},
            "morl_seconds": f["cost"]["morl_seconds_per_lambda"],
            "beta": config.dpo.beta, "rl_kl_coef": soups_cfg.rl.kl_coef}
  stages.write_report(workdir, "modpo", result, tables(result, f),
                      lambda path: rewarded_soups.plot(f, names, path, extra={"MODPO": points}))
  return result


def tables(result: dict, f: dict) -> str:
  a, b = result["names"]
  lines = [f"Mean gold criteria on the soups run's {f['prompts']} held-out prompts (same prompts "
           f"and sampling seed); lambda = the weight on {a}.", "",
           f"| lambda | MODPO {a} | MODPO {b} | MORL {a} | MORL {b} | soup {a} | soup {b} | "
           "MODPO s | MORL s |", "|---|---|---|---|---|---|---|---|---|"]
  cell = lambda pts, lam, i: f"{pts[lam]['criteria'][i]:.3f}" if lam in pts else "-"  # noqa: E731
  for lam in sorted(result["modpo"]):
    morl_s = result["morl_seconds"].get(lam)
    lines.append(f"| {lam} | {cell(result['modpo'], lam, 0)} | {cell(result['modpo'], lam, 1)} | "
                 f"{cell(f['morl'], lam, 0)} | {cell(f['morl'], lam, 1)} | "
                 f"{cell(f['soups'], lam, 0)} | {cell(f['soups'], lam, 1)} | "
                 f"{result['seconds'][lam]:.0f} | {'-' if morl_s is None else format(morl_s, '.0f')} |")
  hv = result["hypervolume_shared_lambdas"]
  lines += ["", f"Hypervolume above (0, 0) on the lambdas all three have "
            f"({', '.join(result['shared_lambdas'])}): MODPO {hv['modpo']:.4f}, MORL {hv['morl']:.4f}, "
            f"soups {hv['soups']:.4f}.", "",
            f"MODPO's beta is {result['beta']}; the RL runs' KL coefficient is {result['rl_kl_coef']}"
            " (MODPO at beta has the optimum of MORLHF at KL coefficient beta)."]
  return "\n".join(lines)
