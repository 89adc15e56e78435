r"""The main job: WARM (arXiv 2401.12187) end to end on the embedded task, in one output directory.

    python experiments/warm.py --config=experiments/warm.py:cpu --workdir=runs/warm
    python experiments/warm.py --config=experiments/warm.py:cpu --workdir=runs/warm \
        --config.warm_rl.rl.kl_coef=0.003          # any stage's field can be overridden
    python experiments/warm.py --config=experiments/warm.py:paper --workdir=runs/warm_gemma \
        --config.init_from=hf:/models/gemma-2-2b   # from a pretrained model (docs/pretrained.md)

Stages (`warm_jax.studies.warm.job`), each configured by its own experiment file, whose config
is this one's section of the same name: pretrain (the shared LM), sft (keeps the checkpoints
Baklava starts from), warm_label_noise (M diverse RMs on 25%-corrupted labels), warm_lmc
(interpolation), warm_bon (best-of-N) and warm_rl (REINFORCE against a single RM and WARM). Each
stage writes into `<workdir>/<stage>/`, its exact config into `<workdir>/configs/<stage>.json`;
a finished stage is reused on a re-run when its config (and every upstream stage's) is
unchanged, a changed one is refused, an unfinished one resumes. At the end: `results.md` (every
table, each paper claim checked) and `plots/`; `python -m warm_jax.studies.warm.publish
<workdir>` puts them into docs/warm.md. Variants: tiny (tests, ~1 min), cpu (2 CPU cores),
paper (the paper's settings).
"""

from __future__ import annotations

import math

import ml_collections

from warm_jax import configs
from warm_jax.studies.warm import job

VARIANTS = ("tiny", "cpu", "paper")


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = configs.experiment_config(variant, VARIANTS, "experiments/warm.py")
  del c.mesh, c.sharding  # each stage's own config holds its mesh
  # Everything after SFT (the reward models, best-of-N's samples, RL) runs once per seed; seed 0
  # is the report's run, the others give the spread of its headline claims (e.g. (0, 1, 2)).
  c.seeds = (0,)
  # '' = pre-train on the task; hf:DIR = start from a Hugging Face *ForCausalLM (a Gemma, Llama,
  # Qwen or Mistral base): no pre-training stage, SFT from it, every stage's model and tokenizer
  # its own (warm_jax.studies.warm.job.pretrained_job_config).
  c.init_from = ""
  for stage in job.NAMES:  # each stage's own experiment config: experiments/<stage>.py
    c[stage] = configs.load_experiment(stage).get_config(variant)
  if variant == "cpu":
    # In-distribution texts are <= 75 tokens: 80 instead of pretrain.py's 112 saves 30% of the
    # compute of the LM stages (the OOD split, up to 107 tokens, is only scored, at 112).
    for stage in ("pretrain", "sft"):
      c[stage].data.max_len = 80
    c.pretrain.train.update(num_steps=800, eval_every=400, ckpt_every=400)
  elif variant == "paper":
    c.sft.train.num_steps = 12_000  # B.3: SFT for 12k steps; Baklava starts from 8k, 10k, 12k
  # SFT keeps the checkpoints the reward models start from (Baklava).
  steps = sorted(s for s in c.warm_label_noise.diversity.init_steps if s > 0)
  c.sft.train.keep = max(c.sft.train.keep, len(steps))
  if steps:
    c.sft.train.ckpt_every = math.gcd(*steps, c.sft.train.num_steps)
  return c


if __name__ == "__main__":
  from warm_jax import cli
  cli.run(job.main)
