r"""WARP: weight averaged rewarded policies (EMA anchor, SLERP of M policies, LITI, iterated).

    python experiments/warp.py --config=experiments/warp.py:cpu --config.init_from=runs/warm/sft \
        --config.label_noise=runs/warm/warm_label_noise --workdir=runs/warp
    python -m warm_jax.studies.warm.publish runs/warp --page docs/warp.md --figures warp \
        --marker warp-results

Against the reward of the main job's WARM checkpoint (config.label_noise: a finished
warm_label_noise.py workdir) and judged by the gold reward: REINFORCE anchored to the SFT policy
at the KL coefficients baseline.kl_coefs; warp.iterations WARP iterations of warp.m RL runs each
(EMA anchor, rate warp.ema_rate), their SLERP, LITI towards the initialisation over warp.etas,
the point at warp.eta the next initialisation; the KL-gold fronts, SLERP against LERP and the
paper's claims (`warm_jax.studies.warp`). Variants: tiny, cpu (2 cores, under 30 minutes),
paper.
"""

from __future__ import annotations

import ml_collections

from warm_jax import configs

VARIANTS = ("tiny", "cpu", "paper")


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  rl = configs.load_experiment("rl")
  c = rl.get_config(variant)  # every RL run's settings (rl.kl_coef: the WARP runs' KL)
  del c.reward  # the reward: the label-noise run's WARM checkpoint
  c.label_noise = ""  # a finished warm_label_noise.py workdir (required)
  # WARP (arXiv 2406.16768): M RL runs per iteration with the EMA anchor (mu), their SLERP, LITI
  # towards the initialisation over the grid `etas`; the point at `eta` starts the next one.
  c.warp = ml_collections.ConfigDict(dict(iterations=2, m=2, ema_rate=0.05,
                                          etas=(0.0, 0.25, 0.5, 0.75, 1.0), eta=0.5))
  c.baseline = ml_collections.ConfigDict(dict(kl_coefs=(0.01, 0.03, 0.1)))  # REINFORCE, SFT anchor
  # The front: every policy answers the same prompts with the same seed; KL to the SFT policy.
  c.front = ml_collections.ConfigDict(dict(split="validation", prompts=128, samples=2,
                                           batch_size=64, seed=1234))
  if variant == "cpu":
    # Seven short RL runs on 2 cores: the fast settings of warm_rl.py (lr 1e-4, KL 0.01) for 60
    # steps of 8 prompts x 4 samples; no evaluation inside the runs (the fronts judge them).
    rl.fast_cpu_rl(c)
    c.data.batch_size = 8
    # Every rollout is 32 rows (8 prompts x 4 samples; evaluation and the fronts: 32 prompts x 1,
    # 16 x 2), so each run and the fronts share one compiled sampler, scorer and reference pass.
    c.data.eval_batch_size = 32
    c.front.batch_size = 16
    c.train.update(num_steps=60, log_every=5, eval_every=60, eval_batches=1, ckpt_every=30,
                   keep=1, eval_at_start=False)
    # mu: the paper's 0.01 is for thousands of steps; over 60 the anchor must move within them.
  elif variant == "tiny":
    c.warp.update(etas=(0.0, 0.5, 1.0), eta=0.5)
    c.baseline.kl_coefs = (0.01, 0.1)
    c.front.update(prompts=8, samples=1, batch_size=8)
    c.train.update(eval_at_start=False)
  elif variant == "paper":
    # Approximates the paper's setting on TL;DR (its Gemma policies are not available): M = 2
    # REINFORCE runs per iteration with mu = 0.01 as the paper; eta, the iterations and the KL
    # coefficient are approximations, the rest experiments/rl.py's paper variant.
    c.warp.update(iterations=3, m=2, ema_rate=0.01, etas=(0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0),
                  eta=0.3)
    c.rl.kl_coef = 0.05
    c.baseline.kl_coefs = (0.01, 0.03, 0.05, 0.1)
    c.front.update(split="valid", prompts=1000, samples=1, batch_size=128)
  return c


if __name__ == "__main__":
  from warm_jax import cli
  from warm_jax.studies import warp
  cli.run(warp.main)
