r"""Supervised fine-tuning of the pre-trained LM on mostly decent TL;DRs (loss on response tokens).

    python experiments/sft.py --config=experiments/sft.py:cpu \
        --config.init_from=runs/pretrain --workdir=runs/sft

The SFT policy is the reference of RL (`rl.py`) and DPO (`dpo.py`). `config.init_from` is the
pre-training run (required). Variants as in `pretrain.py`.
"""

from __future__ import annotations

import os
import sys

import ml_collections

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pretrain  # noqa: E402


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = pretrain.get_config(variant)
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


def main(config: ml_collections.ConfigDict, workdir: str) -> dict:
  if not config.init_from:
    raise SystemExit("config.init_from is empty: SFT starts from a pre-trained LM, e.g. "
                     "--config.init_from=runs/pretrain (python experiments/pretrain.py ...)")
  return pretrain.main(config, workdir)


if __name__ == "__main__":
  from warm_jax import cli
  cli.run(main)
