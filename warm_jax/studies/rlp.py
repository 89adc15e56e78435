"""RLP (reward learning on policy, Lang et al. 2024, arXiv 2403.19279): refine the reward model on
the PPO policy's own samples, then run PPO again from the SFT policy with the refined reward model.

`main(config, workdir)` runs the pipeline (`STAGES_OF(config)`), every stage in its own directory of the workdir (`warm_jax.stages`: a finished
stage is reused when its config and its inputs' are unchanged, a changed one is refused, an
unfinished one resumes):
  rm/         Bradley-Terry reward model on the first `pairs` preference pairs (gold-labelled on the
              embedded task: no label flips), its decoder from the SFT run;
  ppo/        PPO from the SFT policy against rm/;
  samples/    `samples.n` responses of the ppo/ policy to each of `unlabeled.prompts` prompts
              that no reward model was trained on (the paper's unlabelled split);
  uml/        RLP-UML: rm/'s training (same init, data and steps) plus `uml.weight` x the
              multi-view information bottleneck on two responses per unlabelled prompt
              (`warm_jax.train.rlp`); uml/reward_model holds its reward model without the
              bottleneck modules;
  spg_pairs/  RLP-SPG's synthetic pairs from the samples (the largest group of equal meaning
              must hold >= `spg.gamma` of a prompt's samples; chosen = its best by rm/, rejected =
              a random sample of another group);
  spg/        rm/'s training on the union of the preference pairs and the synthetic ones;
  warm_rm/    WARM of the RLP-refined reward models (`warm.members`; they share the SFT init, so
              their weights average): a combination no paper reports;
  ppo_uml/, ppo_spg/, ppo_warm/   PPO from the SFT policy again, against each refined model.

Then it measures (a) each reward model's accuracy on the ppo/ policy's own distribution: pairs of
its responses to held-out prompts (`eval`), ordered by the gold reward (ties dropped), next to its
accuracy on the held-out human(-style) pairs; (b) the gold-judged win rate of every final policy
against the SFT policy on the same prompts (`final`), the paper's simulated win-rate table in
this setting. Writes rlp.json, rlp.md (tables) and rlp.png (gold and proxy vs KL of the PPO runs).
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from warm_jax import configs, errors, stages
from warm_jax.studies import SFT_RUN
from warm_jax.studies import reward_model, rl, rl_curves

MEANINGS = ("entities", "text")  # spg.meaning: what makes two responses "say the same"
REFINED = ("uml", "spg")
RLP_FIELDS = ("rm", "pairs", "unlabeled", "samples", "uml", "spg", "warm", "eval", "final")


# ---------------------------------------------------------------- configs of the stages

def _unlabeled_apart(start, c) -> bool:
  """The unlabelled prompts are none of the reward models' preference pairs."""
  same = (c.unlabeled.split == c.rm.data.get("train_split", "train")
          and c.data.name == c.rm.data.name)
  return not same or start >= c.pairs


def _members(v) -> bool:
  return isinstance(v, (tuple, list)) and (len(v) == 0 or (
      len(v) >= 2 and len(set(v)) == len(v) and all(x in REFINED for x in v)))


def rules():
  """The pipeline's own fields, the judge's and the PPO runs' (the job config's rl, data, model,
  optim and train sections are the PPO runs'); the reward models' section config.rm and the UML
  fields are checked with their trainers' rules (`validate`)."""
  from warm_jax import configs, evaluation
  from warm_jax.train import policy, rlp as rlp_train
  return (
      *evaluation.GOLD_RULES, *policy.RULES,
      configs.Rule("rl.algorithm", lambda v, c: v == "ppo", "'ppo' (RLP's RL)"),
      configs.Rule("data.task", lambda v, c: c.data.name != "embedded_tldr" or v == c.rm.data.task,
                   "the same embedded task as config.rm.data.task: the policy's prompts and the "
                   "reward models' pairs must come from one task (the two differ)",
                   reads=("rm.data.task",)),
      configs.integer("pairs", lo=0),
      configs.text("unlabeled.split"), configs.integer("unlabeled.prompts"),
      configs.integer("unlabeled.start", lo=0),
      configs.Rule("unlabeled.start", _unlabeled_apart,
                   "past the preference pairs (it overlaps them): the unlabelled prompts must be "
                   "ones no reward model was trained on", reads=("pairs", "unlabeled.split")),
      configs.Rule("samples.n", lambda v, c: configs.is_int(v) and v >= 2,
                   "at least 2 (UML needs two views and SPG several samples)"),
      configs.integer("samples.prompt_len"), configs.integer("samples.max_new_tokens"),
      configs.integer("samples.batch_size"), configs.seed("samples.seed"),
      configs.number("samples.temperature", 0.0, lo_open=True),
      configs.fits_model("samples.prompt_len", "samples.max_new_tokens"),
      configs.number("spg.gamma", 0.0, 1.0, lo_open=True,
                     must="in (0, 1] (the paper: 0.5)"),
      configs.choice("spg.meaning", MEANINGS), configs.seed("spg.seed"),
      configs.Rule("spg.meaning", lambda v, c: v != "entities" or c.data.name == "embedded_tldr",
                   "'text' unless the data is the embedded task (its entity words)",
                   reads=("data.name",)),
      configs.Rule("warm.members", lambda v, c: _members(v),
                   f"two or more of {REFINED}, or () for no WARM"),
      configs.text("eval.split"), configs.integer("eval.prompts"),
      configs.integer("eval.samples", lo=2), configs.integer("eval.pairs", lo=0),
      configs.seed("eval.seed"),
      configs.text("final.split"), configs.integer("final.prompts"), configs.seed("final.seed"),
      configs.Rule("rm.data.batch_size", lambda v, c: configs.is_int(v) and v >= 2,
                   "at least 2 (UML's MI critic compares rows of a batch)"),
      *rlp_train.UML_RULES, *stages.SEEDS_RULES,
  )


def validate(config: ml_collections.ConfigDict) -> None:
  """Every stage's settings, before any compute; raises InputError naming the field."""
  from warm_jax import configs
  from warm_jax.train import reward_model as rm_lib
  configs.check(config, rules())
  configs.check(config.rm, rm_lib.RULES, prefix="rm.")


def rm_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict(config.rm.to_dict())
  c.init_from = config.init_from
  return c


def uml_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c = rm_config(config)
  c.uml = ml_collections.ConfigDict(config.uml.to_dict())
  return c


def ppo_config(config: ml_collections.ConfigDict, reward_path: str) -> ml_collections.ConfigDict:
  """An RL run's config: this one's PPO settings against the reward-model run at reward_path."""
  c = ml_collections.ConfigDict(config.to_dict())
  for field in RLP_FIELDS:
    del c[field]
  c.reward = ml_collections.ConfigDict(dict(kind="rm", path=reward_path))
  return c


# ---------------------------------------------------------------- data

def meaning_fn(name: str):
  """What makes two responses equal in meaning (SPG's groups). 'entities': the set of the embedded
  task's entity words (names, cities, pets, ...) a TL;DR states, the facts it asserts, as
  bi-directional entailment would judge them; 'text': the whitespace-normalised lower-cased text."""
  if name == "entities":
    from warm_jax.data import embedded
    return lambda text: frozenset(embedded.key_facts(text))
  return lambda text: " ".join(text.lower().split())


def preference_sources(config) -> dict:
  from warm_jax import data as data_lib
  from warm_jax.data import pipeline
  d = config.rm.data
  train = pipeline.Head(data_lib.load_split(d, d.get("train_split", "train")), config.pairs)
  return {"train": train, **{s: data_lib.load_split(d, s) for s in config.rm.train.eval_splits}}


def sampler_of(config, temperature: float):
  """A PolicySampler of the policy architecture with the `samples` lengths and batch."""
  from warm_jax import sampling
  return sampling.PolicySampler.of(config, config.samples, temperature)


# ---------------------------------------------------------------- stages

def train_uml(config, workdir: str, sources: dict, views: list[dict]) -> dict:
  """RLP-UML from the SFT decoder; returns its final metrics and 'reward_model': the directory of
  its reward model (the bottleneck dropped)."""
  from warm_jax import checkpoints
  from warm_jax import data as data_lib
  from warm_jax.train import init, rlp as rlp_lib
  out = os.path.join(workdir, "reward_model")
  if checkpoints.complete_steps(out):  # exported before the stage was recorded as finished
    return {"reward_model": out}
  c = uml_config(config)
  setup = rlp_lib.build_uml(c)
  init_params = init.reward_model_from_lm(c.init_from, setup, step=None)
  result = rlp_lib.train_uml(c, workdir, sources, views, data_lib.load_tokenizer(c.data),
                             {k: v for k, v in init_params.items() if k != rlp_lib.MIB})
  params = rlp_lib.reward_model_params(result["state"].params)
  checkpoints.save_params(out, params, {"config": c.to_dict(), "rlp": "uml", "run": workdir,
                                        "trained_steps": result["step"]})
  result.pop("state")
  return {"reward_model": out, **result}


def policy_accuracy(config, scorers: dict, policy_run: str) -> dict:
  """Each reward model's accuracy on pairs of the policy's own responses to held-out prompts,
  ordered by the judge (pairs the judge ties are dropped), and on the held-out preference pairs."""
  from warm_jax import data as data_lib
  from warm_jax import evaluation
  e = config.eval
  prompts = data_lib.load_prompts(config.data, e.split, e.prompts)
  samples = sampler_of(config, config.samples.temperature).sample_n(
      policy_run, prompts, e.samples, seed=e.seed, desc="held-out samples")
  flat_p = [p for p, ys in zip(prompts, samples) for _ in ys]
  flat_y = [y for ys in samples for y in ys]
  gold = np.asarray(evaluation.gold_fn(config)(flat_p, flat_y)).reshape(len(prompts), e.samples)
  i, j = np.triu_indices(e.samples, k=1)
  g = gold[:, i] - gold[:, j]
  keep = g != 0
  hp = []
  if e.pairs:
    human = data_lib.load_split(config.rm.data, e.split)
    hp = [human[k] for k in range(min(len(human), e.pairs))]
  out = {"prompts": len(prompts), "pairs": int(keep.sum()), "gold_ties": int((~keep).sum()),
         "accuracy": {}, "human_pairs_accuracy": {}, "human_pairs": len(hp)}
  for name, scorer in scorers.items():
    r = np.asarray(scorer.score(flat_p, flat_y)).reshape(len(prompts), e.samples)
    d = r[:, i] - r[:, j]
    out["accuracy"][name] = float(np.mean((np.sign(d) == np.sign(g))[keep]))
    if hp:
      rc = scorer.score([x["prompt"] for x in hp], [x["chosen"] for x in hp])
      rr = scorer.score([x["prompt"] for x in hp], [x["rejected"] for x in hp])
      out["human_pairs_accuracy"][name] = evaluation.pair_accuracy(rc, rr)
  return out


def final_win_rates(config, runs: dict[str, str]) -> dict:
  """Every policy's responses to the same prompts (same seed), judged against the SFT policy's
  and against PPO's."""
  from warm_jax import data as data_lib
  from warm_jax import evaluation
  f = config.final
  prompts = data_lib.load_prompts(config.data, f.split, f.prompts)
  sampler = sampler_of(config, config.rl.temperature)
  texts = {name: sampler.sample(path, prompts, seed=f.seed) for name, path in runs.items()}
  gold = evaluation.gold_fn(config)
  out = {}
  for name in runs:
    if name == "sft":
      continue
    out[name] = {"vs_sft": evaluation.gold_comparison(prompts, texts[name], texts["sft"], gold)}
    if name != "ppo":
      out[name]["vs_ppo"] = evaluation.gold_comparison(prompts, texts[name], texts["ppo"], gold)
  out["examples"] = [{"prompt": prompts[k], **{n: texts[n][k] for n in runs}}
                     for k in range(min(3, len(prompts)))]
  return out


def stages_of(config: ml_collections.ConfigDict, sources: dict, tokenizer) -> list:
  """The pipeline's stages (see the module docstring); WARM of the refined models only when
  config.warm.members names them."""
  S = stages.Stage
  u, s = config.unlabeled, config.samples
  uml_rm = lambda ctx: os.path.join(ctx.dir("uml"), "reward_model")  # noqa: E731
  refined = {"uml": ("uml", uml_rm), "spg": ("spg", lambda ctx: ctx.dir("spg"))}

  def make_samples(ctx):
    from warm_jax import data as data_lib
    prompts = data_lib.load_prompts(config.data, u.split, u.prompts, start=u.start)
    return {"prompts": prompts,
            "samples": sampler_of(config, s.temperature).sample_n(
                ctx.dir("ppo"), prompts, s.n, seed=s.seed, desc="policy samples")}

  def views(ctx):
    from warm_jax.train import rlp as rlp_lib
    return rlp_lib.views_from_samples(ctx.results["samples"]["prompts"],
                                      ctx.results["samples"]["samples"])

  def make_spg(ctx):
    from warm_jax.train import rlp as rlp_lib
    prompts, texts = ctx.results["samples"]["prompts"], ctx.results["samples"]["samples"]
    scorer = rl.load_scorer(ctx.dir("rm"), config)
    flat = scorer.score([p for p in prompts for _ in range(s.n)], [y for ys in texts for y in ys])
    pairs, stats = rlp_lib.synthetic_pairs(prompts, texts, np.reshape(flat, (len(prompts), s.n)),
                                           meaning_fn(config.spg.meaning), config.spg.gamma,
                                           config.spg.seed)
    return {"pairs": pairs, "stats": stats}

  def train_spg(ctx):
    from warm_jax.data import pipeline
    spg = ctx.results["spg_pairs"]
    if not spg["pairs"]:
      raise errors.InputError(f"SPG kept no prompt ({spg['stats']}); lower config.spg.gamma")
    union = {**sources, "train": pipeline.Concat(sources["train"], spg["pairs"])}
    return reward_model.main(rm_config(config), ctx.dir("spg"), union, tokenizer)

  out = [
      S("rm", lambda ctx: reward_model.main(rm_config(config), ctx.dir("rm"), sources, tokenizer),
        lambda ctx: rm_config(config), header="reward model on the preference pairs"),
      S("ppo", lambda ctx: rl.main(ppo_config(config, ctx.dir("rm")), ctx.dir("ppo")),
        lambda ctx: ppo_config(config, ctx.dir("rm")), ("rm",), header="PPO against it"),
      S("samples", make_samples,
        lambda ctx: {"policy": ctx.dir("ppo"), "unlabeled": u.to_dict(), "samples": s.to_dict(),
                     "model": config.model.to_dict()},
        ("ppo",), header="the PPO policy's samples on unlabelled prompts"),
      S("uml", lambda ctx: train_uml(config, ctx.dir("uml"), sources, views(ctx)),
        lambda ctx: uml_config(config), ("samples",), header="RLP-UML"),
      S("spg_pairs", make_spg, lambda ctx: {"spg": config.spg.to_dict(), "scorer": ctx.dir("rm")},
        ("rm", "samples"), header="RLP-SPG's synthetic pairs"),
      S("spg", train_spg, lambda ctx: rm_config(config), ("spg_pairs",),
        header="RLP-SPG: the reward model on the pairs + synthetic pairs"),
  ]
  if config.warm.members:
    paths = lambda ctx: [refined[m][1](ctx) for m in config.warm.members]  # noqa: E731

    def make_warm(ctx):
      from warm_jax import averaging
      return {"path": averaging.average_once(ctx.dir("warm_rm"), paths(ctx)),
              "members": paths(ctx)}
    out.append(S("warm_rm", make_warm, lambda ctx: {"members": paths(ctx)},
                 tuple(refined[m][0] for m in config.warm.members),
                 header="WARM of the RLP-refined reward models"))
    refined["warm"] = ("warm_rm", lambda ctx: ctx.dir("warm_rm"))
  for name, (up, rm_path) in refined.items():
    out.append(S(f"ppo_{name}",
                 lambda ctx, n=name, p=rm_path: rl.main(ppo_config(config, p(ctx)), ctx.dir(f"ppo_{n}")),
                 lambda ctx, p=rm_path: ppo_config(config, p(ctx)), (up,),
                 header=f"PPO from SFT against the {name} reward model"))
  return out


def main(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """The pipeline under each of config.seeds (`stages.over_seeds`: seed 0 in the workdir, the
  others in <workdir>/seed<s>, their spread in rlp_seeds.md); returns seed 0's result."""
  return stages.over_seeds(run, config, workdir, "rlp", headline,
                           "Every stage re-run under each seed (the reward models' and PPO's "
                           "seeds, the policy's samples, SPG's draws, the evaluation samples).")


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """The pipeline under one seed (see the module docstring)."""
  from warm_jax import data as data_lib
  configs.require(config, {"init_from": f"{SFT_RUN} (every model starts from it)"})
  validate(config)
  stages.record_config(config, workdir)
  sources = preference_sources(config)
  tokenizer = data_lib.load_tokenizer(config.rm.data)
  ctx = stages.run_job(config, workdir, stages_of(config, sources, tokenizer))
  d = ctx.dir
  refined = {"uml": os.path.join(d("uml"), "reward_model"), "spg": d("spg")}
  if config.warm.members:
    refined["warm"] = d("warm_rm")
  runs = {"sft": config.init_from, "ppo": d("ppo"), **{f"ppo_{n}": d(f"ppo_{n}") for n in refined}}

  print("== evaluation", flush=True)
  scorers = {name: rl.load_scorer(p, config) for name, p in {"rm": d("rm"), **refined}.items()}
  result = {"refined": refined, "runs": runs, "spg": ctx.results["spg_pairs"]["stats"],
            "policy_accuracy": policy_accuracy(config, scorers, d("ppo")),
            "final": final_win_rates(config, runs),
            "curves": {n: rl_curves.key_points(rl_curves.curves(p)) for n, p in runs.items()
                       if n != "sft"},
            "uml": uml_trajectory(d("uml")),
            "seconds": {st: ctx.job.seconds(st) for st in ctx.job.rows}}
  curves = {n: rl_curves.curves(p) for n, p in runs.items() if n != "sft"}
  plot_uml(result["uml"], os.path.join(workdir, "uml_mi.png"))
  stages.write_report(workdir, "rlp", result, tables(result),
                      lambda path: rl_curves.plot(curves, path))
  return result


def headline(result: dict) -> list[stages.Claim]:
  """One seed's headline numbers: each refined reward model's accuracy on the PPO policy's pairs
  against the reward model's, RLP-UML's MI estimate at the end (and at its highest) and whether
  it learnt (`uml_trajectory`), and each final policy's gold win rate against SFT (and, for the
  refined ones, against PPO)."""
  acc, f, u = result["policy_accuracy"]["accuracy"], result["final"], result["uml"]
  rows = [(f"accuracy on the policy's pairs: {LABELS[n]} / {LABELS['rm']}", (acc[n], acc["rm"]),
           acc[n] > acc["rm"]) for n in acc if n != "rm"]
  rows.append((f"RLP-UML's MI estimate, mean of the last 20% of training / highest (held: the mean "
               f"above -2 ln 2 + {MI_MARGIN})", (u["mi_end_mean"], u["mi_max"]),
               u["learnt"]))
  rows.append(("PPO: win rate vs SFT", (f["ppo"]["vs_sft"]["win_rate"],), None))
  for name in (n for n in result["runs"] if n not in ("sft", "ppo")):
    r = f[name]
    rows.append((f"PPO against {LABELS[name[4:]]}: win rate vs SFT / vs PPO",
                 (r["vs_sft"]["win_rate"], r["vs_ppo"]["win_rate"]), r["vs_ppo"]["win_rate"] > 0.5))
  return rows


NO_INFORMATION = -2 * float(np.log(2))  # the JSD estimate when the critic tells nothing apart
# How far above NO_INFORMATION the estimate must stay (mean of the last 20% of the logged steps)
# for the bottleneck to count as having learnt something: at no information it scatters by about
# 0.01 around -2 ln 2 on the embedded task.
MI_MARGIN = 0.05


def uml_trajectory(run: str) -> dict:
  """RLP-UML's logged training curve: step, the Jensen-Shannon MI estimate, the symmetrised KL
  and beta; where the estimate starts, peaks and ends; its mean over the last 20% of the logged
  steps (mi_end_mean) and whether that stayed more than MI_MARGIN above no information
  (learnt)."""
  from warm_jax.train.metrics import read_metrics
  rows = read_metrics(run, "train")
  out = {k: [float(r[m]) for r in rows] for k, m in (("step", "step"), ("mi", "mi_jsd"),
                                                     ("skl", "skl"), ("beta", "beta")) if
         all(m in r for r in rows)}
  mi = np.asarray(out["mi"])
  i = int(np.argmax(mi))
  end = float(mi[len(mi) - max(1, len(mi) // 5):].mean())  # over the last 20% of the logs
  out.update(mi_first=float(mi[0]), mi_max=float(mi[i]), mi_max_step=int(out["step"][i]),
             mi_last=float(mi[-1]), mi_end_mean=end, no_information=NO_INFORMATION,
             learnt=end > NO_INFORMATION + MI_MARGIN)
  return out


def plot_uml(u: dict, path: str) -> None:
  """The MI estimate (and the symmetrised KL, beta) along RLP-UML's training."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from warm_jax.train import metrics
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
  axes[0].plot(u["step"], u["mi"], "-", label="JSD MI estimate")
  axes[0].axhline(u["no_information"], color="k", ls=":", label="no information (-2 ln 2)")
  axes[0].set(xlabel="step", ylabel="I_JSD(z1; z2)", title="RLP-UML: what two responses share")
  axes[0].legend(fontsize=8)
  axes[1].plot(u["step"], u["skl"], "-", color="tab:orange", label="symmetrised KL")
  if "beta" in u:
    twin = axes[1].twinx()
    twin.plot(u["step"], u["beta"], "--", color="tab:gray", label="beta")
    twin.set(yscale="log", ylabel="beta (dashed)")
  axes[1].set(xlabel="step", ylabel="D_SKL(p(z|v1) || p(z|v2))", title="the bottleneck")
  fig.tight_layout()
  metrics.save_figure(fig, path, dpi=110)


LABELS = {"rm": "the reward model (pairs only)", "uml": "RLP-UML", "spg": "RLP-SPG",
          "warm": "WARM of the RLP-refined models"}


def tables(result: dict) -> str:
  a = result["policy_accuracy"]
  lines = [f"Reward-model accuracy on the PPO policy's own responses ({a['pairs']} gold-ordered "
           f"pairs of {a['prompts']} held-out prompts; {a['gold_ties']} gold ties dropped) and on "
           f"{a['human_pairs']} held-out preference pairs:", "",
           "| reward model | policy pairs | preference pairs |", "|---|---|---|"]
  for name, acc in a["accuracy"].items():
    human = a["human_pairs_accuracy"].get(name)
    lines.append(f"| {LABELS.get(name, name)} | {acc:.3f} | "
                 f"{'-' if human is None else format(human, '.3f')} |")
  u = result["uml"]
  lines += ["", f"RLP-UML's Jensen-Shannon MI estimate between the codes of two responses to one "
            f"prompt (no information: {u['no_information']:.3f}): {u['mi_first']:.3f} at the first "
            f"log, at most {u['mi_max']:.3f} (step {u['mi_max_step']}), {u['mi_last']:.3f} at the "
            f"end, {u['mi_end_mean']:.3f} over the last 20% of the logged steps: the bottleneck "
            + ("learnt" if u["learnt"] else "did not learn")
            + f" what two responses share (the mean more than {MI_MARGIN} above no information; "
            "uml_mi.png)."]
  sp = result["spg"]
  lines += ["", f"SPG kept {sp['kept']} of {sp['prompts']} prompts (mean confidence "
            f"{sp['mean_confidence']:.2f}; prompts whose samples all meant one thing: "
            f"{sp['one_meaning']}).", "",
            "| PPO against | win rate vs SFT | vs PPO | gold | gold peak in training (step, KL) | KL end |",
            "|---|---|---|---|---|---|"]
  f, cur = result["final"], result["curves"]
  for name in [n for n in result["runs"] if n != "sft"]:
    label = LABELS["rm" if name == "ppo" else name[4:]]
    r, k = f[name], cur[name]
    vs_ppo = (f"{r['vs_ppo']['win_rate']:.1%} +- {r['vs_ppo']['win_rate_stderr']:.1%}"
              if "vs_ppo" in r else "-")
    lines.append(f"| {label} | {r['vs_sft']['win_rate']:.1%} +- {r['vs_sft']['win_rate_stderr']:.1%}"
                 f" | {vs_ppo} | {r['vs_sft']['gold_a']:.3f} | {k['gold_peak']:.3f} "
                 f"({k['peak_step']}, {k['peak_kl']:.2f}) | {k['kl_end']:.2f} |")
  sft = f["ppo"]["vs_sft"]
  lines += ["", f"The SFT policy's gold on the same {sft['n']} prompts: {sft['gold_b']:.3f}. Win "
            "rates: gold-judged, ties count one half, +- one standard error of the mean per-prompt "
            "score (sampling of the prompts only: not the variation between PPO runs). "
            + rl_curves.peak_note(cur["ppo"]["peak_window"]).split(". ", 1)[1]]
  return "\n".join(lines)
