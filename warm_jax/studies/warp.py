"""WARP (Ramé et al. 2024, arXiv 2406.16768): weight averaged rewarded policies, on the embedded
task, against the gold reward, with the main job's WARM reward model as the reward.

A job of stages (`warm_jax.stages`) in one workdir:

    reinforce_kl<beta>  REINFORCE from the SFT policy, anchored to it (a few KL coefficients):
                        the baseline front
    warp_1 .. warp_I    one WARP iteration each: M RL runs from the iteration's initialisation
                        with the EMA anchor (rate warp.ema_rate) and different seeds; the SLERP
                        of their M task vectors (`averaging.slerp_task_vectors`, base: the
                        initialisation) and, for comparison, their linear average (LERP); the
                        next initialisation LITI(init, SLERP, warp.eta) = (1 - eta) init +
                        eta SLERP
    fronts              every policy judged on the same prompts with the same sampling seed:
                        KL(policy || SFT), gold reward, proxy reward (the WARM RM); the fronts
                        of REINFORCE (one point per KL coefficient), of the EMA anchor alone
                        (LITI of one EMA-anchored run towards the SFT), of each WARP iteration
                        (LITI of its SLERP towards its initialisation, over warp.etas), of LERP
                        (iteration 1); the paper's claims checked on them; front.png

Each RL run is `studies.rl.main` (resumes from its checkpoints); a re-run reuses finished stages;
the runs share compiled programs through a compilation cache in the workdir.
KL is estimated on the policy's own samples (temperature 1) as the sum over response tokens of
log pi - log pi_SFT, averaged over front.prompts prompts x front.samples samples.
"""

from __future__ import annotations

import os
import resource
import sys
import time
import types

import ml_collections
import numpy as np

from warm_jax import checkpoints, configs, evaluation, stages
from warm_jax.studies import SFT_RUN
from warm_jax.studies.warm import label_noise
from warm_jax.train import policy

RULES = (
    *policy.RULES, *evaluation.GOLD_RULES,
    configs.integer("warp.iterations"),
    configs.integer("warp.m", lo=2),
    configs.number("warp.ema_rate", 0.0, 1.0, lo_open=True,
                   must="in (0, 1] (the EMA anchor's update rate mu)"),
    configs.distinct_numbers("warp.etas", 0.0, 1.0, min_len=2),
    configs.Rule("warp.etas", lambda v, c: 0 in v and 1 in v,
                 "a LITI grid holding 0 (the initialisation) and 1 (the merged policy)"),
    configs.number("warp.eta", 0.0, 1.0, must="in [0, 1] (LITI towards the initialisation)"),
    configs.sequence("baseline.kl_coefs", lambda v: configs.is_number(v) and v >= 0,
                     "one or more distinct KL coefficients >= 0", distinct=True),
    configs.text("front.split"), configs.integer("front.prompts"),
    configs.integer("front.samples"), configs.integer("front.batch_size"),
    configs.seed("front.seed"),
)


def validate(config: ml_collections.ConfigDict) -> None:
  """`RULES`: every field, before anything is read or trained."""
  configs.check(config, RULES)


# ----------------------------------------------------------------------------- the RL runs

def run_config(config: ml_collections.ConfigDict, init_from: str, reward_path: str, *,
               kl_coef: float, ema: bool, seed_offset: int = 0) -> ml_collections.ConfigDict:
  """An RL run's config (`studies.rl`): this one's RL settings from `init_from` against the
  reward model at `reward_path`; with `ema` anchored to the EMA (rate warp.ema_rate); its seeds
  (sampling, data order) offset by `seed_offset`."""
  c = ml_collections.ConfigDict(config.to_dict())
  for field in ("label_noise", "warp", "baseline", "front"):
    del c[field]
  c.init_from = init_from
  c.reward = ml_collections.ConfigDict(dict(kind="rm", path=reward_path))
  c.rl.kl_coef = kl_coef
  if ema:
    c.rl.anchor, c.rl.ema_rate = "ema", config.warp.ema_rate
  c.seed = config.seed + seed_offset
  c.data.seed = config.data.seed + seed_offset
  return c


def _reward_path(ctx) -> str:
  ln, _ = label_noise.load(ctx.config.label_noise)
  return ln["warm"]


def _kl_name(beta: float) -> str:
  return f"reinforce_kl{beta:g}"


def _reinforce(beta: float) -> stages.Stage:
  name = _kl_name(beta)

  def config(ctx):
    return run_config(ctx.config, ctx.config.init_from, _reward_path(ctx), kl_coef=beta, ema=False)

  def run(ctx):
    from warm_jax.studies import rl
    return {"run": name, **_floats(rl.main(config(ctx), ctx.dir(name)))}

  return stages.Stage(name, run=run, config=config,
                      header=f"REINFORCE anchored to the SFT policy, KL {beta:g}")


def _floats(result: dict) -> dict:
  return {k: v for k, v in result.items() if isinstance(v, (int, float))}


def _init_of(ctx, i: int) -> str:
  """Iteration i's initialisation: the SFT run, or iteration i - 1's LITI point."""
  return ctx.config.init_from if i == 1 else os.path.join(ctx.dir(f"warp_{i - 1}"), "next_init")


def _iteration(i: int) -> stages.Stage:
  name = f"warp_{i}"

  def run_configs(ctx):
    return [run_config(ctx.config, _init_of(ctx, i), _reward_path(ctx),
                       kl_coef=ctx.config.rl.kl_coef, ema=True, seed_offset=1000 * i + j)
            for j in range(ctx.config.warp.m)]

  def config(ctx):
    return {"runs": [c.to_dict() for c in run_configs(ctx)], "eta": ctx.config.warp.eta}

  def run(ctx):
    from warm_jax.studies import rl
    d = ctx.dir(name)
    runs = []
    for j, c in enumerate(run_configs(ctx)):
      runs.append(os.path.join(d, f"run_{j}"))
      print(f"WARP iteration {i}, RL run {j + 1}/{len(run_configs(ctx))} (EMA anchor) -> "
            f"{runs[-1]}", flush=True)
      rl.main(c, runs[-1])
    merge_iteration(ctx.config, _init_of(ctx, i), runs, d)
    return {"init": _init_of(ctx, i), "runs": runs, "slerp": os.path.join(d, "slerp"),
            "lerp": os.path.join(d, "lerp"), "next_init": os.path.join(d, "next_init")}

  return stages.Stage(name, run=run, config=config,
                      upstream=(f"warp_{i - 1}",) if i > 1 else (),
                      header=f"WARP iteration {i}")


def merge_iteration(config, init_from: str, runs: list[str], workdir: str) -> None:
  """Writes the SLERP of the runs' task vectors (base: `init_from`), their linear average and
  the next initialisation LITI(init, SLERP, warp.eta) as params checkpoints under `workdir`
  (each once: an existing one is kept)."""
  from warm_jax import averaging, checkpoints
  policies = Policies(config)
  init = policies.load(init_from)
  members = [policies.load(r) for r in runs]
  slerp = averaging.slerp_task_vectors(init, members)
  outputs = {"slerp": slerp, "lerp": averaging.average(members),
             "next_init": averaging.liti(init, slerp, config.warp.eta)}
  for name, params in outputs.items():
    path = os.path.join(workdir, name)
    if not checkpoints.complete_steps(path):
      checkpoints.save_params(path, params, {"config": config.to_dict(), "warp": {
          "merge": name, "init": init_from, "runs": runs, "eta": config.warp.eta}})


# ----------------------------------------------------------------------------- the fronts

class Policies:
  """The policies of one architecture (config.model) on one device, and the front evaluation:
  `judge(params)` samples front.samples responses to each of front.prompts prompts of
  front.split (same prompts, same seed for every policy) and returns the mean KL to the SFT
  policy (`sft_params`: the same at every call), gold reward, proxy reward (the WARM RM) and
  response length."""

  def __init__(self, config, reward_fn=None, gold_fn=None):
    from warm_jax import data as data_lib
    from warm_jax.train import init
    self.config = config
    self.setup = policy.build(_plain(config))
    self._init = init
    self.reward_fn, self.gold_fn = reward_fn, gold_fn
    self.tokenizer = data_lib.load_tokenizer(config.data) if reward_fn is not None else None
    self._rollout = None

  def load(self, path: str):
    """A language-model run's (or params checkpoint's) params on this setup's mesh."""
    return self._init.load_lm_params(path, self.config.model, self.setup.mesh, self.setup.rules)

  def judge(self, params, sft_params) -> dict:
    import jax

    from warm_jax import data as data_lib
    from warm_jax import losses
    from warm_jax import sharding as shd
    from warm_jax.data import pipeline
    from warm_jax.train.rollout import Rollout
    f, c = self.config.front, self.config
    if self._rollout is None:  # one for every policy: compiled once
      rl_cfg = ml_collections.ConfigDict(c.rl.to_dict())
      rl_cfg.samples_per_prompt = f.samples
      self._rollout = Rollout(self.setup.model, rl_cfg, self.tokenizer, self.reward_fn,
                              self.gold_fn, sft_params, self.setup.batch_sharding, f.seed)
    rollout = self._rollout
    source = data_lib.load_split(c.data, f.split)
    encode = pipeline.PromptEncoder(self.tokenizer, c.data.max_len)
    state = types.SimpleNamespace(params=params, step=0)  # what a rollout reads of a state
    sums = np.zeros(4)
    total = 0.0
    for batch in pipeline.epoch_batches(source, encode, f.batch_size, limit=f.prompts):
      w = np.repeat(batch.pop("weight"), f.samples)
      with jax.set_mesh(self.setup.mesh):
        r = rollout(state, shd.to_global(batch, self.setup.batch_sharding))
      m = np.asarray(r["mask"], np.float32)
      kl = np.asarray(losses.sequence_kl(r["sample_logp"], r["ref_logp"], m))
      for i, v in enumerate((kl, np.asarray(r["gold"]), np.asarray(r["reward"]), m.sum(1))):
        sums[i] += float(np.sum(w * v))
      total += float(w.sum())
    kl, gold, proxy, length = sums / total
    return {"kl": kl, "gold": gold, "proxy": proxy, "length": length}


def _plain(config):
  """The RL settings of `config` as a trainer config (the study's own sections dropped)."""
  c = ml_collections.ConfigDict(config.to_dict())
  for field in ("label_noise", "warp", "baseline", "front"):
    if field in c:
      del c[field]
  return c


def front_points(config, results: dict, policies: Policies, workdir: str) -> dict:
  """{curve: [point]}: every policy of the job judged once (`Policies.judge`); a point is
  {'kl', 'gold', 'proxy', 'length', 'label'} (label: the KL coefficient, eta, or run)."""
  from warm_jax import averaging
  sft = policies.load(config.init_from)
  cache: dict = {}

  def judge(key, params):
    if key not in cache:
      print(f"judging {key}", flush=True)
      cache[key] = policies.judge(params, sft)
    return dict(cache[key])

  curves: dict = {"REINFORCE (SFT anchor)": [{**judge("sft", sft), "label": "SFT"}]}
  for beta in config.baseline.kl_coefs:
    name = _kl_name(beta)
    curves["REINFORCE (SFT anchor)"].append(
        {**judge(name, policies.load(os.path.join(workdir, name))),
         "label": f"KL {beta:g}"})
  curves["REINFORCE (SFT anchor)"].sort(key=lambda p: p["kl"])
  etas = sorted(config.warp.etas)
  for i in range(1, config.warp.iterations + 1):
    it = results[f"warp_{i}"]
    init_key = "sft" if i == 1 else f"warp_{i - 1}/next_init"
    init = sft if i == 1 else policies.load(it["init"])
    runs = [policies.load(r) for r in it["runs"]]
    curves[f"iteration {i}: RL runs (EMA anchor)"] = [
        {**judge(f"warp_{i}/run_{j}", p), "label": f"run {j}"} for j, p in enumerate(runs)]
    merged = {"SLERP": policies.load(it["slerp"])}
    if i == 1:
      merged["LERP"] = policies.load(it["lerp"])
      merged["EMA anchor alone"] = runs[0]
    for kind, end in merged.items():
      points = []
      for eta in etas:
        if eta == 0:
          points.append({**judge(init_key, init), "label": "eta 0"})
        else:
          key = f"warp_{i}/{kind}/eta{eta:g}"
          if kind == "EMA anchor alone" and eta == 1:
            key = f"warp_{i}/run_0"
          if kind == "SLERP" and eta == config.warp.eta and i < config.warp.iterations:
            key = f"warp_{i}/next_init"
          points.append({**judge(key, averaging.liti(init, end, eta)), "label": f"eta {eta:g}"})
      label = ("EMA anchor alone (LITI of run 0)" if kind == "EMA anchor alone" else
               f"{'WARP' if kind == 'SLERP' else 'LERP'} iteration {i} (LITI of its {kind})")
      curves[label] = points
  return curves


def pareto(points: list[dict], key: str = "gold") -> list[dict]:
  """The points no other point beats on both lower KL and higher `key`, by increasing KL."""
  out = []
  for p in sorted(points, key=lambda p: (p["kl"], -p[key])):
    if not out or p[key] > out[-1][key]:
      out.append(p)
  return out


def gain(a: list[dict], b: list[dict], key: str = "gold") -> dict:
  """How far front `a` lies above front `b` (`key` against KL): for each point of a's Pareto
  front within the KL range of b's, its `key` minus b's Pareto front linearly interpolated at
  its KL; {'mean', 'min', 'n'} (n = 0: the fronts share no KL range)."""
  fb = pareto(b, key)
  kl_b, val_b = [p["kl"] for p in fb], [p[key] for p in fb]
  diffs = [p[key] - float(np.interp(p["kl"], kl_b, val_b)) for p in pareto(a, key)
           if kl_b[0] <= p["kl"] <= kl_b[-1]]
  return {"mean": float(np.mean(diffs)) if diffs else float("nan"),
          "min": float(np.min(diffs)) if diffs else float("nan"), "n": len(diffs)}


def fronts(ctx) -> dict:
  """The fronts stage: every policy judged, the fronts, written as fronts.json / .md / .png."""
  from warm_jax.studies import rl
  config = ctx.config
  rl_cfg = run_config(config, config.init_from, _reward_path(ctx), kl_coef=config.rl.kl_coef,
                      ema=False)
  reward_fn, gold_fn = rl.make_reward_fns(rl_cfg)
  policies = Policies(config, reward_fn, gold_fn)
  result = {"curves": front_points(config, ctx.results, policies, ctx.workdir), "m": config.warp.m,
            "iterations": config.warp.iterations, "eta": config.warp.eta,
            "ema_rate": config.warp.ema_rate, "kl_coef": config.rl.kl_coef,
            "prompts": config.front.prompts, "samples": config.front.samples}
  stages.write_report(ctx.dir("fronts"), "fronts", result, table(result),
                      lambda path: plot(result, path), plot_file="front.png")
  return result


# ----------------------------------------------------------------------------- report

def table(result: dict) -> str:
  """Markdown: every judged policy, curve by curve."""
  lines = ["| curve | point | KL(policy \\|\\| SFT) | gold | proxy (WARM RM) | length |",
           "|---|---|---:|---:|---:|---:|"]
  for curve, points in result["curves"].items():
    for p in points:
      lines.append(f"| {curve} | {p['label']} | {p['kl']:.2f} | {p['gold']:.3f} | "
                   f"{p['proxy']:+.3f} | {p['length']:.1f} |")
  return "\n".join(lines)


def plot(result: dict, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from warm_jax.train import metrics
  fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
  for ax, key in zip(axes, ("gold", "proxy")):
    for curve, points in result["curves"].items():
      pts = sorted(points, key=lambda p: p["kl"])
      if curve.endswith("(EMA anchor)"):
        ax.plot([p["kl"] for p in pts], [p[key] for p in pts], "x", ms=7, label=curve)
      else:
        ax.plot([p["kl"] for p in pts], [p[key] for p in pts], "o-", ms=4, label=curve)
    ax.set(xlabel="KL(policy || SFT) [nats]",
           ylabel="gold reward" if key == "gold" else "proxy reward (WARM RM, optimised)",
           title=f"KL-{key} fronts")
  axes[0].legend(fontsize=7)
  fig.tight_layout()
  metrics.save_figure(fig, path, dpi=110)


def _curve(result: dict, prefix: str) -> list[dict]:
  return next(v for k, v in result["curves"].items() if k.startswith(prefix))


def claims(results: dict) -> list:
  """WARP's claims, checked on the fronts: (claim, held, the numbers)."""
  r = results["fronts"]
  out = []
  base = r["curves"]["REINFORCE (SFT anchor)"]
  same_beta = next((p for p in base if p["label"] == f"KL {r['kl_coef']:g}"), None)
  runs1 = r["curves"]["iteration 1: RL runs (EMA anchor)"]
  if same_beta is not None:
    ema = runs1[0]
    out.append((f"EMA anchor: at the same KL coefficient ({r['kl_coef']:g}) the policy goes further "
                "than with the SFT anchor (higher proxy reward and KL)",
                ema["proxy"] > same_beta["proxy"] and ema["kl"] > same_beta["kl"],
                f"proxy {ema['proxy']:+.3f} vs {same_beta['proxy']:+.3f}, KL {ema['kl']:.2f} vs "
                f"{same_beta['kl']:.2f}, gold {ema['gold']:.3f} vs {same_beta['gold']:.3f}"))
  for key in ("proxy", "gold"):
    out.append(_front_claim(f"EMA anchor + LITI: its front lies above REINFORCE's ({key})",
                            gain(_curve(r, "EMA anchor alone"), base, key), key))
  slerp1 = [p for p in _curve(r, "WARP iteration 1") if p["label"] == "eta 1"][0]
  lerp1 = [p for p in _curve(r, "LERP iteration 1") if p["label"] == "eta 1"][0]
  for key in ("proxy", "gold"):
    best = max(p[key] for p in runs1)
    out.append((f"SLERP of the M = {r['m']} policies: higher {key} reward than each of them",
                slerp1[key] > best, f"SLERP {slerp1[key]:+.3f}, best run {best:+.3f} (KL "
                f"{slerp1['kl']:.2f} vs {max(p['kl'] for p in runs1):.2f})"))
  out.append(("SLERP vs LERP: SLERP keeps more reward, LERP reduces KL more",
              slerp1["proxy"] > lerp1["proxy"] and lerp1["kl"] < slerp1["kl"],
              f"proxy SLERP {slerp1['proxy']:+.3f} vs LERP {lerp1['proxy']:+.3f}; KL "
              f"{slerp1['kl']:.2f} vs {lerp1['kl']:.2f}; gold {slerp1['gold']:.3f} vs "
              f"{lerp1['gold']:.3f}"))
  for key in ("proxy", "gold"):
    out.append(_front_claim(
        f"LITI of the SLERP (WARP iteration 1): its front lies above REINFORCE's ({key})",
        gain(_curve(r, "WARP iteration 1"), base, key), key))
  if r["iterations"] >= 2:
    last = r["iterations"]
    for key in ("proxy", "gold"):
      g = gain(_curve(r, f"WARP iteration {last}"), _curve(r, "WARP iteration 1"), key)
      peak = max(p[key] for p in _curve(r, f"WARP iteration {last}"))
      peak1 = max(p[key] for p in _curve(r, "WARP iteration 1"))
      claim, held, numbers = _front_claim(
          f"iterating: WARP iteration {last}'s front lies above iteration 1's and reaches a "
          f"higher {key} reward", g, key)
      out.append((claim, held and peak > peak1, f"{numbers}; best {peak:+.3f} vs {peak1:+.3f}"))
  return out


def _front_claim(claim: str, g: dict, key: str) -> tuple:
  """(claim, held, numbers) of 'front a lies above front b' from `gain`: not measured (None) when
  the two fronts share no KL range."""
  if g["n"] == 0:
    return claim, None, "not measured: the two fronts share no KL range"
  return (claim, g["mean"] > 0, f"mean {key} gain at matched KL {g['mean']:+.3f} (min "
          f"{g['min']:+.3f}, {g['n']} points)")


def _section(results: dict) -> str:
  r = results["fronts"]
  return "\n".join([
      f"## Fronts ({r['prompts']} prompts x {r['samples']} samples, same seed for every policy)",
      "", f"WARP: M = {r['m']} RL runs per iteration (EMA anchor, mu = {r['ema_rate']:g}, KL "
      f"{r['kl_coef']:g}), {r['iterations']} iterations, next initialisation at eta = "
      f"{r['eta']:g}. KL is to the SFT policy; gold is the task's judge; proxy is the WARM RM "
      "the runs optimise.", "", table(r), "", "![fronts](plots/front.png)"])


def stages_of(config: ml_collections.ConfigDict) -> list[stages.Stage]:
  """The job's stages for this config (its KL coefficients and iterations)."""
  runs = [_reinforce(b) for b in config.baseline.kl_coefs]
  iterations = [_iteration(i) for i in range(1, config.warp.iterations + 1)]
  every = tuple(s.name for s in runs + iterations)
  return runs + iterations + [stages.Stage(
      "fronts", run=fronts, config=lambda ctx: ml_collections.ConfigDict(ctx.config.to_dict()),
      upstream=every, header="the fronts", report=_section, plot="front.png", claims=claims)]


def main(config: ml_collections.ConfigDict, workdir: str) -> dict:
  from warm_jax.train.metrics import format_seconds
  configs.require(config, {"init_from": SFT_RUN, "label_noise": label_noise.WORKDIR})
  validate(config)
  label_noise.load(config.label_noise)  # a finished label-noise run, before any training
  t0 = time.time()
  job = stages_of(config)
  ctx = stages.run_job(config, workdir, job)
  stages.copy_plots(job, workdir)
  usage = resource.getrusage(resource.RUSAGE_SELF)
  cpu = usage.ru_utime + usage.ru_stime
  text = report(config, ctx.results, ctx.job.rows, job, time.time() - t0, cpu)
  path = os.path.join(workdir, "results.md")
  checkpoints.write_atomic(path, text)
  print(text)
  print(f"wrote {path} and {workdir}/plots/ ({format_seconds(time.time() - t0)}, CPU "
        f"{format_seconds(cpu)})")
  return ctx.results


def report(config, results: dict, ledger: dict, job: list, wall: float, cpu: float) -> str:
  """The job's report: the command, wall and CPU time, the fronts, the claims."""
  from warm_jax.train.metrics import format_seconds
  times = ", ".join(f"{s.name} {format_seconds(ledger[s.name]['seconds'])}" for s in job)
  total = sum(ledger[s.name]["seconds"] for s in job)
  command = (" ".join(["python", *sys.argv]) if sys.argv and sys.argv[0].endswith("warp.py")
             else f"python experiments/warp.py --config=experiments/warp.py:{config.variant}")
  head = [f"# WARP on the embedded task (`experiments/warp.py:{config.variant}`)", "",
          f"Generated by `{command}` on {os.cpu_count()} CPU cores; stage wall times: {times} "
          f"(total {format_seconds(total)}); this invocation: wall {format_seconds(wall)}, CPU "
          f"(user + system, all threads) {format_seconds(cpu)}.", ""]
  return ("\n".join(head) + "\n" + "\n\n".join(stages.report_sections(job, results))
          + "\n\n## WARP's claims on this run\n\n" + stages.claims_table(job, results) + "\n")
