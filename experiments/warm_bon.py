r"""Best-of-N with WARM: a single RM vs ENS vs WARM (M = 2, 4, 6), judged by the gold reward.

    python experiments/warm_bon.py --config=experiments/warm_bon.py:cpu --config.init_from=runs/sft \
        --config.label_noise=runs/warm/label_noise --workdir=runs/warm/bon

The SFT policy samples max(bon.ns) responses per prompt; the best single RM of a
`warm_label_noise.py` run, ENS and WARM of its M best members select among them
(`warm_jax.studies.warm.bon`). A stage of the main job (`experiments/warm.py`). Variants: tiny,
cpu, paper.
"""

from __future__ import annotations

import ml_collections

from warm_jax import configs

VARIANTS = ("tiny", "cpu", "paper")


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = configs.load_experiment("best_of_n").get_config(variant)
  del c.reward  # the selectors come from the label-noise run
  c.label_noise = ""  # a warm_label_noise.py workdir (required): members, ranking, WARM
  c.ms = (2, 4, 6)  # ENS and WARM of the M best members
  c.score_batch_size = 256
  if variant == "cpu":
    c.bon.update(prompts=64, ns=(1, 2, 4, 8, 16, 32, 64, 128, 256), prompt_len=48,
                 max_new_tokens=40)
  elif variant == "tiny":
    c.ms = (2, 3)
    c.score_batch_size = 16
  elif variant == "paper":
    c.ms = (2, 6, 10)  # the paper's BoN uses M = 2 and 6 (ENS only M = 2); 10 RMs are trained
  return c


if __name__ == "__main__":
  from warm_jax import cli
  from warm_jax.studies.warm import bon
  cli.run(bon.main)
