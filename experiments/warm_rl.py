r"""KL-regularised RL against a single reward model and against WARM, judged by the gold reward.

    python experiments/warm_rl.py --config=experiments/warm_rl.py:cpu --config.init_from=runs/sft \
        --config.label_noise=runs/warm/label_noise --workdir=runs/warm/rl

REINFORCE (the WARM paper's RL) from the SFT policy against the best single RM of a
`warm_label_noise.py` run and against WARM of its M best members; the final policies judged
side by side by the gold reward (`warm_jax.studies.warm.rl`). A stage of the main job
(`experiments/warm.py`). Variants: tiny, cpu, paper.
"""

from __future__ import annotations

import ml_collections

from warm_jax import configs

VARIANTS = ("tiny", "cpu", "paper")


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  rl = configs.load_experiment("rl")
  c = rl.get_config(variant)
  del c.reward  # the rewards come from the label-noise run
  c.label_noise = ""  # a warm_label_noise.py workdir (required)
  c.m = 6  # WARM of the M best members (0: all of them)
  c.final = ml_collections.ConfigDict(dict(split="test", prompts=256, prompt_len=48,
                                           max_new_tokens=40, seed=1234, batch_size=64))
  if variant == "cpu":
    rl.fast_cpu_rl(c)
  elif variant == "tiny":
    c.m = 0
    c.final.update(prompts=8, prompt_len=40, max_new_tokens=16, batch_size=8)
  elif variant == "paper":
    # B.4: REINFORCE, temperature 0.9, batch 128, lr 1e-5, 2k warmup, KL 0.01 (corrupt setup).
    c.rl.update(kl_coef=0.01, temperature=0.9)
    c.optim.update(lr=1e-5, warmup_steps=2000)
    c.final.update(split="valid", prompts=1000, prompt_len=512, max_new_tokens=64, batch_size=128)

  return c


if __name__ == "__main__":
  from warm_jax import cli
  from warm_jax.studies.warm import rl
  cli.run(rl.main)
