"""WARM under label noise (arXiv 2401.12187, Sec. 3.3 and B.3): M diverse reward models, their
ensemble (ENS) and their weight average, on corrupted labels.

`main(config, workdir)` trains `config.members` reward models from one SFT run, each with its own
data order and dropout seed, a learning rate and a dropout rate drawn from `config.diversity`,
and "Baklava" initialisation: each RM's decoder comes from one of the SFT run's kept checkpoints
(`diversity.init_steps`). The training pairs carry corrupted labels (`flip_fraction` of them
swapped: the embedded task records which). The members are ranked by accuracy on
`eval.rank_split` (held out; the paper ranks by OOD accuracy, here the reported splits stay
untouched by the selection), and WARM of M is the uniform weight average of the M best.

Reports accuracy of each member, of their mean, of ENS (mean prediction) and of WARM on
train-clean, train-corrupted (agreement with the flipped label = memorisation: lower is better),
the ranking split and `eval.splits`, writes `label_noise.json`, `rewards.npz`,
`memorisation.png`, the members' runs under `members/`, and WARM of all the members as a
checkpoint in `warm/` (loads with `warm_jax.load_reward_model`). Re-running resumes unfinished
members and reuses finished ones. `load(workdir)` reads a finished run back for the studies that
build on it (interpolation, best-of-N, RL).
"""

from __future__ import annotations

import json
import os

import ml_collections
import numpy as np

from warm_jax import configs, errors, stages
from warm_jax.studies import SFT_RUN
from warm_jax.studies import reward_model

TRAIN_SUBSETS = ("train_clean", "train_corrupted")
# What a study's config.label_noise names.
WORKDIR = ("a finished warm_label_noise.py workdir, e.g. "
           "--config.label_noise=runs/warm/warm_label_noise")


RULES = (
    configs.seed("seed"), configs.init_source("init_from"), configs.integer("members", lo=2),
    configs.sequence("diversity.lrs", lambda v: configs.is_number(v) and v > 0,
                     "one or more positive learning rates"),
    configs.sequence("diversity.dropouts", lambda v: configs.is_number(v) and 0 <= v < 1,
                     "one or more dropout rates in [0, 1)"),
    configs.sequence("diversity.init_steps", lambda v: configs.is_int(v) and v >= -1,
                     "one or more SFT steps (-1: the latest)"),
    configs.integer("train_examples", lo=0),
    configs.number("flip_fraction", 0.0, 1.0),
    configs.Rule("flip_fraction", lambda v, c: c.rm.data.name != "embedded_tldr"
                 or v == c.rm.data.task.flip_fraction,
                 "the embedded task's own flip fraction (it flips its train labels itself)",
                 reads=("rm.data.task.flip_fraction",)),
    configs.text("eval.rank_split"),
    configs.sequence("eval.splits", lambda v: isinstance(v, str) and v != "", "split names"),
    configs.integer("eval.batch_size"), configs.integer("eval.max_len"),
    configs.boolean("probe.enabled"), configs.integer("probe.steps"),
    configs.number("probe.lr", 0.0, lo_open=True), configs.number("probe.weight_decay", 0.0),
    configs.integer("probe.batch_size"),
    configs.Rule("eval.max_len", lambda v, c: v >= c.rm.data.max_len,
                 "at least the members' training length", reads=("rm.data.max_len",)),
)


def validate(config: ml_collections.ConfigDict) -> None:
  """The study's fields (`RULES`) and every member's reward-model config."""
  from warm_jax.train import reward_model as rm_train
  configs.check(config, RULES)
  for mc in member_configs(config):
    rm_train.validate_config(mc)


def member_configs(config: ml_collections.ConfigDict,
                   head: str = "") -> list[ml_collections.ConfigDict]:
  """The config of each member: config.rm with its seed, data order, learning rate, dropout and
  SFT checkpoint (WARM's diversity: hyper-parameters and Baklava), and `head`, the shared head
  they start from (the linear probe's checkpoint; '': a zero head)."""
  d = config.diversity
  out = []
  for i in range(config.members):
    rng = np.random.default_rng([config.seed, i])
    c = ml_collections.ConfigDict(config.rm.to_dict())
    c.seed = config.seed + i
    c.data.seed = config.seed + i
    c.optim.lr = float(rng.choice(np.asarray(d.lrs, np.float64)))
    c.model.dropout_rate = float(rng.choice(np.asarray(d.dropouts, np.float64)))
    c.init_from = config.init_from
    c.init_step = int(rng.choice(np.asarray(d.init_steps)))
    if head:
      c.init_head = head
    out.append(c)
  return out


def probe_head(config: ml_collections.ConfigDict, workdir: str, train, tokenizer) -> dict:
  """WARM's shared head (B.3): linear-probed on the frozen features of the SFT run's latest
  checkpoint over the training pairs, written once to <workdir>/probe (a params checkpoint
  holding 'reward_head'; reused when complete, refused when made with other settings). Returns
  {'path', 'accuracy' (on the training pairs), 'loss'}."""
  from warm_jax import checkpoints
  from warm_jax.data import pipeline
  from warm_jax.train import init, reward_model as rm_train
  path = os.path.join(workdir, "probe")
  settings = {"probe": config.probe.to_dict(), "init_from": os.path.basename(
      os.path.normpath(config.init_from)), "train_pairs": len(train)}
  if checkpoints.complete_steps(path):
    meta = checkpoints.read_meta(path)
    if meta.get("settings") != checkpoints.jsonable(settings):
      raise errors.InputError(f"{path} holds a probe made with {meta.get('settings')}, not "
                              f"{settings}: remove it to recompute")
    return {"path": path, **meta["fit"]}
  setup = rm_train.build(config.rm)
  params = init.reward_model_from_lm(config.init_from, setup)
  batches = pipeline.epoch_batches(train, pipeline.PairEncoder(tokenizer, config.rm.data.max_len),
                                   config.probe.batch_size)
  fc, fr = rm_train.pair_features(setup.model, params, batches)
  w, fit = rm_train.fit_linear_head(fc, fr, config.probe.steps, config.probe.lr,
                                    config.probe.weight_decay)
  head = {"reward_head": {"kernel": w.astype(np.float32), "bias": np.zeros((1,), np.float32)}}
  checkpoints.save_params(path, head, {"settings": settings, "fit": fit})
  print(f"linear probe on frozen SFT features: train accuracy {fit['accuracy']:.3f}", flush=True)
  return {"path": path, **fit}


def check_init_steps(config: ml_collections.ConfigDict) -> None:
  """Every Baklava step must be a kept checkpoint of the SFT run (before any training)."""
  from warm_jax import checkpoints
  from warm_jax.train import init
  kept = checkpoints.complete_steps(init.resolve(config.init_from))
  missing = [s for s in config.diversity.init_steps if s != -1 and s not in kept]
  if missing:
    raise errors.InputError(f"config.diversity.init_steps {missing} are not kept checkpoints of "
                     f"{config.init_from} (kept: {kept}); keep them in the SFT run "
                     "(its config.train.ckpt_every / keep) or pick kept steps")


def training_sources(config: ml_collections.ConfigDict):
  """(train, {split: source}, tokenizer): the (corrupted) training pairs and the held-out splits."""
  from warm_jax import data as data_lib
  from warm_jax.data import pipeline
  data = config.rm.data
  train = pipeline.Head(data_lib.load_split(data, "train"), config.train_examples)
  if data.name != "embedded_tldr" and config.flip_fraction:
    train = pipeline.FlipLabels(train, config.flip_fraction, seed=config.seed)
  held_out = {s: data_lib.load_split(data, s)
              for s in dict.fromkeys((config.eval.rank_split, *config.eval.splits,
                                      *config.rm.train.eval_splits))}
  return train, held_out, data_lib.load_tokenizer(data)


def train_members(mcs, workdir: str, train, held_out, tokenizer) -> list[str]:
  """Trains (or resumes, or reuses) each member config's run under workdir/members/rm<i>."""
  paths = []
  for i, mc in enumerate(mcs):
    path = os.path.join(workdir, "members", f"rm{i}")
    print(f"member {i + 1}/{len(mcs)}: lr {mc.optim.lr:g} dropout {mc.model.dropout_rate:g} "
          f"SFT step {mc.init_step} seed {mc.seed} -> {path}", flush=True)
    sources = {"train": train, **{s: held_out[s] for s in mc.train.eval_splits}}
    reward_model.main(mc, path, sources, tokenizer)
    paths.append(path)
  return paths


def encode_pairs(scorer, records) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
  """(chosen, rejected), each (token rows, mask), of preference records at the scorer's max_len
  (the scorer drops each batch's padding columns itself)."""
  prompts = [r["prompt"] for r in records]
  return tuple(scorer.encode(prompts, [r[side] for r in records])
               for side in ("chosen", "rejected"))


def evaluation_sets(config, scorer, train, held_out) -> dict[str, tuple]:
  """{subset: ((chosen tokens, mask), (rejected tokens, mask))}: train-clean, train-corrupted (labels as trained
  on, i.e. flipped), the ranking split and the reported splits."""
  recs = [train[i] for i in range(len(train))]
  sets = {"train_clean": encode_pairs(scorer, [r for r in recs if not r["flipped"]]),
          "train_corrupted": encode_pairs(scorer, [r for r in recs if r["flipped"]])}
  for s in dict.fromkeys((config.eval.rank_split, *config.eval.splits)):
    src = held_out[s]
    sets[s] = encode_pairs(scorer, [src[i] for i in range(len(src))])
  return sets


def pair_rewards(scorer, sets) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  return {k: (scorer.score_tokens(*c), scorer.score_tokens(*r)) for k, (c, r) in sets.items()}


def save_rewards(path: str, rewards: dict) -> None:
  """{model: {subset: (r_chosen, r_rejected)}} -> an npz with keys 'model/subset/side'."""
  np.savez(path, **{f"{m}/{k}/{side}": v[j] for m, per in rewards.items() for k, v in per.items()
                    for j, side in enumerate(("chosen", "rejected"))})


def load_rewards(path: str) -> dict:
  """The inverse of `save_rewards`."""
  out: dict = {}
  with np.load(path) as z:
    for key in z.files:
      m, k, side = key.split("/")
      out.setdefault(m, {}).setdefault(k, [None, None])[side == "rejected"] = z[key]
  return {m: {k: tuple(v) for k, v in per.items()} for m, per in out.items()}


def accuracies(rewards) -> dict[str, float]:
  from warm_jax import evaluation
  return {k: (evaluation.pair_accuracy(c, r) if len(c) else float("nan"))
          for k, (c, r) in rewards.items()}


def mean_rewards(rewards_list) -> dict:
  """ENS: the members' predictions averaged, subset by subset."""
  return {k: tuple(np.mean([r[k][j] for r in rewards_list], axis=0) for j in (0, 1))
          for k in rewards_list[0]}


def plot(result: dict, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from warm_jax.train import metrics
  subsets = result["subsets"]
  fig, axes = plt.subplots(1, len(subsets), figsize=(3.1 * len(subsets), 3.6))
  rows = result["rows"]
  names = [f"RM {m['index']}" for m in result["members"]] + ["mean ind.", "ENS", "WARM"]
  keys = [f"member_{m['index']}" for m in result["members"]] + ["mean_individual", "ens", "warm"]
  colors = ["#b0b0b0"] * len(result["members"]) + ["#606060", "#1f77b4", "#d62728"]
  for ax, s in zip(np.atleast_1d(axes), subsets):
    vals = [rows[k][s] for k in keys]
    ax.bar(range(len(vals)), vals, color=colors)
    lo, hi = np.nanmin(vals), np.nanmax(vals)
    pad = max(0.01, 0.15 * (hi - lo))
    ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad))
    ax.set_xticks(range(len(vals)), names, rotation=70, fontsize=7)
    title = {"train_corrupted": "train corrupted\n(memorisation: lower = better)",
             "train_clean": "train clean"}.get(s, s)
    ax.set_title(title, fontsize=9)
  np.atleast_1d(axes)[0].set_ylabel("pairwise accuracy")
  fig.suptitle(f"WARM under {result['flip_fraction']:.0%} label corruption "
               f"(M = {len(result['members'])})", fontsize=10)
  fig.tight_layout()
  metrics.save_figure(fig, path, dpi=110)


def main(config: ml_collections.ConfigDict, workdir: str) -> dict:
  from warm_jax import averaging, checkpoints, scoring
  from warm_jax.train.init import abstract_params
  configs.require(config, {"init_from": f"{SFT_RUN} (its kept checkpoints are the members' "
                           "Baklava inits)"})
  validate(config)
  stages.record_config(config, workdir)
  check_init_steps(config)
  train, held_out, tokenizer = training_sources(config)
  probe = probe_head(config, workdir, train, tokenizer) if config.probe.enabled else None
  mcs = member_configs(config, probe["path"] if probe else "")
  paths = train_members(mcs, workdir, train, held_out, tokenizer)

  print("evaluating the members, ENS and WARM ...", flush=True)
  scorers = scoring.load_reward_models(paths, tokenizer=tokenizer,
                                        batch_size=config.eval.batch_size)
  for s in scorers:
    s.max_len = config.eval.max_len
  sets = evaluation_sets(config, scorers[0], train, held_out)
  member_rewards = [pair_rewards(s, sets) for s in scorers]
  member_acc = [accuracies(r) for r in member_rewards]
  rank = sorted(range(len(paths)), key=lambda i: -member_acc[i][config.eval.rank_split])

  warm_dir = os.path.join(workdir, "warm")
  averaging.average_once(warm_dir, [paths[i] for i in rank])
  warm_params = checkpoints.restore_params(
      warm_dir, target=abstract_params(scorers[0].model, scorers[0].mesh, scorers[0].rules))
  warm_rewards = pair_rewards(scorers[0].with_params(warm_params), sets)

  subsets = list(sets)
  rows = {f"member_{i}": member_acc[i] for i in range(len(paths))}
  rows["mean_individual"] = {s: float(np.mean([a[s] for a in member_acc])) for s in subsets}
  rows["ens"] = accuracies(mean_rewards(member_rewards))
  rows["warm"] = accuracies(warm_rewards)
  result = {
      "flip_fraction": float(config.flip_fraction if config.rm.data.name != "embedded_tldr"
                             else config.rm.data.task.flip_fraction),
      "train_pairs": len(train), "counts": {k: int(len(chosen[0])) for k, (chosen, _) in sets.items()},
      "subsets": subsets, "rank_split": config.eval.rank_split,
      # Paths relative to this workdir (`load` resolves them): a moved workdir stays usable.
      "members": [{"index": i, "path": os.path.relpath(p, workdir), "lr": mc.optim.lr,
                   "dropout": mc.model.dropout_rate,
                   "init_step": mc.init_step, "seed": mc.seed}
                  for i, (p, mc) in enumerate(zip(paths, mcs))],
      "ranking": rank, "warm": "warm", "rows": rows,
      "probe": None if probe is None else {"accuracy": probe["accuracy"], "loss": probe["loss"],
                                           "steps": config.probe.steps}}
  save_rewards(os.path.join(workdir, "rewards.npz"),
               {**{f"member_{i}": r for i, r in enumerate(member_rewards)}, "warm": warm_rewards})
  stages.write_report(workdir, "label_noise", result, table(result),
                      lambda path: plot(result, path), plot_file="memorisation.png")
  return result


def table(result: dict) -> str:
  """Markdown: one row per member, mean individual, ENS, WARM; one column per subset."""
  subsets = result["subsets"]
  head = "| reward model | " + " | ".join(s.replace("_", " ") for s in subsets) + " |"
  lines = [head, "|" + "---|" * (len(subsets) + 1)]
  for m in result["members"]:
    label = (f"RM {m['index']} (lr {m['lr']:g}, dropout {m['dropout']:g}, SFT step "
             f"{m['init_step']})")
    row = result["rows"][f"member_{m['index']}"]
    lines.append(f"| {label} | " + " | ".join(f"{row[s]:.3f}" for s in subsets) + " |")
  for key, label in (("mean_individual", "mean of the individual RMs"),
                     ("ens", f"ENS (M = {len(result['members'])})"),
                     ("warm", f"WARM (M = {len(result['members'])})")):
    lines.append(f"| **{label}** | " + " | ".join(f"{result['rows'][key][s]:.3f}"
                                                  for s in subsets) + " |")
  return "\n".join(lines)


def load(path: str) -> tuple[dict, ml_collections.ConfigDict]:
  """(result, config) of a finished label-noise workdir, member and WARM paths made absolute."""
  for name in ("label_noise.json", "rewards.npz", "config.json"):
    if not os.path.exists(os.path.join(path, name)):
      raise errors.MissingInput(f"{path}/{name} is missing: config.label_noise must be a finished "
                                "warm_label_noise.py workdir")
  with open(os.path.join(path, "label_noise.json")) as f:
    result = json.load(f)
  with open(os.path.join(path, "config.json")) as f:
    config = ml_collections.ConfigDict(json.load(f))
  for m in result["members"]:  # stored relative to the label-noise workdir
    m["path"] = os.path.join(path, m["path"])
  result["warm"] = os.path.join(path, result["warm"])
  return result, config
