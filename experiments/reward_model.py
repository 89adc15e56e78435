r"""Bradley-Terry reward-model training on preference pairs (sharded, resumable).

    python experiments/reward_model.py --config=experiments/reward_model.py:cpu --workdir=runs/rm
    python experiments/reward_model.py --config=experiments/reward_model.py:cpu \
        --config.optim.lr=3e-4 --config.mesh.shape='(2,2,2)' --workdir=runs/rm_lr3e-4

Variants: `tiny` (tests, seconds), `cpu` (2 CPU cores, minutes; the embedded task),
`paper` (WARM-scale reward model on the TL;DR comparisons, for a GPU host or a TPU slice).
Re-running the same command resumes from the latest checkpoint in --workdir.
"""

from __future__ import annotations

import ml_collections

from warm_jax import configs


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = configs.experiment_config(variant, ("tiny", "cpu", "paper"), "experiments/reward_model.py")
  c.init_from = ""  # a language-model run (pretrain.py / sft.py) whose decoder the RM starts from
  c.init_step = -1  # which kept checkpoint of init_from (-1: the latest; WARM's Baklava varies it)
  c.data = configs.embedded_data_config(max_len=112, batch_size=32, eval_batch_size=64)

  c.train = configs.train_config(
      num_steps=300, log_every=10, eval_every=100, eval_batches=0, ckpt_every=100, keep=2,
      label_smoothing=0.0, eval_splits=("validation", "ood"))
  c.optim = configs.optim_config(lr=3e-4, warmup_steps=30, weight_decay=0.01)
  c.model = configs.model_config("cpu", vocab_size=1024, max_len=c.data.max_len)
  c.model.dropout_rate = 0.1

  if variant == "tiny":
    configs.make_tiny(c.data)
    c.model = configs.model_config("tiny", vocab_size=1024, max_len=64)
    c.train.update(num_steps=6, log_every=2, eval_every=3, eval_batches=2, ckpt_every=2, keep=3)
    c.optim.warmup_steps = 2
  elif variant == "paper":
    # TL;DR comparisons (Stiennon et al. 2020) with a PaLM-XXS-class backbone (approximated).
    c.data.name = "tldr_comparisons"
    c.data.data_dir = ""
    c.data.tokenizer = ""  # set to a 32k sentencepiece model for real data
    c.data.max_len = 512
    c.data.batch_size = 128
    c.data.eval_batch_size = 128
    c.model = configs.model_config("paper", vocab_size=32_000, max_len=512)
    c.model.dtype = "bfloat16"
    c.model.dropout_rate = 0.1
    c.model.remat = True  # batch 128 x 512 does not fit an 80 GB GPU without rematerialisation
    c.model.scan_layers = True  # compile one layer, not 12 (docs/paper_scale.md)
    c.optim = configs.optim_config(lr=1e-5, warmup_steps=100, weight_decay=0.0)
    c.train.update(num_steps=10_000, log_every=50, eval_every=1000, eval_batches=50,
                   ckpt_every=1000, keep=3, eval_splits=("valid1",))
    c.mesh = configs.mesh_config(shape=(-1, 1, 1))
  return c


if __name__ == "__main__":
  from warm_jax import cli
  from warm_jax.studies import reward_model
  cli.run(reward_model.main)
