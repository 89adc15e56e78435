"""Merge methods for reward models: the linear WARM average against TIES, DARE, SLERP and model
stock, on the members of a `warm_label_noise.py` run.

`main(config, workdir)`: the members (their M best by the run's ranking; `merges.m`, 0: all) are
merged by each method (`averaging.merge_checkpoints`, streamed): WARM (the linear average), TIES
at each of `merges.ties_densities`, DARE at each of `merges.dare_drops` combined by a sum with
weights 1 / M (WARM with dropped and rescaled task vectors) and by TIES's election, the SLERP of
the M task vectors (iterated pairwise), model stock; and every pair of the `merges.pairs_of` best
members by LERP (WARM of two), SLERP of the two models and SLERP of their two task vectors. The
methods on task vectors take as base the members' mean initialisation: the mean over the members
of the reward model each started from (the SFT checkpoint of its Baklava step with the
zero-initialised head), written once to `<workdir>/base`. The best single member is the
reference row.

Each merged reward model is judged as the label-noise study judges its members: pairwise accuracy
on train-clean, train-corrupted (agreement with the flipped labels: memorisation, lower is
better), the ranking split and the reported splits, each with one binomial standard error
sqrt(a (1 - a) / n); and as a best-of-N selector: the SFT policy samples max(bon.ns) responses
to each of bon.prompts prompts once (`studies.best_of_n.sample_candidates`), each model keeps the
best of N, and the gold reward of the kept response is reported at each N of bon.ns with its
standard error. Writes merge_methods.json, merge_methods.md and results.md (the table with the
command that made it).
"""

from __future__ import annotations

import itertools
import os
import sys

import ml_collections
import numpy as np

from warm_jax import configs, errors, stages
from warm_jax.studies import SFT_RUN
from warm_jax.studies import best_of_n
from warm_jax.studies.warm import bon, label_noise

RULES = (
    *best_of_n.SAMPLING_RULES,
    configs.integer("score_batch_size"),
    configs.Rule("merges.m", lambda v, c: configs.is_int(v) and v >= 0 and v != 1,
                 "0 (all members) or M >= 2 (the M best)"),
    configs.distinct_numbers("merges.ties_densities", 0.0, 1.0, min_len=0),
    configs.Rule("merges.ties_densities", lambda v, c: all(x > 0 for x in v),
                 "densities in (0, 1] (the fraction of each task vector TIES keeps)"),
    configs.sequence("merges.dare_drops", lambda v: configs.is_number(v) and 0 <= v < 1,
                     "drop probabilities in [0, 1)", min_len=0, distinct=True),
    configs.seed("merges.dare_seed"),
    configs.Rule("merges.pairs_of", lambda v, c: configs.is_int(v) and (v == 0 or v >= 2),
                 "0 (no pairs) or K >= 2 (every pair of the K best)"),
)


def validate(config: ml_collections.ConfigDict, n_members: int) -> None:
  """`RULES`, then M and the pairs against the label-noise run's number of members."""
  configs.check(config, RULES)
  for field in ("m", "pairs_of"):
    if config.merges[field] > n_members:
      raise errors.InputError(f"config.merges.{field}={config.merges[field]}: the label-noise run "
                              f"trained {n_members} members")


def mean_init(config, ln: dict, members: list[str], path: str) -> str:
  """Writes (once) the members' mean initialisation as a reward-model checkpoint at `path`: the
  mean over the members of the SFT decoder at each one's Baklava step with the zero head."""
  from warm_jax import averaging, checkpoints
  from warm_jax.train import init
  from warm_jax.train import reward_model as rm_train
  if checkpoints.complete_steps(path):
    return path
  meta = checkpoints.read_meta(checkpoints.resolve_checkpoint_dir(members[0]))
  rm_config = ml_collections.ConfigDict(meta["config"])
  setup = rm_train.build(rm_config)
  steps = [m["init_step"] for m in ln["members"] if m["path"] in members]
  inits = {s: init.reward_model_from_lm(config.init_from, setup, None if s == -1 else s)
           for s in sorted(set(steps))}
  base = averaging.average([inits[s] for s in steps])
  checkpoints.save_params(path, base, {"config": rm_config.to_dict(), "merge_methods": {
      "base": "the members' mean initialisation", "sft": config.init_from, "init_steps": steps}})
  return path


def rows(config, members: list[str], base: str) -> list[tuple[str, str, list[str], dict]]:
  """(label, method, paths, merge arguments) of every merged reward model, in table order."""
  m, mg = len(members), config.merges
  out = [(f"WARM (linear, M = {m})", "linear", members, {})]
  out += [(f"TIES, density {d:g}", "ties", members, {"base": base, "density": d})
          for d in mg.ties_densities]
  for p in mg.dare_drops:
    out.append((f"DARE, drop {p:g}, sum (weights 1/M)", "dare", members,
                {"base": base, "drop": p, "seed": mg.dare_seed, "weights": [1.0 / m] * m}))
    out.append((f"DARE, drop {p:g}, TIES election", "dare", members,
                {"base": base, "drop": p, "seed": mg.dare_seed, "combine": "ties"}))
  out.append((f"SLERP of the {m} task vectors (iterated)", "slerp", members, {"base": base}))
  out.append((f"model stock (M = {m})", "model_stock", members, {"base": base}))
  for i, j in itertools.combinations(range(mg.pairs_of), 2):
    pair = [members[i], members[j]]
    out += [(f"pair ({i}, {j}): LERP", "linear", pair, {}),
            (f"pair ({i}, {j}): SLERP of the models", "slerp", pair, {}),
            (f"pair ({i}, {j}): SLERP of the task vectors", "slerp", pair, {"base": base})]
  return out


def judge(scorer, sets: dict, unique: np.ndarray, inverse: np.ndarray, gold: np.ndarray,
          ns) -> dict:
  """A reward model's accuracy (with its binomial standard error) on each evaluation set and
  its best-of-N curve (gold of the kept response) on the shared samples."""
  from warm_jax import best_of_n as bon_lib
  acc = label_noise.accuracies(label_noise.pair_rewards(scorer, sets))
  n = {k: len(c[0]) for k, (c, _) in sets.items()}  # c: (tokens, mask) of the chosen rows
  se = {k: float(np.sqrt(a * (1 - a) / n[k])) if n[k] else float("nan") for k, a in acc.items()}
  scores = scorer.score_tokens(*unique)[inverse].reshape(gold.shape)
  return {"accuracy": acc, "stderr": se, "bon": bon_lib.curve(scores, gold, ns)}


def main(config: ml_collections.ConfigDict, workdir: str) -> dict:
  from warm_jax import averaging, checkpoints, evaluation, scoring
  from warm_jax.train.init import abstract_params
  configs.require(config, {"init_from": f"{SFT_RUN} (best-of-N samples it; the members' "
                           "initialisations come from it)", "label_noise": label_noise.WORKDIR})
  ln, ln_config = label_noise.load(config.label_noise)
  validate(config, len(ln["members"]))
  stages.record_config(config, workdir)
  rank = ln["ranking"]
  members = [ln["members"][i]["path"] for i in rank[:config.merges.m or len(rank)]]
  base = mean_init(config, ln, members, os.path.join(workdir, "base"))

  scorer = scoring.load_reward_model(members[0], batch_size=config.score_batch_size)
  scorer.max_len = max(ln_config.eval.max_len,
                       config.bon.prompt_len + config.bon.max_new_tokens + 2)
  train, held_out, _ = label_noise.training_sources(ln_config)
  sets = label_noise.evaluation_sets(ln_config, scorer, train, held_out)
  prompts, flat_prompts, texts = best_of_n.sample_candidates(config)
  n_max = max(config.bon.ns)
  gold = np.asarray(evaluation.gold_fn(config)(flat_prompts, texts)).reshape(len(prompts), n_max)
  unique, inverse = bon.unique_rows(scorer, flat_prompts, texts)

  target = abstract_params(scorer.model, scorer.mesh, scorer.rules)
  table_rows = [{"label": f"best single RM (RM {rank[0]})", "method": "single",
                 **judge(scorer, sets, unique, inverse, gold, config.bon.ns)}]
  for label, method, paths, kw in rows(config, members, base):
    print(f"merging: {label}", flush=True)
    kw = dict(kw)
    weights = kw.pop("weights", None)
    params, _ = averaging.merge_checkpoints(method, paths, weights, target=target, **kw)
    table_rows.append({"label": label, "method": method, **judge(
        scorer.with_params(params), sets, unique, inverse, gold, config.bon.ns)})
  result = {"members": [os.path.relpath(p, config.label_noise) for p in members],
            "base": "base", "subsets": list(sets), "counts": {k: len(v[0][0]) for k, v in sets.items()},
            "prompts": len(prompts), "max_n": n_max, "ns": list(config.bon.ns),
            "rows": table_rows}
  markdown = table(result)
  stages.write_report(workdir, "merge_methods", result, markdown)
  command = (" ".join(["python", *sys.argv]) if sys.argv and sys.argv[0].endswith(".py") else
             f"python experiments/merge_methods.py --config=experiments/merge_methods.py:"
             f"{config.variant}")
  checkpoints.write_atomic(os.path.join(workdir, "results.md"), "\n".join([
      f"# Merge methods for reward models (`experiments/merge_methods.py:{config.variant}`)", "",
      f"Generated by `{command}`.", "", markdown, ""]))
  return result


def table(result: dict) -> str:
  """Markdown: one row per reward model; accuracy +- its binomial standard error per subset,
  then the gold reward of the best-of-N pick at each N (+- its standard error)."""
  subsets, ns = result["subsets"], [n for n in result["ns"] if n > 1]
  head = ("| reward model | " + " | ".join(s.replace("_", " ") for s in subsets) + " | "
          + " | ".join(f"BoN gold N = {n}" for n in ns) + " |")
  lines = [f"Members: {len(result['members'])} (ranked); accuracy +- one binomial standard "
           "error; `train corrupted` is agreement with the flipped labels (memorisation: lower "
           f"is better); subset sizes: "
           + ", ".join(f"{k} {v}" for k, v in result["counts"].items())
           + f"; best-of-N: {result['prompts']} prompts x {result['max_n']} SFT samples.", "",
           head, "|" + "---|" * (len(subsets) + len(ns) + 1)]
  for r in result["rows"]:
    accs = [f"{r['accuracy'][s]:.3f} +- {r['stderr'][s]:.3f}" for s in subsets]
    bons = [f"{b['gold']:.3f} +- {b['gold_stderr']:.3f}" for b in r["bon"] if b["n"] > 1]
    lines.append(f"| {r['label']} | " + " | ".join(accs + bons) + " |")
  return "\n".join(lines)
