r"""Best-of-N against a reward model: gold reward of the kept response vs N and vs the KL bound.

    python experiments/best_of_n.py --config=experiments/best_of_n.py:cpu \
        --config.init_from=runs/sft --config.reward.paths='("runs/rm",)' --workdir=runs/bon
    # WARM (weight average) or ENS (prediction ensemble) of several RMs:
    python experiments/best_of_n.py --config=experiments/best_of_n.py:cpu --config.init_from=runs/sft \
        --config.reward.paths='("runs/rm0","runs/rm1")' --config.reward.combine=average --workdir=runs/bon_warm

For `config.bon.prompts` prompts of `config.bon.split`, the SFT policy samples max(ns) responses
once; each reward function (the proxy given by `config.reward`, and the gold reward itself as the
oracle upper bound) scores all of them. For each N the kept response is the best of N samples,
averaged over the max(ns) / N disjoint groups of each prompt's samples (an unbiased estimate with
less variance than one group). Reported per N: gold and proxy reward of the kept response, and the
analytic KL(best-of-N || policy) bound log N - (N - 1) / N. Writes `bon.json` and `bon.png`.
The judge is the embedded task's gold reward, or with `gold.kind='rm'` a reward-model run (the
paper variant: real TL;DR, where a larger RM plays the oracle). Sampling runs on one device.
"""

from __future__ import annotations

import json
import os
import sys

import ml_collections
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from warm_jax import configs  # noqa: E402

VARIANTS = ("tiny", "cpu", "paper")
COMBINE = ("single", "average", "ensemble")


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = configs.experiment_config(variant, VARIANTS, "experiments/best_of_n.py")
  del c.mesh, c.sharding  # sampling runs on one device
  c.init_from = ""  # the SFT policy run (required)
  # paths: reward-model runs; combine: 'single' (exactly one path), 'average' (WARM: weight
  # average, one forward pass) or 'ensemble' (ENS: mean prediction of the members).
  c.reward = ml_collections.ConfigDict(dict(paths=("",), combine="single", name=""))
  # The judge: the embedded task's gold reward, or (real data, as in the WARM paper where a larger
  # reward model plays the oracle) a reward-model run at gold.path.
  c.gold = ml_collections.ConfigDict(dict(kind="embedded", path=""))
  c.data = configs.embedded_data_config()
  del c.data.max_len, c.data.batch_size, c.data.eval_batch_size, c.data.seed  # see config.bon
  c.model = configs.model_config("cpu", vocab_size=1024, max_len=112)
  c.model.dropout_rate = 0.0
  c.bon = ml_collections.ConfigDict(dict(
      split="test", prompts=128, ns=(1, 2, 4, 8, 16, 32, 64), temperature=1.0, prompt_len=72,
      max_new_tokens=40, batch_size=256))
  if variant == "tiny":
    c.data.task.sizes.update(configs.TINY_TASK_SIZES)
    c.model = configs.model_config("tiny", vocab_size=1024, max_len=64)
    c.bon.update(prompts=4, ns=(1, 2, 4), prompt_len=40, max_new_tokens=16, batch_size=8)
  elif variant == "paper":
    # WARM (arXiv 2401.12187) BoN on TL;DR: N up to 1000 in the paper (a power of two here so every
    # N divides the largest), PaLM-XXS-class policy, judged by a larger oracle RM (gold.path).
    c.data.name = "tldr_sft"
    c.data.tokenizer = ""  # a 32k sentencepiece model for real data
    c.model = configs.model_config("paper", vocab_size=32_000, max_len=512 + 64)
    c.model.dtype = "bfloat16"
    c.gold.kind = "rm"
    c.bon.update(split="test", prompts=1000, ns=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
                 prompt_len=512, max_new_tokens=64, batch_size=512)
  return c


def validate_sampling(config) -> None:
  """The judge (config.gold) and the sampling settings (config.bon)."""
  from warm_jax import evaluation
  b = config.bon
  evaluation.validate_gold(config)
  ns = list(b.ns)
  if not ns or any(n < 1 for n in ns) or any(max(ns) % n for n in ns):
    raise ValueError(f"config.bon.ns={tuple(ns)}: must be positive and each must divide max(ns)")
  if b.prompt_len + b.max_new_tokens > config.model.max_len:
    raise ValueError(f"config.bon.prompt_len + max_new_tokens = {b.prompt_len + b.max_new_tokens}"
                     f" exceeds config.model.max_len={config.model.max_len}")
  if b.prompts < 1:
    raise ValueError(f"config.bon.prompts={b.prompts}: must be >= 1")


def validate(config) -> None:
  validate_sampling(config)
  if config.reward.combine not in COMBINE:
    raise ValueError(f"config.reward.combine={config.reward.combine!r}: must be one of {COMBINE}")
  paths = [p for p in config.reward.paths if p]
  if not paths:
    raise ValueError("config.reward.paths is empty: give the reward-model run(s) to select with")
  if config.reward.combine == "single" and len(paths) != 1:
    raise ValueError(f"config.reward.combine='single' needs exactly one path, got {len(paths)}")


def load_reward(config):
  """A scorer with .score(prompts, responses) for config.reward, and its display name."""
  import warm_jax
  paths = [p for p in config.reward.paths if p]
  combine = config.reward.combine
  if combine == "single":
    rm = warm_jax.load_reward_model(paths[0])
  elif combine == "average":
    rm = warm_jax.load_averaged(paths)
  else:
    rm = warm_jax.load_ensemble(paths)
  name = config.reward.name or (f"{combine} of {len(paths)}" if combine != "single" else "single RM")
  return rm, name


def best_of_n_curve(scores: np.ndarray, gold: np.ndarray, ns) -> list[dict]:
  """scores, gold: [prompts, max_n]. For each N: mean gold and score of the argmax-score sample
  over max_n / N disjoint groups per prompt (`evaluation.best_of_n_kept`)."""
  from warm_jax import evaluation
  return [{"n": int(n), "gold": float(evaluation.best_of_n_kept(scores, gold, n).mean()),
           "score": float(evaluation.best_of_n_kept(scores, scores, n).mean()),
           "kl_bound": float(np.log(n) - (n - 1) / n)} for n in ns]


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
  sampler = sampling.PolicySampler(config.model, data_lib.load_tokenizer(config.data),
                                   prompt_len=b.prompt_len, max_new_tokens=b.max_new_tokens,
                                   temperature=b.temperature, batch_size=b.batch_size)
  source = data_lib.load_split(config.data, b.split)
  prompts = [source[i]["prompt"] for i in range(min(b.prompts, len(source)))]
  m = max(b.ns)
  texts = sampler.sample_n(config.init_from, prompts, m, seed=config.seed, desc="best-of-N sampling")
  return prompts, [p for p in prompts for _ in range(m)], [t for ts in texts for t in ts]


def main(config: ml_collections.ConfigDict, workdir: str) -> dict:
  from warm_jax import evaluation
  if not config.init_from:
    raise SystemExit("config.init_from is empty: best-of-N samples the SFT policy, e.g. "
                     "--config.init_from=runs/sft")
  validate(config)
  b = config.bon
  rm, reward_name = load_reward(config)
  prompts, flat_prompts, texts = sample_candidates(config)
  m = max(b.ns)
  proxy = np.asarray(rm.score(flat_prompts, texts)).reshape(len(prompts), m)
  gold = np.asarray(evaluation.gold_fn(config)(flat_prompts, texts)).reshape(len(prompts), m)
  result = {"reward_name": reward_name, "reward_paths": list(config.reward.paths),
            "combine": config.reward.combine, "prompts": len(prompts), "max_n": m,
            "proxy": best_of_n_curve(proxy, gold, b.ns),
            "oracle": best_of_n_curve(gold, gold, b.ns),
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


if __name__ == "__main__":
  from warm_jax import cli
  cli.run(main)
