"""Best-of-N with WARM: a single RM vs ENS vs WARM (M = 2, 4, 6), judged by the gold reward.

`main(config, workdir)`: the SFT policy samples max(bon.ns) responses per prompt once
(`warm_jax.studies.best_of_n.sample_candidates`). Each
selector scores all of them: the single best reward model of a `warm_label_noise.py` run (its
ranking split decides), ENS of the M best (mean prediction) and WARM of the M best (one model, the
weight average), for each M of `config.ms`. For each N the kept response is the best of N by the
selector (averaged over the max_n / N disjoint groups of each prompt). Reported per N: the gold
reward of the kept response, the KL bound log N - (N - 1) / N, and the gold-judged win rate of each
selector's pick against the single RM's pick on the same prompts and groups (ties count one half).
WARM arXiv 2401.12187 (Fig. 6-7): WARM's gold reward keeps rising with N where a single RM's
falls (reward hacking), above ENS, and WARM's picks win more than half the time against the
single RM's (the paper also compares every selector with WARM M = 6). Writes `bon.json` and
`bon.png`.
"""

from __future__ import annotations


import ml_collections
import numpy as np

from warm_jax import configs, errors, stages
from warm_jax.studies import SFT_RUN
from warm_jax.studies import best_of_n
from warm_jax.studies.warm import label_noise


RULES = (
    *best_of_n.SAMPLING_RULES,
    configs.sequence("ms", lambda v: configs.is_int(v) and v >= 2, "one or more M >= 2"),
    configs.integer("score_batch_size"),
)


def validate(config: ml_collections.ConfigDict, n_members: int) -> None:
  """`RULES`, then each M against the label-noise run's number of members."""
  configs.check(config, RULES)
  if max(config.ms) > n_members:
    raise errors.InputError(f"config.ms={tuple(config.ms)}: each M must be in [2, {n_members}] "
                            f"(the label-noise run trained {n_members} members)")


def selector_scores(config, ln: dict, flat_prompts, texts) -> dict[str, np.ndarray]:
  """{selector name: scores [len(texts)]}: 'single', 'ENS M', 'WARM M' for M in config.ms."""
  from warm_jax import averaging, scoring
  rank = ln["ranking"]
  m_max = max(config.ms)
  paths = [ln["members"][i]["path"] for i in rank[:m_max]]
  scorers = scoring.load_reward_models(paths, batch_size=config.score_batch_size)
  base = scorers[0]
  base.max_len = max(base.max_len, config.bon.prompt_len + config.bon.max_new_tokens + 2)
  unique, inverse = unique_rows(base, flat_prompts, texts)
  member = []
  for i, s in enumerate(scorers):
    member.append(base.with_params(s.params).score_tokens(*unique)[inverse])
    print(f"scored with member {i + 1}/{len(scorers)}", flush=True)
  out = {"single": member[0]}
  ens_in = ens_inputs(scorers, member)
  for m in config.ms:
    out[f"ENS {m}"] = np.mean(ens_in[:m], axis=0)
    warm = averaging.average([s.params for s in scorers[:m]])
    out[f"WARM {m}"] = base.with_params(warm).score_tokens(*unique)[inverse]
  return out


def unique_rows(scorer, flat_prompts, texts) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
  """((unique token rows, their masks), inverse): the (prompt, response) rows as the scorer
  encodes them, each distinct one (tokens and mask) once (the policy repeats itself), so that
  `score_tokens(*unique)[inverse]` scores every sample."""
  from warm_jax.data import pipeline
  tokens, mask = pipeline.trim_padding(*scorer.encode(flat_prompts, texts))
  width = tokens.shape[1]
  unique, inverse = np.unique(np.concatenate([tokens, mask.astype(tokens.dtype)], axis=1), axis=0,
                              return_inverse=True)
  print(f"scoring {len(unique)} distinct of {len(tokens)} samples", flush=True)
  return (unique[:, :width], unique[:, width:].astype(bool)), inverse.reshape(-1)


def ens_inputs(scorers, member_scores: list) -> list:
  """What ENS averages: the members' raw scores, or, when every member stores reward statistics
  (`warm_jax.reward_norm`), each member's scores standardised by its own (ENS of normalised
  members). WARM and a single RM select the same responses either way (a positive affine map
  keeps the argmax), so their scores stay raw."""
  from warm_jax import reward_norm
  if reward_norm.stored_offsets_scales(scorers) is None:
    return member_scores
  return [s.norm.apply(x) for s, x in zip(scorers, member_scores)]


def curves(scores: dict, gold: np.ndarray, ns) -> dict:
  """Per selector (and the oracle: gold itself) and N: the kept response's mean gold and its
  gold-judged win rate against the single RM's pick (`warm_jax.best_of_n.curve`)."""
  from warm_jax import best_of_n as bon
  return {name: bon.curve(s, gold, ns, reference=scores["single"], reference_name="single")
          for name, s in {**scores, "oracle": gold}.items()}


def main(config: ml_collections.ConfigDict, workdir: str) -> dict:
  from warm_jax import evaluation
  configs.require(config, {"init_from": SFT_RUN, "label_noise": label_noise.WORKDIR})
  ln, _ = label_noise.load(config.label_noise)
  validate(config, len(ln["members"]))
  stages.record_config(config, workdir)
  prompts, flat_prompts, texts = best_of_n.sample_candidates(config)
  m = max(config.bon.ns)
  gold = np.asarray(evaluation.gold_fn(config)(flat_prompts, texts)).reshape(len(prompts), m)
  scores = {k: v.reshape(len(prompts), m)
            for k, v in selector_scores(config, ln, flat_prompts, texts).items()}
  result = {"prompts": len(prompts), "max_n": m, "ms": list(config.ms),
            "single": ln["members"][ln["ranking"][0]]["path"],
            "mean_length_words": float(np.mean([len(t.split()) for t in texts])),
            "curves": curves(scores, gold, config.bon.ns)}
  stages.write_report(workdir, "bon", result, table(result), lambda path: plot(result, path))
  return result


def selectors(result: dict) -> list[str]:
  return (["single"] + [f"ENS {m}" for m in result["ms"]] + [f"WARM {m}" for m in result["ms"]]
          + ["oracle"])


def table(result: dict) -> str:
  """Markdown: gold reward of the kept response per N and selector (win rate vs single in
  brackets)."""
  names = selectors(result)
  lines = ["| N | KL bound | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 2)]
  for i, row in enumerate(result["curves"]["single"]):
    cells = []
    for name in names:
      r = result["curves"][name][i]
      cells.append(f"{r['gold']:.3f}" if name in ("single", "oracle")
                   else f"{r['gold']:.3f} ({r['win_rate_vs_single']:.0%})")
    lines.append(f"| {row['n']} | {row['kl_bound']:.2f} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def plot(result: dict, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from warm_jax.train import metrics
  fig, axes = plt.subplots(1, 3, figsize=(15, 4))
  styles = {"single": ("k", "o-"), "oracle": ("#999999", ":")}
  blues = plt.cm.Blues(np.linspace(0.45, 0.9, len(result["ms"])))
  reds = plt.cm.Reds(np.linspace(0.45, 0.9, len(result["ms"])))
  for j, m in enumerate(result["ms"]):
    styles[f"ENS {m}"] = (blues[j], "s--")
    styles[f"WARM {m}"] = (reds[j], "o-")
  for name in selectors(result):
    rows = result["curves"][name]
    color, fmt = styles[name]
    label = "gold (oracle selection)" if name == "oracle" else name
    n = [r["n"] for r in rows]
    axes[0].plot(n, [r["gold"] for r in rows], fmt, color=color, ms=4, label=label)
    axes[1].plot([r["kl_bound"] for r in rows], [r["gold"] for r in rows], fmt, color=color, ms=4)
    if name not in ("single", "oracle"):
      axes[2].plot(n, [r["win_rate_vs_single"] for r in rows], fmt, color=color, ms=4, label=name)
  axes[0].set(xscale="log", xlabel="N", ylabel="gold reward of the kept response",
              title="best-of-N: gold vs N")
  axes[1].set(xlabel="KL bound log N - (N-1)/N [nats]", ylabel="gold reward",
              title="best-of-N: gold vs KL")
  axes[2].axhline(0.5, color="k", lw=0.8, ls=":")
  axes[2].set(xscale="log", xlabel="N", ylabel="win rate vs the single RM's pick",
              title="gold-judged win rate vs single RM")
  axes[0].legend(fontsize=7)
  axes[2].legend(fontsize=7)
  fig.tight_layout()
  metrics.save_figure(fig, path, dpi=110)
