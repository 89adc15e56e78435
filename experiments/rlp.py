r"""RLP (reward learning on policy, Lang et al. 2024, arXiv 2403.19279): refine the reward model on
the PPO policy's own samples, then run PPO again from the SFT policy with the refined reward model.

    python experiments/rlp.py --config=experiments/rlp.py:cpu --config.init_from=runs/warm/sft \
        --workdir=runs/rlp

The pipeline, every stage in its own directory of the workdir (`warm_jax.stages`: a finished
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

Variants: tiny (tests), cpu (the embedded task on 2 CPU cores), paper (AlpacaFarm-style:
instructions, human preferences, unlabelled split; a reward-model oracle as judge; set the paths).
"""

from __future__ import annotations

import os
import sys

import ml_collections
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import plot_rl  # noqa: E402
import reward_model  # noqa: E402
import rl  # noqa: E402

VARIANTS = ("tiny", "cpu", "paper")
MEANINGS = ("entities", "text")  # spg.meaning: what makes two responses "say the same"
REFINED = ("uml", "spg")
RLP_FIELDS = ("rm", "pairs", "unlabeled", "samples", "uml", "spg", "warm", "eval", "final")


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  from warm_jax.train import rlp as rlp_lib
  c = rl.get_config(variant)  # the PPO runs: policy, prompts, judge
  del c.reward  # the reward models are this experiment's own
  c.rl.algorithm = "ppo"
  c.rm = reward_model.get_config(variant)  # every reward model's training (init_from: the SFT run)
  c.pairs = 2048  # the preference pairs D: the first `pairs` of the rm data's train split (0: all)
  # The unlabelled prompts U: `prompts` prompts of `split` from index `start` (past D's).
  c.unlabeled = ml_collections.ConfigDict(dict(split="train", start=2048, prompts=512))
  c.samples = ml_collections.ConfigDict(dict(n=10, temperature=1.0, prompt_len=48,
                                             max_new_tokens=40, batch_size=128, seed=7))
  c.uml = rlp_lib.default_uml_config()
  c.spg = ml_collections.ConfigDict(dict(gamma=0.5, meaning="entities", seed=0))
  c.warm = ml_collections.ConfigDict(dict(members=REFINED))
  # RM accuracy: `samples` policy responses to each of `prompts` prompts of `split` (every pair the
  # judge does not tie), and the first `pairs` preference pairs of the same split (0: none).
  c.eval = ml_collections.ConfigDict(dict(split="test", prompts=256, samples=4, seed=11, pairs=512))
  c.final = ml_collections.ConfigDict(dict(split="test", prompts=256, seed=1234))

  if variant in ("tiny", "cpu"):
    # Gold-labelled pairs (RLP's setting): the embedded task without WARM's label flips.
    c.data.task.flip_fraction = 0.0
    c.rm.data.task = c.data.task
    c.rl.update(kl_coef=0.02, samples_per_prompt=4)  # AlpacaFarm's PPO KL coefficient
    c.uml.update(z_dim=32, hidden=128)
  if variant == "cpu":
    c.optim.lr = 3e-5
    c.train.update(num_steps=150, eval_every=50, ckpt_every=50)
  elif variant == "tiny":
    c.pairs = 48
    c.unlabeled.update(start=48, prompts=8)
    c.samples.update(n=4, prompt_len=32, max_new_tokens=16, batch_size=16)
    c.uml.update(z_dim=4, hidden=16)
    c.eval.update(prompts=8, samples=3)
    c.final.update(prompts=8)
    c.rl.update(ppo_minibatches=2)
  elif variant == "paper":
    # AlpacaFarm (Dubois et al. 2023) splits as in the paper: 10k human preferences, 20k
    # unlabelled instructions; PPO with AlpacaFarm's defaults (KL 0.02, lr 3e-6 approximated);
    # a reward-model oracle (set gold.path, e.g. one trained on the simulated preferences) judges.
    c.data.name = "alpaca_farm/instructions"
    c.data.train_split = "unlabeled"
    c.train.eval_splits = ("val",)
    c.rl.update(kl_coef=0.02, samples_per_prompt=1, max_new_tokens=128)
    c.model.max_len = c.data.max_len + c.rl.max_new_tokens
    c.optim.update(lr=3e-6)
    c.rm.data.name = "alpaca_farm/human_preference"
    c.rm.train.eval_splits = ()
    c.pairs = 0
    c.unlabeled.update(split="unlabeled", start=0, prompts=20_000)
    c.samples.update(n=10, temperature=1.0, prompt_len=384, max_new_tokens=128, batch_size=256)
    c.spg.meaning = "text"  # no entailment model offline: exact (normalised) text
    c.eval.update(split="evaluation", prompts=805, pairs=0)  # no held-out human pairs
    c.final.update(split="evaluation", prompts=805)
  return c


# ---------------------------------------------------------------- configs of the stages

def validate(config: ml_collections.ConfigDict) -> None:
  """Every stage's settings, before any compute; raises ValueError naming the field."""
  from warm_jax import evaluation
  from warm_jax.train import policy, rlp as rlp_lib
  from warm_jax.train import reward_model as rm_lib
  evaluation.validate_gold(config)
  policy.validate_config(ppo_config(config, "<rm>"))
  rm_lib.validate_config(config.rm)
  rlp_lib.validate_uml(config.uml, config.rm.data.batch_size)
  if config.data.name == "embedded_tldr" and config.data.task != config.rm.data.task:
    raise ValueError("config.data.task and config.rm.data.task differ: the policy's prompts and the "
                     "reward models' pairs must come from one embedded task (set both)")
  if config.rl.algorithm != "ppo":
    raise ValueError(f"config.rl.algorithm={config.rl.algorithm!r}: RLP's RL is 'ppo'")
  if config.pairs < 0:
    raise ValueError(f"config.pairs={config.pairs}: must be >= 0 (0: the whole train split)")
  u, s = config.unlabeled, config.samples
  if u.prompts < 1 or u.start < 0:
    raise ValueError(f"config.unlabeled.prompts={u.prompts}, start={u.start}: need prompts >= 1 "
                     "and start >= 0")
  if (u.split == config.rm.data.get("train_split", "train") and config.data.name == config.rm.data.name
      and u.start < config.pairs):
    raise ValueError(f"config.unlabeled.start={u.start} overlaps the {config.pairs} preference "
                     "pairs: the unlabelled prompts must be ones no reward model was trained on")
  if s.n < 2:
    raise ValueError(f"config.samples.n={s.n}: UML needs two views and SPG several samples")
  if s.prompt_len + s.max_new_tokens > config.model.max_len:
    raise ValueError(f"config.samples.prompt_len + max_new_tokens exceeds config.model.max_len="
                     f"{config.model.max_len}")
  if not 0.0 < config.spg.gamma <= 1.0:
    raise ValueError(f"config.spg.gamma={config.spg.gamma}: must be in (0, 1] (the paper: 0.5)")
  if config.spg.meaning not in MEANINGS:
    raise ValueError(f"config.spg.meaning={config.spg.meaning!r}: must be one of {MEANINGS}")
  if config.spg.meaning == "entities" and config.data.name != "embedded_tldr":
    raise ValueError("config.spg.meaning='entities' needs the embedded task (use 'text')")
  members = tuple(config.warm.members)
  if members and (len(members) < 2 or not set(members) <= set(REFINED)):
    raise ValueError(f"config.warm.members={members}: two or more of {REFINED}, or () for no WARM")
  if config.eval.samples < 2 or min(config.eval.prompts, config.final.prompts) < 1 or config.eval.pairs < 0:
    raise ValueError("config.eval.samples must be >= 2, eval.prompts and final.prompts >= 1, and "
                     "eval.pairs >= 0")


def rm_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict(config.rm.to_dict())
  c.init_from = config.init_from
  return c


def uml_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c = rm_config(config)
  c.uml = ml_collections.ConfigDict(config.uml.to_dict())
  return c


def ppo_config(config: ml_collections.ConfigDict, reward_path: str) -> ml_collections.ConfigDict:
  """An rl.py config: this one's PPO settings against the reward-model run at reward_path."""
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


def prompts_of(data_config, split: str, start: int, n: int) -> list[str]:
  from warm_jax import data as data_lib
  source = data_lib.load_split(data_config, split)
  if start >= len(source):
    raise ValueError(f"split {split!r} has {len(source)} records; none from index {start}")
  return [source[i]["prompt"] for i in range(start, min(start + n, len(source)))]


def sampler_of(config, temperature: float):
  """A PolicySampler of the policy architecture with the `samples` lengths and batch."""
  from warm_jax import data as data_lib
  from warm_jax import sampling
  s = config.samples
  return sampling.PolicySampler(config.model, data_lib.load_tokenizer(config.data),
                                prompt_len=s.prompt_len, max_new_tokens=s.max_new_tokens,
                                temperature=temperature, batch_size=s.batch_size)


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
  prompts = prompts_of(config.data, e.split, 0, e.prompts)
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
  from warm_jax import evaluation
  f = config.final
  prompts = prompts_of(config.data, f.split, 0, f.prompts)
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


UPSTREAM = {"rm": (), "ppo": ("rm",), "samples": ("ppo",), "uml": ("samples",),
            "spg_pairs": ("rm", "samples"), "spg": ("spg_pairs",), "warm_rm": ("uml", "spg"),
            "ppo_uml": ("uml",), "ppo_spg": ("spg",), "ppo_warm": ("warm_rm",)}


def main(config: ml_collections.ConfigDict, workdir: str) -> dict:
  import warm_label_noise
  from warm_jax import stages
  from warm_jax import data as data_lib
  from warm_jax.data import pipeline
  from warm_jax.train import rlp as rlp_lib
  if not config.init_from:
    raise SystemExit("config.init_from is empty: RLP starts from the SFT policy, e.g. "
                     "--config.init_from=runs/warm/sft (made by launch/quickstart.sh)")
  validate(config)
  warm_label_noise.write_config(config, workdir)
  job = stages.Job(workdir, UPSTREAM)
  d = job.dir
  sources = preference_sources(config)
  tokenizer = data_lib.load_tokenizer(config.rm.data)
  n_stages = len(UPSTREAM) if config.warm.members else len(UPSTREAM) - 2
  step = iter(range(1, n_stages + 1))
  header = lambda what: f"[{next(step)}/{n_stages}] {what}"  # noqa: E731

  job.run("rm", rm_config(config), lambda: reward_model.main(rm_config(config), d("rm"), sources,
                                                            tokenizer),
          header("reward model on the preference pairs"))
  job.run("ppo", ppo_config(config, d("rm")), lambda: rl.main(ppo_config(config, d("rm")), d("ppo")),
          header("PPO against it"))
  u, s = config.unlabeled, config.samples

  def make_samples():
    prompts = prompts_of(config.data, u.split, u.start, u.prompts)
    return {"prompts": prompts,
            "samples": sampler_of(config, s.temperature).sample_n(d("ppo"), prompts, s.n,
                                                                   seed=s.seed, desc="policy samples")}
  samples = job.run("samples", {"policy": d("ppo"), "unlabeled": u.to_dict(), "samples": s.to_dict(),
                                "model": config.model.to_dict()}, make_samples,
                    header("the PPO policy's samples on unlabelled prompts"))
  prompts, texts = samples["prompts"], samples["samples"]

  views = rlp_lib.views_from_samples(prompts, texts)
  job.run("uml", uml_config(config), lambda: train_uml(config, d("uml"), sources, views),
          header("RLP-UML"))
  refined = {"uml": os.path.join(d("uml"), "reward_model")}

  def make_spg():
    scorer = rl.load_scorer(d("rm"), config)
    flat = scorer.score([p for p in prompts for _ in range(s.n)], [y for ys in texts for y in ys])
    pairs, stats = rlp_lib.synthetic_pairs(prompts, texts, np.reshape(flat, (len(prompts), s.n)),
                                           meaning_fn(config.spg.meaning), config.spg.gamma,
                                           config.spg.seed)
    return {"pairs": pairs, "stats": stats}
  spg = job.run("spg_pairs", {"spg": config.spg.to_dict(), "scorer": d("rm")}, make_spg,
                header("RLP-SPG's synthetic pairs"))
  if not spg["pairs"]:
    raise SystemExit(f"SPG kept no prompt ({spg['stats']}); lower config.spg.gamma")
  union = {**sources, "train": pipeline.Concat(sources["train"], spg["pairs"])}
  job.run("spg", rm_config(config), lambda: reward_model.main(rm_config(config), d("spg"), union,
                                                             tokenizer),
          header("RLP-SPG: the reward model on the pairs + synthetic pairs"))
  refined["spg"] = d("spg")
  if config.warm.members:
    paths = [refined[m] for m in config.warm.members]
    job.run("warm_rm", {"members": paths},
            lambda: {"path": warm_label_noise.average_once(d("warm_rm"), paths), "members": paths},
            header("WARM of the RLP-refined reward models"))
    refined["warm"] = d("warm_rm")

  runs = {"sft": config.init_from, "ppo": d("ppo")}
  for name, rm_path in refined.items():
    runs[f"ppo_{name}"] = d(f"ppo_{name}")
    job.run(f"ppo_{name}", ppo_config(config, rm_path),
            lambda: rl.main(ppo_config(config, rm_path), runs[f"ppo_{name}"]),
            header(f"PPO from SFT against the {name} reward model"))

  print("== evaluation", flush=True)
  scorers = {name: rl.load_scorer(p, config) for name, p in {"rm": d("rm"), **refined}.items()}
  result = {"refined": refined, "runs": runs, "spg": spg["stats"],
            "policy_accuracy": policy_accuracy(config, scorers, d("ppo")),
            "final": final_win_rates(config, runs),
            "curves": {n: plot_rl.key_points(plot_rl.curves(p)) for n, p in runs.items() if n != "sft"},
            "seconds": {st: job.seconds(st) for st in job.rows}}
  curves = {n: plot_rl.curves(p) for n, p in runs.items() if n != "sft"}
  stages.write_report(workdir, "rlp", result, tables(result), lambda path: plot_rl.plot(curves, path))
  return result


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
            "rates: gold-judged, ties count one half, +- one binomial standard error (sampling of "
            "the prompts only: not the variation between PPO runs)."]
  return "\n".join(lines)


if __name__ == "__main__":
  from warm_jax import cli
  cli.run(main)
