r"""DPO / IPO fine-tuning of a policy on preference pairs against its frozen SFT reference.

    python experiments/dpo.py --config=experiments/dpo.py:cpu \
        --config.dpo.ref_checkpoint=runs/sft --workdir=runs/dpo
    python experiments/dpo.py --config=experiments/dpo.py:cpu --config.dpo.loss_type=ipo \
        --config.dpo.beta=0.5 --config.dpo.ref_checkpoint=runs/sft --workdir=runs/ipo

Variants: `tiny` (tests, seconds), `cpu` (2 CPU cores, minutes; the embedded task), `paper` (the
DPO paper's settings, Rafailov et al. 2023, arXiv 2305.18290, App. B: beta 0.1, batch 64, RMSprop
at lr 1e-6 with a 150-step linear warmup, for a GPU host or a TPU slice).
Re-running the same command resumes from the latest checkpoint in --workdir.

The reference policy is an SFT run (`config.dpo.ref_checkpoint`: the run directory of
`experiments/sft.py`, or its checkpoints/ directory, on the same config.model); it is also the
starting point of the policy. Besides the DPO metrics on the preference splits (implicit-reward
accuracy and margins), the end of the run samples the DPO policy and the SFT policy on
`config.gold_eval.n` test prompts and writes the gold-judged win rate of DPO over SFT to
`<workdir>/gold_eval.json` (embedded task only).
"""

from __future__ import annotations

import ml_collections

from warm_jax import configs


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  from warm_jax.train import dpo
  c = configs.experiment_config(variant, ("tiny", "cpu", "paper"), "experiments/dpo.py")
  c.data = configs.embedded_data_config(max_len=112, batch_size=32, eval_batch_size=64)

  # The policy and its reference: the SFT language model (must match the SFT run's config.model).
  # Dropout off, as in TRL's DPOTrainer: with dropout the policy != reference at step 0.
  c.model = configs.model_config("cpu", vocab_size=1024, max_len=c.data.max_len)
  c.model.dropout_rate = 0.0

  # beta: strength of the implicit KL to the reference; loss_type 'sigmoid' (DPO; with
  # label_smoothing > 0 conservative DPO) or 'ipo' (Azar et al. 2023; beta is IPO's tau).
  c.dpo = dpo.dpo_config(beta=0.1, loss_type="sigmoid", label_smoothing=0.0,
                         average_log_prob=False, ref_checkpoint="")

  c.train = configs.train_config(
      num_steps=300, log_every=10, eval_every=100, eval_batches=0, ckpt_every=100, keep=2,
      eval_splits=("validation", "ood"), eval_at_start=True)
  # Gold-judged comparison with the SFT policy after training (embedded task): n test prompts,
  # one sample each at this temperature, prompts cut to prompt_len tokens.
  c.gold_eval = ml_collections.ConfigDict(dict(
      n=256, split="test", temperature=1.0, prompt_len=72, max_new_tokens=40, seed=0))
  c.optim = configs.optim_config(lr=2e-5, warmup_steps=30, weight_decay=0.0)
  c.optim.name = "adamw"  # 'adamw' (state.make_optimizer) or 'rmsprop' (the DPO paper's)
  c.optim.rmsprop_decay = 0.99  # used by 'rmsprop' only (PyTorch's default alpha)

  if variant == "tiny":
    configs.make_tiny(c.data)
    c.model = configs.model_config("tiny", vocab_size=1024, max_len=64)
    c.train.update(num_steps=6, log_every=2, eval_every=3, eval_batches=2, ckpt_every=2, keep=3)
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 2
    c.gold_eval.update(n=8, prompt_len=40, max_new_tokens=16)
  elif variant == "paper":
    # The DPO paper's dialogue setting (Anthropic HH, single-turn): beta 0.1, batch 64, RMSprop,
    # lr 1e-6 warmed up linearly over 150 steps and then constant (end_lr_fraction 1). Gradient
    # clipping at norm 10 and max length 512 are the authors' reference implementation's defaults.
    # Their TL;DR summarisation runs use beta 0.5 (--config.dpo.beta=0.5 with TL;DR data).
    # Many reimplementations (e.g. TRL) use Adam(W) instead: --config.optim.name=adamw.
    c.data.name = "hh_rlhf/helpful_base"
    c.data.data_dir = ""
    c.data.tokenizer = ""  # set to the policy's 32k sentencepiece model for real data
    c.data.max_len = 512
    c.data.batch_size = 64
    c.data.eval_batch_size = 64
    c.model = configs.model_config("paper", vocab_size=32_000, max_len=512)
    c.model.dtype = "bfloat16"
    c.model.scan_layers = True  # compile one layer, not 12 (docs/paper_scale.md)
    c.model.dropout_rate = 0.0
    c.dpo.beta = 0.1
    c.optim = configs.optim_config(lr=1e-6, warmup_steps=150, weight_decay=0.0, clip_norm=10.0)
    c.optim.end_lr_fraction = 1.0
    c.optim.name = "rmsprop"
    c.optim.rmsprop_decay = 0.99
    # About one epoch of HH-RLHF's ~160k training pairs at batch 64.
    c.train.update(num_steps=2_500, log_every=20, eval_every=500, eval_batches=8,
                   ckpt_every=500, keep=3, eval_splits=("test",))
    c.mesh = configs.mesh_config(shape=(-1, 1, 1))
    c.gold_eval.n = 0  # no gold reward for real data
  return c


if __name__ == "__main__":
  from warm_jax import cli
  from warm_jax.studies import dpo
  cli.run(dpo.main)
