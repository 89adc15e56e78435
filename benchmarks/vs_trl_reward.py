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
median over the steps after the first two. Both in float32, no dropout, no gradient
checkpointing (TRL's default is on; both sides run without it), AdamW, gradient clipping at 1.0.
Reported: tokens/s = 2 * batch * seq / (seconds per step).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import common


def warm_jax_side(args):
  import jax
  import numpy as np
  import reward_model as rm_experiment
  from warm_jax import sharding as shd
  from warm_jax.train import reward_model as rm
  from warm_jax.train import state as state_lib

  c = rm_experiment.get_config("tiny")
  c.model = common.warm_model_config(args)
  c.data.max_len = args.seq
  c.data.batch_size = c.data.eval_batch_size = args.batch
  c.optim.update(lr=1e-4, warmup_steps=0, weight_decay=0.0, clip_norm=1.0)
  setup = rm.build(c)
  state = state_lib.create_state(setup.init_params, setup.tx, jax.random.key(0), setup.shardings)
  step = state_lib.jit_step(rm.make_train_step(setup.model, setup.tx, setup.schedule, 0.0, 1),
                            setup.shardings, setup.batch_sharding, setup.mesh, setup.rules,
                            guard=True)
  rng = np.random.default_rng(0)

  def batch():
    host = {k: common.random_tokens(rng, (args.batch, args.seq), args.vocab)
            for k in ("chosen", "rejected")}
    return shd.to_global(host, setup.batch_sharding)

  box = {"state": state}
  box["state"], m = step(box["state"], batch())  # compile
  jax.block_until_ready(m)

  def measure() -> float:
    t = time.perf_counter()
    for _ in range(args.steps):
      box["state"], m = step(box["state"], batch())
    jax.block_until_ready(m)
    return 2 * args.batch * args.seq * args.steps / (time.perf_counter() - t)
  return measure


def trl_side(args):
  import numpy as np
  import torch
  from datasets import Dataset
  from transformers import LlamaForSequenceClassification, TrainerCallback
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

  class Tick(TrainerCallback):
    def __init__(self, timer):
      self.timer = timer

    def on_step_end(self, *a, **k):
      self.timer.tick()

  def measure() -> float:
    timer = common.StepTimer()
    cfg = RewardConfig(output_dir=workdir, per_device_train_batch_size=args.batch,
                       max_steps=total, learning_rate=1e-4, lr_scheduler_type="constant",
                       weight_decay=0.0, max_grad_norm=1.0, logging_steps=10 ** 6,
                       save_strategy="no", eval_strategy="no", report_to="none",
                       gradient_checkpointing=False, bf16=False, fp16=False, use_cpu=True,
                       disable_dropout=True, max_length=args.seq, dataloader_num_workers=0,
                       seed=0)
    trainer = RewardTrainer(model=model, args=cfg, train_dataset=data,
                            processing_class=tokenizer, callbacks=[Tick(timer)])
    timer.tick()
    trainer.train()
    return 2 * args.batch * args.seq / timer.per_step(skip=2)
  return measure


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  common.shape_args(p)
  p.add_argument("--batch", type=int, default=8, help="preference pairs per step")
  p.add_argument("--steps", type=int, default=8, help="timed steps per round")
  args = p.parse_args()
  common.require_peers()
  threads = common.torch_threads()
  sides = {"warm_jax": warm_jax_side(args), "TRL RewardTrainer": trl_side(args)}
  results = common.interleaved(sides, args.rounds)
  print(f"reward-model training, {common.machine_line()}, torch threads {threads}")
  print(f"shape: {args.layers} layers, width {args.width}, {args.heads} heads, MLP {args.d_ff}, "
        f"vocab {args.vocab}; {args.batch} pairs x {args.seq} tokens per step; float32")
  print(common.ratio_table("reward-model train step", "tokens/s", results, "warm_jax",
                           "TRL RewardTrainer"))


if __name__ == "__main__":
  main()
