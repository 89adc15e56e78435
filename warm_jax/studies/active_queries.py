"""Active preference queries (Christiano et al. 2017): reward-model accuracy against the number of
labels, querying by ensemble disagreement vs at random.

`main(config, workdir)`: a pool of `pool.size` preference pairs has hidden labels; a labeller reveals a pair's label when
queried (its recorded chosen/rejected order). Both strategies start from the same `schedule[0]`
random labels. At each round an ensemble of `members` reward models (from the SFT decoder, each
on a bootstrap resample of the labelled pairs: the paper's ensemble) is trained from scratch on
the labels so far, the ensemble (mean reward, ENS) is scored on `eval.pairs` held-out pairs, and
the next `schedule[i+1] - schedule[i]` queries are chosen:
  random        uniformly among the unlabelled pairs;
  disagreement  the unlabelled pairs whose predicted preference sigmoid(r_a - r_b) varies most
                across the members (`warm_jax.active`).
Each round is a stage of `warm_jax.stages` (reused when finished, refused when changed). Writes
active.json, active.md (accuracy per round, labels each strategy needs to reach the random
strategy's final accuracy, what the queried pairs look like) and active.png (accuracy vs labels).
"""

from __future__ import annotations

import math
import os

import ml_collections
import numpy as np

from warm_jax import configs, errors, stages
from warm_jax.studies import SFT_RUN
from warm_jax.studies import reward_model


def rules():
  """The query schedule and the ensemble; every member's reward-model fields are the config's own
  (`warm_jax.train.reward_model.RULES`)."""
  from warm_jax import active, configs
  from warm_jax.train import reward_model as rm_lib
  return (
      *rm_lib.RULES,
      configs.sequence("schedule", lambda v: configs.is_int(v) and v >= 1,
                       "increasing label counts, the first >= 1"),
      configs.Rule("schedule", lambda v, c: all(b > a for a, b in zip(v, v[1:])),
                   "increasing label counts, the first >= 1"),
      configs.text("pool.split"), configs.integer("pool.size", lo=0),
      configs.Rule("schedule", lambda v, c: not c.pool.size or v[-1] <= c.pool.size,
                   "at most pool.size at its end (no more labels than the pool has pairs: not "
                   "more than the pool)", reads=("pool.size",)),
      configs.sequence("strategies", lambda v: v in active.STRATEGIES,
                       f"distinct ones of {active.STRATEGIES}", distinct=True),
      configs.Rule("members", lambda v, c: configs.is_int(v) and v >= 2,
                   "at least 2 (disagreement needs an ensemble)"),
      configs.number("epochs", 0.0, lo_open=True), configs.integer("min_steps"),
      configs.text("eval.split"), configs.integer("eval.pairs"), *stages.SEEDS_RULES,
  )


def validate(config) -> None:
  from warm_jax import configs
  configs.check(config, rules())


def member_config(config, labels: int, member: int) -> ml_collections.ConfigDict:
  """The reward-model config of one member at `labels` labels: steps from the epochs, its own
  seed (data order, dropout), one checkpoint at the end."""
  c = ml_collections.ConfigDict(config.to_dict())
  for field in ("pool", "schedule", "strategies", "members", "epochs", "min_steps", "eval"):
    del c[field]
  steps = max(config.min_steps, math.ceil(config.epochs * labels / config.data.batch_size))
  c.train.update(num_steps=steps, ckpt_every=steps, keep=1, eval_every=steps)
  c.seed = config.seed + 1000 * member
  return c


def pool_of(config) -> list[dict]:
  from warm_jax import data as data_lib
  src = data_lib.load_split(config.data, config.pool.split)
  n = min(config.pool.size, len(src)) if config.pool.size else len(src)
  if config.schedule[-1] > n:
    raise errors.InputError(f"config.schedule ends at {config.schedule[-1]} labels; the pool has {n}")
  return [src[i] for i in range(n)]


def eval_pairs(config) -> list[dict]:
  from warm_jax import data as data_lib
  src = data_lib.load_split(config.data, config.eval.split)
  return [src[i] for i in range(min(config.eval.pairs, len(src)))]


def member_rewards(scorers, recs) -> tuple[np.ndarray, np.ndarray]:
  """[M, N] rewards of each member for the chosen and the rejected responses."""
  p = [r["prompt"] for r in recs]
  rc = np.stack([s.score(p, [r["chosen"] for r in recs]) for s in scorers])
  rr = np.stack([s.score(p, [r["rejected"] for r in recs]) for s in scorers])
  return rc, rr


def ensemble_accuracy(rc: np.ndarray, rr: np.ndarray, recs: list[dict]) -> dict:
  """ENS (mean reward) accuracy on the recorded labels and on the gold order (gold ties
  dropped), and the members' mean accuracy on the labels."""
  d = rc.mean(0) - rr.mean(0)
  gold = np.asarray([r.get("gold_chosen", np.nan) - r.get("gold_rejected", np.nan) for r in recs])
  out = {"ens": float(np.mean(d > 0)), "members": float(np.mean(rc > rr))}
  keep = np.isfinite(gold) & (gold != 0)
  if keep.any():
    out["ens_gold"] = float(np.mean(np.sign(d[keep]) == np.sign(gold[keep])))
  return out


def run_round(config, workdir: str, pool: list[dict], labelled: np.ndarray, tokenizer,
              score_pool: bool, test: list[dict]) -> dict:
  """Trains the ensemble on the labelled pairs (a bootstrap resample each), scores it on the held
  out pairs and, if asked, the disagreement of every pool pair."""
  from warm_jax import active, scoring
  n = len(labelled)
  dirs = []
  for m in range(config.members):
    c = member_config(config, n, m)
    boot = active.bootstrap(labelled, seed=config.seed * 7919 + 31 * n + m)
    d = os.path.join(workdir, f"member_{m}")
    print(f"  member {m + 1}/{config.members}: {n} labels, {c.train.num_steps} steps", flush=True)
    reward_model.main(c, d, {"train": [pool[i] for i in boot]}, tokenizer)
    dirs.append(d)
  scorers = scoring.load_reward_models(dirs, batch_size=config.data.eval_batch_size)
  out = {"labels": n, "labelled": [int(i) for i in labelled],
         "accuracy": ensemble_accuracy(*member_rewards(scorers, test), test),
         "steps": member_config(config, n, 0).train.num_steps}
  if score_pool:
    out["disagreement"] = [float(x) for x in active.disagreement(*member_rewards(scorers, pool))]
  return out


def query_stats(pool: list[dict], picked) -> dict:
  """What the queried pairs look like: mean |gold difference| (small: near ties, hard and noisy
  to label) and how often the label disagrees with the gold order."""
  g = np.asarray([pool[i]["gold_chosen"] - pool[i]["gold_rejected"] for i in picked])
  return {"n": len(g), "mean_abs_gold_gap": float(np.mean(np.abs(g))),
          "label_against_gold": float(np.mean(g < 0))}


def queries(config, prev: dict, pool_size: int, n_new: int, strategy: str, i: int) -> np.ndarray:
  """Round i's queries after the round whose result is `prev`: n_new unlabelled pairs."""
  from warm_jax import active
  mask = np.zeros(pool_size, bool)
  mask[prev["labelled"]] = True
  return active.select_queries(prev.get("disagreement", np.zeros(pool_size)), n_new, mask,
                               strategy, seed=config.seed + i)


def stages_of(config, pool: list[dict], test: list[dict], tokenizer) -> list:
  """round_<first>, then <strategy>_<labels> for each strategy and each later schedule point."""
  s = tuple(config.schedule)
  needs_scores = "disagreement" in config.strategies
  base = {"members": member_config(config, 0, 0), "pool": config.pool.to_dict(),
          "eval": config.eval.to_dict(), "epochs": config.epochs, "min_steps": config.min_steps,
          "n_members": config.members}
  first = f"round_{s[0]}"
  start = np.sort(np.random.default_rng(config.seed).choice(len(pool), size=s[0], replace=False))
  out = [stages.Stage(
      first, lambda ctx: run_round(config, ctx.dir(first), pool, start, tokenizer, needs_scores, test),
      lambda ctx: {**base, "labels": s[0], "scores": needs_scores},
      header=f"round 1/{len(s)}: {s[0]} random labels")]
  for strategy in config.strategies:
    prev = first
    for i, n in enumerate(s[1:], start=1):
      stage, score = f"{strategy}_{n}", strategy == "disagreement" and i < len(s) - 1

      def run(ctx, stage=stage, prev=prev, i=i, n=n, strategy=strategy, score=score):
        picked = queries(config, ctx.results[prev], len(pool), n - s[i - 1], strategy, i)
        labelled = np.sort(np.concatenate([np.asarray(ctx.results[prev]["labelled"], int), picked]))
        return run_round(config, ctx.dir(stage), pool, labelled, tokenizer, score, test)
      out.append(stages.Stage(
          stage, run, lambda ctx, n=n, strategy=strategy, score=score: {
              **base, "labels": n, "strategy": strategy, "scores": score},
          (prev,), header=f"round {i + 1}/{len(s)} ({strategy}): {n} labels"))
      prev = stage
  return out


def main(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """The study under each of config.seeds (`stages.over_seeds`: seed 0 in the workdir, the others
  in <workdir>/seed<s>, their spread in active_seeds.md); returns seed 0's result."""
  return stages.over_seeds(run, config, workdir, "active", headline,
                           "Every round re-run under each seed (the first labels, the bootstrap "
                           "resamples, the members' seeds, random queries).")


def headline(result: dict) -> list[stages.Claim]:
  """One seed's headline numbers: each strategy's ensemble accuracy at the schedule's end, and
  querying by disagreement against at random there where both ran."""
  n = result["schedule"][-1]
  end = {st: (c.get(n) or c.get(str(n)))["ens"] for st, c in result["curves"].items()}
  rows = [(f"ensemble accuracy at {n} labels: {st}", (a,), None) for st, a in end.items()]
  if {"random", "disagreement"} <= set(end):
    rows.append((f"disagreement above random at {n} labels",
                 (end["disagreement"] - end["random"],), end["disagreement"] > end["random"]))
  return rows


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """The study under one seed (see the module docstring)."""
  from warm_jax import active
  from warm_jax import data as data_lib
  configs.require(config, {"init_from": f"{SFT_RUN} (every member starts from its decoder)"})
  validate(config)
  stages.record_config(config, workdir)
  s = tuple(config.schedule)
  pool, test = pool_of(config), eval_pairs(config)
  ctx = stages.run_job(config, workdir, stages_of(config, pool, test,
                                                  data_lib.load_tokenizer(config.data)))
  first = ctx.results[f"round_{s[0]}"]
  curves = {st: {s[0]: first["accuracy"]} for st in config.strategies}
  queried = {st: [] for st in config.strategies}
  for strategy in config.strategies:
    prev = first
    for i, n in enumerate(s[1:], start=1):
      queried[strategy] += [int(x) for x in
                            queries(config, prev, len(pool), n - s[i - 1], strategy, i)]
      prev = ctx.results[f"{strategy}_{n}"]
      curves[strategy][n] = prev["accuracy"]

  final_random = curves.get("random", {}).get(s[-1], {}).get("ens")
  result = {"schedule": list(s), "curves": curves,
            "queried": {st: query_stats(pool, q) for st, q in queried.items() if q},
            "pool": query_stats(pool, range(len(pool))) if "gold_chosen" in pool[0] else None,
            "target": final_random,
            "labels_to_reach_target": {
                st: active.labels_to_reach({n: a["ens"] for n, a in c.items()}, final_random)
                for st, c in curves.items()} if final_random is not None else {},
            "seconds": {st: ctx.job.seconds(st) for st in ctx.job.rows}}
  stages.write_report(workdir, "active", result, tables(result, len(test)),
                      lambda path: plot(result, path))
  return result


def plot(result: dict, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from warm_jax.train import metrics
  fig, ax = plt.subplots(figsize=(5.5, 4))
  for strategy, curve in result["curves"].items():
    ns = sorted(curve, key=int)
    line, = ax.plot([int(n) for n in ns], [curve[n]["ens"] for n in ns], "-o",
                    label=f"{strategy} (labels)")
    if all("ens_gold" in curve[n] for n in ns):
      ax.plot([int(n) for n in ns], [curve[n]["ens_gold"] for n in ns], ":", marker=".",
              color=line.get_color(), label=f"{strategy} (gold order)")
  ax.set_xscale("log", base=2)
  ax.set_xlabel("labelled pairs")
  ax.set_ylabel("ensemble accuracy on held-out pairs")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  metrics.save_figure(fig, path, dpi=120)


def tables(result: dict, n_test: int) -> str:
  strategies = list(result["curves"])
  se = 0.5 / math.sqrt(n_test)
  lines = [f"Ensemble (mean reward) accuracy on {n_test} held-out pairs, against their recorded "
           f"labels (and against the gold order, gold ties dropped); one binomial standard error "
           f"is at most {se:.3f} (one run per strategy):", "",
           "| labels | " + " | ".join(strategies) + " |", "|---|" + "---|" * len(strategies)]
  for n in result["schedule"]:
    cells = []
    for st in strategies:
      a = result["curves"][st].get(n) or result["curves"][st].get(str(n))
      cells.append("-" if a is None else f"{a['ens']:.3f}" + (f" ({a['ens_gold']:.3f})"
                                                                if "ens_gold" in a else ""))
    lines.append(f"| {n} | " + " | ".join(cells) + " |")
  if result["target"] is not None:
    reach = ", ".join(f"{st}: {'not within the schedule' if n is None else n}"
                      for st, n in result["labels_to_reach_target"].items())
    lines += ["", f"Labels needed to reach the random strategy's final accuracy "
              f"{result['target']:.3f}: {reach}."]
  if result["pool"]:
    p = result["pool"]
    lines += ["", f"The pool: mean |gold gap| {p['mean_abs_gold_gap']:.3f}, labels against the "
              f"gold order {p['label_against_gold']:.1%}."]
    for st, q in result["queried"].items():
      lines.append(f"Queried by {st} ({q['n']} pairs): mean |gold gap| {q['mean_abs_gold_gap']:.3f}, "
                   f"labels against the gold order {q['label_against_gold']:.1%}.")
  return "\n".join(lines)
