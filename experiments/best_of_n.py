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

import ml_collections

from warm_jax import configs

VARIANTS = ("tiny", "cpu", "paper")


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
    c.model.scan_layers = True  # as the paper SFT run saves it (either layout loads)
    c.gold.kind = "rm"
    c.bon.update(split="test", prompts=1000, ns=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
                 prompt_len=512, max_new_tokens=64, batch_size=512)
  return c


if __name__ == "__main__":
  from warm_jax import cli
  from warm_jax.studies import best_of_n
  cli.run(best_of_n.main)
