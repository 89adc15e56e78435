r"""KL-regularised RL of the SFT policy against a reward: the gold reward or a proxy reward model.

    python experiments/rl.py --config=experiments/rl.py:cpu --config.init_from=runs/sft \
        --config.reward.kind=gold --workdir=runs/rl_gold
    python experiments/rl.py --config=experiments/rl.py:cpu --config.init_from=runs/sft \
        --config.reward.kind=rm --config.reward.path=runs/rm --workdir=runs/rl_proxy
    python -m warm_jax.studies.rl_curves runs/rl_gold runs/rl_proxy   # reward vs KL of both

`config.rl.algorithm`: 'reinforce' (with a batch-mean baseline: the WARM paper's RL), 'rloo' or 'ppo'
(value head, GAE, clipping: the RLP paper's). The policy maximises reward - kl_coef * KL(policy ||
SFT). Every step logs the proxy reward (what is optimised), the gold reward (never optimised unless
reward.kind='gold'), the KL to the reference, entropy and response length; evaluation samples one
response per validation prompt. `reward.kind='rm'` takes a reward-model run (or a WARM average
written by `python -m warm_jax.average`). Variants: tiny, cpu, paper.
"""

from __future__ import annotations

import ml_collections

from warm_jax import configs

VARIANTS = ("tiny", "cpu", "paper")


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = configs.experiment_config(variant, VARIANTS, "experiments/rl.py")
  c.init_from = ""  # the SFT run: initial policy and frozen reference (required)
  # kind 'rms': sum_i weights[i] * (RM_i - offsets[i]) / scales[i] over the runs `paths` (MORLHF's
  # scalarised reward; `warm_jax.multi_objective.WeightedReward`); offsets/scales () mean 0/1.
  c.reward = ml_collections.ConfigDict(dict(kind="gold", path="", paths=(), weights=(),
                                            offsets=(), scales=()))
  # The judge logged next to the optimised reward: the embedded task's gold reward, or a
  # reward-model run at gold.path (real data, where a larger RM plays the oracle).
  c.gold = ml_collections.ConfigDict(dict(kind="embedded", path=""))
  # max_len: prompt tokens (left-padded; longer prompts are cut from the left); batch: prompts.
  c.data = configs.embedded_data_config(max_len=80, batch_size=16, eval_batch_size=64)
  c.data.train_split = "train"  # prompts of the preference pairs

  c.rl = configs.rl_config("reinforce", kl_coef=0.05, samples_per_prompt=4, max_new_tokens=40)
  c.train = configs.train_config(
      num_steps=150, log_every=5, eval_every=50, eval_batches=2, ckpt_every=50, keep=2,
      eval_splits=("validation",), eval_at_start=True)
  c.optim = configs.optim_config(lr=3e-5, warmup_steps=10, weight_decay=0.0)
  c.optim.end_lr_fraction = 1.0
  c.model = configs.model_config("cpu", vocab_size=1024, max_len=c.data.max_len + 40)
  c.model.dropout_rate = 0.0

  if variant == "tiny":
    configs.make_tiny(c.data, max_len=48)
    c.rl.update(samples_per_prompt=2, max_new_tokens=16)
    c.model = configs.model_config("tiny", vocab_size=1024, max_len=64)
    c.train.update(num_steps=4, log_every=2, eval_every=2, eval_batches=1, ckpt_every=2, keep=2)
    c.optim.warmup_steps = 1
  elif variant == "paper":
    # WARM (arXiv 2401.12187) RL: REINFORCE from the SFT policy, KL coefficient 0.003 (their
    # Fig. 7 also uses 0.01 and 0.1), TL;DR prompts, batch 128, lr 1e-6 (approximated).
    c.data.name = "tldr_sft"
    c.data.tokenizer = ""  # a 32k sentencepiece model for real data
    c.data.max_len = 512
    c.data.batch_size = 128
    c.data.eval_batch_size = 128
    c.rl.update(kl_coef=0.003, samples_per_prompt=1, max_new_tokens=64)
    c.model = configs.model_config("paper", vocab_size=32_000, max_len=512 + 64)
    c.model.dtype = "bfloat16"
    c.model.remat = True
    c.model.scan_layers = True  # compile one layer, not 12 (docs/paper_scale.md)
    c.optim = configs.optim_config(lr=1e-6, warmup_steps=100, weight_decay=0.0)
    c.train.update(num_steps=10_000, log_every=20, eval_every=500, eval_batches=4,
                   ckpt_every=500, keep=3, eval_splits=("valid",))
    c.gold.kind = "rm"  # set gold.path to the oracle reward-model run
  return c


def fast_cpu_rl(c: ml_collections.ConfigDict) -> None:
  """The 2-core RL of warm_rl.py and rewarded_soups.py: KL 0.01 (the WARM paper's corrupted-label
  setting) and a larger learning rate than this file's cpu variant (1e-4), 150 steps: a run moves
  the policy (and passes a single reward model's hacking point) in minutes."""
  c.rl.update(kl_coef=0.01)
  c.optim.lr = 1e-4
  c.train.update(num_steps=150, eval_every=50, ckpt_every=50)


if __name__ == "__main__":
  from warm_jax import cli
  from warm_jax.studies import rl
  cli.run(rl.main)
