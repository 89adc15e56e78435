r"""Supervised fine-tuning of the pre-trained LM on mostly decent TL;DRs (loss on response tokens).

    python experiments/sft.py --config=experiments/sft.py:cpu \
        --config.init_from=runs/pretrain --workdir=runs/sft

The SFT policy is the reference of RL (`rl.py`) and DPO (`dpo.py`). `config.init_from` is the
pre-training run (required). Variants as in `pretrain.py`.
"""

from __future__ import annotations

import ml_collections

from warm_jax import configs


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = configs.load_experiment("pretrain").get_config(variant)
  c.data.train_split = "sft"
  c.train.objective = "sft"
  c.train.eval_splits = ("sft_validation",)
  c.train.eval_at_start = True  # the pre-trained LM's loss on the SFT data: what SFT improves
  if variant == "cpu":
    c.train.update(num_steps=300, eval_every=100, ckpt_every=100)
    c.optim.update(lr=3e-4, warmup_steps=20)
  elif variant == "paper":
    c.train.update(num_steps=10_000, eval_every=1000, ckpt_every=1000)
    c.optim.update(lr=1e-5, warmup_steps=200, weight_decay=0.0)
  return c


if __name__ == "__main__":
  from warm_jax import cli
  from warm_jax.studies import lm
  cli.run(lm.sft)
