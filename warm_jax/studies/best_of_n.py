"""Best-of-N against a reward model: gold reward of the kept response vs N and vs the KL bound.

`main(config, workdir)`: for `config.bon.prompts` prompts of `config.bon.split` the SFT policy
(config.init_from) samples max(bon.ns) responses once; the proxy of `config.reward` (one run, the
weight average of several: WARM, or the mean of their predictions: ENS) and the judge itself (the
oracle upper bound) score all of them; `warm_jax.best_of_n.curve` gives, per N, the gold and
proxy reward of the kept response and the KL bound. Writes `bon.json` and `bon.png`. The judge is
config.gold (the embedded task's gold reward, or a reward-model run). Sampling runs on one device.
"""

from __future__ import annotations

import json
import os

import ml_collections
import numpy as np

from warm_jax import configs, evaluation
from warm_jax.studies import SFT_RUN

COMBINE = ("single", "average", "ensemble")


# The judge and the sampling (what warm.bon shares), then the proxy.
SAMPLING_RULES = (
    *evaluation.GOLD_RULES, *configs.MODEL_RULES, configs.seed("seed"), configs.text("bon.split"),
    configs.init_source("init_from"),
    configs.sequence("bon.ns", lambda n: configs.is_int(n) and n >= 1, "positive integers"),
    configs.Rule("bon.ns", lambda v, c: all(max(v) % n == 0 for n in v),
                 "positive integers each dividing the largest (the samples of a prompt are cut "
                 "into groups of N)"),
    configs.integer("bon.prompts"), configs.integer("bon.prompt_len"),
    configs.integer("bon.max_new_tokens"), configs.integer("bon.batch_size"),
    configs.number("bon.temperature", 0.0, lo_open=True),
    configs.fits_model("bon.prompt_len", "bon.max_new_tokens"),
)
RULES = (
    *SAMPLING_RULES,
    configs.choice("reward.combine", COMBINE),
    configs.sequence("reward.paths", lambda p: isinstance(p, str) and p != "",
                     "one or more reward-model runs (non-empty paths)"),
    configs.Rule("reward.paths", lambda v, c: c.reward.combine != "single" or len(v) == 1,
                 "exactly one run with combine 'single'", reads=("reward.combine",)),
)


def validate(config) -> None:
  configs.check(config, RULES)


def load_reward(config):
  """A scorer with .score(prompts, responses) for config.reward, and its display name. ENS of
  members that all store reward statistics (`warm_jax.reward_norm`) averages their standardised
  rewards (`reward_norm.normalized_ensemble`); a single RM or WARM selects the same responses
  whatever their scale, so they score raw."""
  from warm_jax import checkpoints, reward_norm, scoring
  paths = [p for p in config.reward.paths if p]
  combine = config.reward.combine
  if combine == "single":
    rm = scoring.load_reward_model(paths[0])
  elif combine == "average":
    rm = scoring.load_averaged(paths)
  elif any(reward_norm.read(checkpoints.resolve_checkpoint_dir(p)) is not None for p in paths):
    rm = reward_norm.normalized_ensemble(scoring.load_reward_models(paths))
  else:
    rm = scoring.load_ensemble(paths)
  name = config.reward.name or (f"{combine} of {len(paths)}" if combine != "single" else "single RM")
  return rm, name


def plot(result: dict, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from warm_jax.train import metrics
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
  for key, label in (("proxy", result["reward_name"]), ("oracle", "gold (oracle selection)")):
    rows = result[key]
    axes[0].plot([r["n"] for r in rows], [r["gold"] for r in rows], "o-", label=label)
    axes[1].plot([r["kl_bound"] for r in rows], [r["gold"] for r in rows], "o-", label=label)
  axes[0].set(xscale="log", xlabel="N", ylabel="gold reward of the kept response",
              title="best-of-N: gold vs N")
  axes[1].set(xlabel="KL bound log N - (N-1)/N [nats]", ylabel="gold reward",
              title="best-of-N: gold vs KL")
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  metrics.save_figure(fig, path, dpi=110)


def sample_candidates(config: ml_collections.ConfigDict) -> tuple[list[str], list[str], list[str]]:
  """The SFT policy's max(bon.ns) samples for each of bon.prompts prompts of bon.split:
  (prompts, flat prompts [prompts * max_n], responses [prompts * max_n]), prompt-major."""
  from warm_jax import data as data_lib
  from warm_jax import sampling
  b = config.bon
  prompts = data_lib.load_prompts(config.data, b.split, b.prompts)
  m = max(b.ns)
  texts = sampling.PolicySampler.of(config, b).sample_n(config.init_from, prompts, m,
                                                        seed=config.seed, desc="best-of-N sampling")
  return prompts, [p for p in prompts for _ in range(m)], [t for ts in texts for t in ts]


def main(config: ml_collections.ConfigDict, workdir: str) -> dict:
  from warm_jax import best_of_n, evaluation
  configs.require(config, {"init_from": f"{SFT_RUN} (the policy best-of-N samples)"})
  validate(config)
  b = config.bon
  rm, reward_name = load_reward(config)
  prompts, flat_prompts, texts = sample_candidates(config)
  m = max(b.ns)
  proxy = np.asarray(rm.score(flat_prompts, texts)).reshape(len(prompts), m)
  gold = np.asarray(evaluation.gold_fn(config)(flat_prompts, texts)).reshape(len(prompts), m)
  result = {"reward_name": reward_name, "reward_paths": list(config.reward.paths),
            "combine": config.reward.combine, "prompts": len(prompts), "max_n": m,
            "proxy": best_of_n.curve(proxy, gold, b.ns),
            "oracle": best_of_n.curve(gold, gold, b.ns),
            "mean_length": float(np.mean([len(t.split()) for t in texts]))}
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "bon.json"), "w") as f:
    json.dump(result, f, indent=1)
  plot(result, os.path.join(workdir, "bon.png"))
  print(f"{'N':>4} {'KL bound':>9} {'gold (' + reward_name + ')':>24} {'proxy':>8} {'gold (oracle)':>14}")
  for r, o in zip(result["proxy"], result["oracle"]):
    print(f"{r['n']:>4} {r['kl_bound']:>9.3f} {r['gold']:>24.3f} {r['score']:>+8.3f} {o['gold']:>14.3f}")
  print(f"wrote {workdir}/bon.json and {workdir}/bon.png")
  return result
