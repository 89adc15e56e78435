r"""WARM under label noise: M diverse reward models, their ensemble (ENS) and their weight average.

    python experiments/warm_label_noise.py --config=experiments/warm_label_noise.py:cpu \
        --config.init_from=runs/sft --workdir=runs/warm/label_noise

Trains `config.members` reward models from one SFT run (WARM arXiv 2401.12187, Sec. 3.3 and B.3),
each with its own data order and dropout seed, a learning rate and a dropout rate drawn from
`config.diversity`, and "Baklava" initialisation from the SFT run's kept checkpoints
(`diversity.init_steps`), on corrupted labels; reports members vs ENS vs WARM on train-clean,
train-corrupted (memorisation), validation, test and OOD (`warm_jax.studies.warm.label_noise`).
A stage of the main job (`experiments/warm.py`). Variants: tiny, cpu, paper.
"""

from __future__ import annotations

import ml_collections

from warm_jax import configs

VARIANTS = ("tiny", "cpu", "paper")


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = configs.experiment_config(variant, VARIANTS, "experiments/warm_label_noise.py")
  del c.mesh, c.sharding  # each member's own config (c.rm) holds its mesh
  c.init_from = ""  # the SFT run (required); its kept checkpoints are the Baklava inits
  c.members = 6  # reward models trained
  # Member i draws its learning rate, dropout and SFT checkpoint uniformly from these (seeded by
  # (seed, i)); its data order and dropout masks come from seed + i. The (zero-initialised) head
  # is shared, as in the paper.
  c.diversity = ml_collections.ConfigDict(dict(
      lrs=(1e-4, 2e-4, 4e-4), dropouts=(0.05, 0.1), init_steps=(200, 250, 300)))
  # The first K training pairs (0 = the whole split). 1024 pairs for 160 steps of 32 is 5 epochs:
  # the members overfit and memorise flipped labels, as the paper's RMs do in 10k steps. On 2048
  # pairs (2.5 epochs) they barely did (agreement with flipped labels 0.29) and members, ENS and
  # WARM were within 0.01 of each other everywhere (README, "WARM on the embedded task").
  c.train_examples = 1024
  # Label corruption of data sets that do not generate their own: the embedded task flips
  # data.task.flip_fraction of its train labels itself (and records which).
  c.flip_fraction = 0.25
  c.rm = configs.load_experiment("reward_model").get_config(variant)  # every member starts from it
  c.rm.data.max_len = 80  # in-distribution pairs are <= 75 tokens
  c.rm.train.update(num_steps=160, log_every=20, eval_every=160, ckpt_every=80, keep=1,
                    eval_splits=("validation",))
  c.rm.optim.warmup_steps = 16
  c.eval = ml_collections.ConfigDict(dict(
      rank_split="validation", splits=("test", "ood"), max_len=112, batch_size=256))
  # WARM's shared head (B.3): linear-probed on the frozen features of the SFT run's latest
  # checkpoint over the training pairs (full batch, Adam from zero), then every member starts
  # from it with its own Baklava featurizer. enabled=False: members start from a zero head.
  c.probe = ml_collections.ConfigDict(dict(enabled=True, steps=500, lr=1e-2, weight_decay=0.0,
                                           batch_size=256))
  if variant == "tiny":
    c.members = 3
    c.diversity.update(lrs=(3e-4, 1e-3), init_steps=(3, 6))
    c.train_examples = 48
    c.rm.data.max_len = 64
    c.rm.train.update(num_steps=4, log_every=2, eval_every=4, ckpt_every=2, keep=1,
                      eval_batches=1)
    c.eval.update(max_len=64, batch_size=16)
    c.probe.update(steps=20, batch_size=16)
  elif variant == "paper":
    # B.3: 10 RMs, 10k steps, batch 128, lr in {1e-5, 4e-5, 1e-4}, dropout in {0.05, 0.1},
    # Baklava from SFT steps {8k, 10k, 12k}; 25% of the training labels swapped.
    c.members = 10
    c.diversity.update(lrs=(1e-5, 4e-5, 1e-4), dropouts=(0.05, 0.1),
                       init_steps=(8000, 10_000, 12_000))
    c.train_examples = 0
    c.rm.train.update(num_steps=10_000, eval_every=1000, ckpt_every=1000, keep=2,
                      eval_splits=("valid1",))
    c.eval.update(rank_split="valid1", splits=("valid2",), max_len=512, batch_size=128)
  return c


if __name__ == "__main__":
  from warm_jax import cli
  from warm_jax.studies.warm import label_noise
  cli.run(label_noise.main)
