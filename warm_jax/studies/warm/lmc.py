"""Linear mode connectivity of WARM's reward models: accuracy along the weight interpolation path.

`main(config, workdir)` takes the members of a label-noise run (`warm_jax.studies.warm.label_noise`) (same SFT run, diverse hyper-parameters, Baklava
inits, corrupted labels) and its evaluation subsets. For two members (`config.pair`, positions in
that run's ranking: 0 = the best on its ranking split) and each lambda of a grid, reports the
accuracy of
  * WA: the weight interpolation (1 - lambda) phi_a + lambda phi_b (one model),
  * ENS: the prediction interpolation (1 - lambda) r_a + lambda r_b,
  * Diag: (1 - lambda) Acc(phi_a) + lambda Acc(phi_b), the accuracy a straight line would give.
WARM arXiv 2401.12187 (Obs. 1, Fig. 3-4): WA >= Diag on held-out data (no barrier along the path),
WA ~ ENS, and WA below Diag on the corrupted training labels (less memorisation). Then for M = 1..
members (the M best): WA of M models, ENS of M, and the mean accuracy of the M individuals.
Writes `lmc.json` and `lmc.png` (accuracy along lambda per subset, and vs M).
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from warm_jax import configs, errors, stages
from warm_jax.studies.warm import label_noise


RULES = (
    configs.sequence("pair", lambda v: configs.is_int(v) and v >= 0,
                     "two different positions in the label-noise run's ranking", min_len=2,
                     distinct=True),
    configs.Rule("pair", lambda v, c: len(v) == 2, "two positions (the two members interpolated)"),
    configs.integer("lambdas", lo=2),
    configs.sequence("subsets", lambda v: isinstance(v, str) and v != "", "subset names"),
)


def validate(config: ml_collections.ConfigDict, n_members: int, available) -> None:
  """`RULES`, then what the label-noise run decides: its number of members and its subsets."""
  configs.check(config, RULES)
  if max(config.pair) >= n_members:
    raise errors.InputError(f"config.pair={tuple(config.pair)}: positions in [0, {n_members}) "
                            f"(the label-noise run trained {n_members} members)")
  missing = [s for s in config.subsets if s not in available]
  if missing:
    raise errors.InputError(f"config.subsets {missing} were not evaluated by the label-noise run "
                            f"(it has {sorted(available)})")


def main(config: ml_collections.ConfigDict, workdir: str) -> dict:
  from warm_jax import averaging, evaluation, scoring
  configs.require(config, {"label_noise": label_noise.WORKDIR})
  ln, ln_config = label_noise.load(config.label_noise)
  validate(config, len(ln["members"]), ln["subsets"])
  stages.record_config(config, workdir)
  rewards = label_noise.load_rewards(os.path.join(config.label_noise, "rewards.npz"))
  rank = ln["ranking"]
  paths = [ln["members"][i]["path"] for i in rank]
  subsets = list(config.subsets)

  train, held_out, tokenizer = label_noise.training_sources(ln_config)
  scorers = scoring.load_reward_models(paths, tokenizer=tokenizer,
                                        batch_size=ln_config.eval.batch_size)
  base = scorers[0]
  base.max_len = ln_config.eval.max_len
  sets = label_noise.evaluation_sets(ln_config, base, train, held_out)
  sets = {s: sets[s] for s in subsets}
  member = [rewards[f"member_{i}"] for i in rank]  # in ranking order
  acc = lambda r: {s: evaluation.pair_accuracy(*r[s]) for s in subsets}

  # Along the path between two members.
  ia, ib = config.pair
  lams = averaging.lambda_grid(config.lambdas)
  acc_a, acc_b = acc(member[ia]), acc(member[ib])
  path_rows = []
  for lam in lams:
    if lam in (0.0, 1.0):
      wa = acc_a if lam == 0.0 else acc_b
    else:
      params = averaging.interpolate(scorers[ia].params, scorers[ib].params, float(lam))
      wa = acc(label_noise.pair_rewards(base.with_params(params), sets))
    ens = acc({s: tuple((1 - lam) * member[ia][s][j] + lam * member[ib][s][j] for j in (0, 1))
               for s in subsets})
    path_rows.append({"lambda": float(lam), "wa": wa, "ens": ens,
                      "diag": {s: (1 - lam) * acc_a[s] + lam * acc_b[s] for s in subsets}})
    print(f"lambda {lam:.2f}: " + " ".join(f"{s} WA {wa[s]:.3f} ENS {ens[s]:.3f}"
                                             for s in subsets), flush=True)

  # WA / ENS / mean individual of the M best, M = 1..members.
  m_rows = []
  for m in range(1, len(paths) + 1):
    if m == 1:
      wa = acc(member[0])
    elif m == len(paths):
      wa = acc(rewards["warm"])  # the label-noise run's WARM of all members
    else:
      params = averaging.average([s.params for s in scorers[:m]])
      wa = acc(label_noise.pair_rewards(base.with_params(params), sets))
    ens = acc(label_noise.mean_rewards(member[:m]))
    ind = {s: float(np.mean([acc(r)[s] for r in member[:m]])) for s in subsets}
    m_rows.append({"m": m, "wa": wa, "ens": ens, "mean_individual": ind})

  result = {"label_noise": config.label_noise, "subsets": subsets,
            "pair": [int(rank[ia]), int(rank[ib])], "path": path_rows, "by_m": m_rows,
            "barrier": {s: float(max(r["diag"][s] - r["wa"][s] for r in path_rows))
                        for s in subsets}}
  stages.write_report(workdir, "lmc", result, table(result), lambda path: plot(result, path))
  return result


def table(result: dict) -> str:
  """Markdown: accuracy of WA / ENS / Diag at each lambda, one column group per subset."""
  subsets = result["subsets"]
  a, b = result["pair"]
  lines = [f"Interpolating RM {a} (lambda = 0) and RM {b} (lambda = 1): WA / ENS / Diag",
           "", "| lambda | " + " | ".join(s.replace("_", " ") for s in subsets) + " |",
           "|" + "---|" * (len(subsets) + 1)]
  for r in result["path"]:
    lines.append(f"| {r['lambda']:.1f} | " + " | ".join(
        f"{r['wa'][s]:.3f} / {r['ens'][s]:.3f} / {r['diag'][s]:.3f}" for s in subsets) + " |")
  lines.append("| max(Diag - WA) | " + " | ".join(f"{result['barrier'][s]:+.3f}"
                                                  for s in subsets) + " |")
  return "\n".join(lines)


def plot(result: dict, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from warm_jax.train import metrics
  subsets = result["subsets"]
  fig, axes = plt.subplots(2, len(subsets), figsize=(3.3 * len(subsets), 6.4), squeeze=False)
  lam = [r["lambda"] for r in result["path"]]
  ms = [r["m"] for r in result["by_m"]]
  for j, s in enumerate(subsets):
    ax = axes[0, j]
    ax.plot(lam, [r["wa"][s] for r in result["path"]], "o-", color="#d62728", label="WA (weights)")
    ax.plot(lam, [r["ens"][s] for r in result["path"]], "s--", color="#1f77b4", ms=4,
            label="ENS (predictions)")
    ax.plot(lam, [r["diag"][s] for r in result["path"]], ":", color="k", label="Diag")
    ax.set(xlabel="lambda", title=s.replace("_", " ") + (" (memorisation)"
                                                          if s == "train_corrupted" else ""))
    ax = axes[1, j]
    ax.plot(ms, [r["wa"][s] for r in result["by_m"]], "o-", color="#d62728", label="WARM of M")
    ax.plot(ms, [r["ens"][s] for r in result["by_m"]], "s--", color="#1f77b4", ms=4,
            label="ENS of M")
    ax.plot(ms, [r["mean_individual"][s] for r in result["by_m"]], ":", color="k",
            label="mean of the M")
    ax.set(xlabel="M (the M best RMs)", xticks=ms)
  axes[0, 0].set_ylabel("accuracy")
  axes[1, 0].set_ylabel("accuracy")
  axes[0, 0].legend(fontsize=7)
  axes[1, 0].legend(fontsize=7)
  a, b = result["pair"]
  fig.suptitle(f"Linear mode connectivity: RM {a} (lambda=0) to RM {b} (lambda=1); and M RMs",
               fontsize=10)
  fig.tight_layout()
  metrics.save_figure(fig, path, dpi=110)
