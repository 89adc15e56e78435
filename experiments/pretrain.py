r"""Next-token pre-training of the shared language model on the embedded task's corpus.

    python experiments/pretrain.py --config=experiments/pretrain.py:cpu --workdir=runs/pretrain

The corpus holds responses of every quality (good, verbose, partial, repetitive, malformed,
hallucinated, random), so the pre-trained LM can write both good and bad TL;DRs; `sft.py` then
fine-tunes it on mostly decent ones. Every reward model and policy starts from this checkpoint.
Variants: `tiny` (tests, seconds), `cpu` (2 CPU cores, minutes), `paper` (a PaLM-XXS-class decoder,
for a GPU host or a TPU slice; real pre-training data is not part of this repository).
Re-running the same command resumes from the latest checkpoint in --workdir.
"""

from __future__ import annotations

import ml_collections

from warm_jax import configs

VARIANTS = ("tiny", "cpu", "paper")


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = configs.experiment_config(variant, VARIANTS, "experiments/pretrain.py")
  c.init_from = ""  # a language-model run to start from ('' = random init)
  c.data = configs.embedded_data_config(max_len=112, batch_size=32, eval_batch_size=64)
  c.data.train_split = "corpus"

  c.train = configs.train_config(
      objective="pretrain", num_steps=1200, log_every=20, eval_every=400, eval_batches=4,
      ckpt_every=400, keep=2, eval_splits=("corpus_validation",))
  c.optim = configs.optim_config(lr=1e-3, warmup_steps=60, weight_decay=0.01)
  c.model = configs.model_config("cpu", vocab_size=1024, max_len=c.data.max_len)
  c.model.dropout_rate = 0.0

  if variant == "tiny":
    configs.make_tiny(c.data)
    c.model = configs.model_config("tiny", vocab_size=1024, max_len=64)
    c.train.update(num_steps=6, log_every=2, eval_every=3, eval_batches=2, ckpt_every=3, keep=2)
    c.optim.warmup_steps = 2
  elif variant == "paper":
    c.data.max_len = 512
    c.data.batch_size = 256
    c.data.eval_batch_size = 256
    c.model = configs.model_config("paper", vocab_size=32_000, max_len=512)
    c.model.dtype = "bfloat16"
    c.model.remat = True
    c.model.scan_layers = True  # compile one layer, not 12 (docs/paper_scale.md)
    c.optim = configs.optim_config(lr=3e-4, warmup_steps=2000, weight_decay=0.1)
    c.train.update(num_steps=100_000, log_every=100, eval_every=5000, eval_batches=20,
                   ckpt_every=5000, keep=3)
  return c


if __name__ == "__main__":
  from warm_jax import cli
  from warm_jax.studies import lm
  cli.run(lm.pretrain)
