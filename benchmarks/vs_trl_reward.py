r"""Reward-model training throughput: warm_jax vs TRL's RewardTrainer (PyTorch), same shape, same
batch, one process, alternating rounds.

    source benchmarks/env.sh          # .venv-bench: warm_jax + torch (CPU) + transformers + trl
    python benchmarks/vs_trl_reward.py                  # shape of benchmarks/common.py, 8 pairs
    python benchmarks/vs_trl_reward.py --batch=16 --steps=10 --rounds=3

warm_jax: the jitted, guarded `step(state, batch)` of warm_jax.train.reward_model (what
`experiments/reward_model.py` runs), fed a fresh host batch every step. TRL: `RewardTrainer.train()`
on pre-tokenised pairs (`chosen_ids` / `rejected_ids`, every row full length so nothing is
padded) with a `LlamaForSequenceClassification` of the same shape; the time per step is the wall
time between consecutive `on_step_end` callbacks (data loading, forward, backward, AdamW),
median over the steps after the first two. Both in float32, or with --dtype=bfloat16 both in
mixed precision (warm_jax: bfloat16 compute, float32 master weights and accumulation; TRL:
`bf16=True`, torch's CPU autocast), no dropout, no gradient
checkpointing (TRL's default is on; both sides run without it), AdamW, gradient clipping at 1.0.
Reported: tokens/s = 2 * batch * seq / (seconds per step).
"""

from __future__ import annotations

import argparse
import tempfile

import common


def warm_jax_side(args):
  setup, state, jitted, batch = common.rm_step_program(args)
  return common.jax_train_measure(common.under_mesh(setup.mesh, jitted), state, batch,
                                  2 * args.batch * args.seq, args.steps)


def trl_side(args):
  import numpy as np
  import torch
  from datasets import Dataset
  from transformers import LlamaForSequenceClassification
  from trl import RewardConfig, RewardTrainer

  torch.manual_seed(0)
  model = LlamaForSequenceClassification(common.hf_llama_config(args, num_labels=1))
  tokenizer = common.hf_tokenizer(args.vocab)
  rng = np.random.default_rng(0)
  total = args.steps + 2
  rows = args.batch * total
  data = Dataset.from_dict({
      "chosen_ids": common.random_tokens(rng, (rows, args.seq), args.vocab).tolist(),
      "rejected_ids": common.random_tokens(rng, (rows, args.seq), args.vocab).tolist()})
  workdir = tempfile.mkdtemp(prefix="trl_rm_")

  def make_trainer(callbacks):
    cfg = RewardConfig(output_dir=workdir, per_device_train_batch_size=args.batch,
                       max_steps=total, learning_rate=1e-4, lr_scheduler_type="constant",
                       weight_decay=0.0, max_grad_norm=1.0, logging_steps=10 ** 6,
                       save_strategy="no", eval_strategy="no", report_to="none",
                       gradient_checkpointing=False, bf16=args.dtype == "bfloat16", fp16=False,
                       use_cpu=True,
                       disable_dropout=True, max_length=args.seq, dataloader_num_workers=0,
                       seed=0)
    return RewardTrainer(model=model, args=cfg, train_dataset=data, processing_class=tokenizer,
                         callbacks=callbacks)
  return common.hf_train_measure(make_trainer, 2 * args.batch * args.seq)


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  common.shape_args(p)
  p.add_argument("--batch", type=int, default=8, help="preference pairs per step")
  p.add_argument("--steps", type=int, default=8, help="timed steps per round")
  args = p.parse_args()
  common.require_peers()
  common.side_by_side(
      "reward-model train step", "tokens/s",
      {"warm_jax": warm_jax_side(args), "TRL RewardTrainer": trl_side(args)}, args,
      f"{args.batch} pairs x {args.seq} tokens per step")


if __name__ == "__main__":
  main()
