r"""DPO step throughput: warm_jax vs TRL's DPOTrainer (PyTorch), same shape, same batch, one
process, alternating rounds.

    source benchmarks/env.sh
    python benchmarks/vs_trl_dpo.py                     # shape of benchmarks/common.py, 4 pairs
    python benchmarks/vs_trl_dpo.py --batch=8 --steps=6

Each pair: a prompt of seq/2 tokens, chosen and rejected responses of seq/2 - 1 tokens plus
[eos] (rows of exactly seq tokens, nothing padded). A step = the frozen reference's forward pass on
both rows, the policy's forward and backward pass, AdamW; sigmoid loss, beta 0.1.
warm_jax: `ReferenceLogps` (the loop's prepare hook) then the jitted, guarded DPO step of
warm_jax.train.dpo, on a fresh host batch every step. TRL: `DPOTrainer.train()` with an explicit
reference model (no pre-computed reference log-probs, as warm_jax) on text pairs tokenised by a
word-level tokenizer that maps to the same ids; time per step = wall time between consecutive
`on_step_end` callbacks, median over the steps after the first two. float32 (or with
--dtype=bfloat16 mixed precision on both sides: warm_jax's bfloat16 compute with float32 master
weights, TRL's `bf16=True`), no dropout, no gradient checkpointing. Reported: tokens/s = 2 * batch *
seq / (seconds per step).
"""

from __future__ import annotations

import argparse
import tempfile

import common


def warm_jax_side(args):
  setup, state, jitted, batch = common.dpo_step_program(args)
  return common.jax_train_measure(common.under_mesh(setup.mesh, jitted), state, batch,
                                  2 * args.batch * args.seq, args.steps)


def trl_side(args):
  import numpy as np
  import torch
  from datasets import Dataset
  from transformers import LlamaForCausalLM
  from trl import DPOConfig, DPOTrainer

  torch.manual_seed(0)
  model = LlamaForCausalLM(common.hf_llama_config(args))
  ref_model = LlamaForCausalLM(common.hf_llama_config(args))
  ref_model.load_state_dict(model.state_dict())
  tokenizer = common.hf_tokenizer(args.vocab)
  rng = np.random.default_rng(0)
  total = args.steps + 2
  rows = args.batch * total
  prompt, response = common.dpo_layout(args)
  data = Dataset.from_dict({
      "prompt": [common.words(r) + " " for r in common.random_tokens(rng, (rows, prompt), args.vocab)],
      "chosen": [common.words(r) for r in common.random_tokens(rng, (rows, response), args.vocab)],
      "rejected": [common.words(r) for r in common.random_tokens(rng, (rows, response), args.vocab)]})
  workdir = tempfile.mkdtemp(prefix="trl_dpo_")

  def make_trainer(callbacks):
    cfg = DPOConfig(output_dir=workdir, per_device_train_batch_size=args.batch, max_steps=total,
                    learning_rate=1e-6, lr_scheduler_type="constant", weight_decay=0.0,
                    max_grad_norm=1.0, logging_steps=10 ** 6, save_strategy="no",
                    eval_strategy="no", report_to="none", gradient_checkpointing=False,
                    bf16=args.dtype == "bfloat16", fp16=False, use_cpu=True,
                    max_length=args.seq, beta=0.1,
                    loss_type=["sigmoid"], precompute_ref_log_probs=False,
                    dataloader_num_workers=0, seed=0)
    trainer = DPOTrainer(model=model, ref_model=ref_model, args=cfg, train_dataset=data,
                         processing_class=tokenizer, callbacks=callbacks)
    lengths = {len(trainer.train_dataset[0][k]) for k in ("prompt_ids", "chosen_ids")}
    if lengths != {prompt, response + 1}:
      raise RuntimeError(f"TRL tokenised the pairs to lengths {lengths}, not {prompt} + "
                         f"{response + 1}: the two sides would not see the same rows")
    return trainer
  return common.hf_train_measure(make_trainer, 2 * args.batch * args.seq)


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  common.shape_args(p)
  p.add_argument("--batch", type=int, default=4, help="preference pairs per step")
  p.add_argument("--steps", type=int, default=6, help="timed steps per round")
  args = p.parse_args()
  common.require_peers()
  common.side_by_side(
      "DPO train step", "tokens/s",
      {"warm_jax": warm_jax_side(args), "TRL DPOTrainer": trl_side(args)}, args,
      f"{args.batch} pairs x {args.seq} tokens per step (prompt {args.seq // 2}); "
      "policy + frozen reference")


if __name__ == "__main__":
  main()
