r"""RLP (reward learning on policy, Lang et al. 2024, arXiv 2403.19279): refine the reward model on
the PPO policy's own samples, then run PPO again from the SFT policy with the refined reward model.

    python experiments/rlp.py --config=experiments/rlp.py:cpu --config.init_from=runs/warm/sft \
        --workdir=runs/rlp

Ten stages in one workdir (`warm_jax.studies.rlp`): a reward model on preference pairs, PPO
against it, the PPO policy's samples on unlabelled prompts, RLP-UML and RLP-SPG (the reward
model refined on those samples), WARM of the two refined models, and PPO from SFT against each
refined model; then every reward model's accuracy on the policy's own responses and every final
policy's gold-judged win rate. Variants: tiny (tests), cpu (the embedded task on 2 CPU cores),
paper (AlpacaFarm-style: instructions, human preferences, unlabelled split; a reward-model oracle
as judge; set the paths).
"""

from __future__ import annotations

import ml_collections

from warm_jax import configs

VARIANTS = ("tiny", "cpu", "paper")


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  from warm_jax.train import rlp as rlp_lib
  c = configs.load_experiment("rl").get_config(variant)  # the PPO runs: policy, prompts, judge
  del c.reward  # the reward models are this experiment's own
  c.rl.algorithm = "ppo"
  # every reward model's training (init_from: the SFT run)
  c.rm = configs.load_experiment("reward_model").get_config(variant)
  c.pairs = 2048  # the preference pairs D: the first `pairs` of the rm data's train split (0: all)
  # The unlabelled prompts U: `prompts` prompts of `split` from index `start` (past D's).
  c.unlabeled = ml_collections.ConfigDict(dict(split="train", start=2048, prompts=512))
  c.samples = ml_collections.ConfigDict(dict(n=10, temperature=1.0, prompt_len=48,
                                             max_new_tokens=40, batch_size=128, seed=7))
  c.uml = rlp_lib.default_uml_config()
  c.spg = ml_collections.ConfigDict(dict(gamma=0.5, meaning="entities", seed=0))
  c.warm = ml_collections.ConfigDict(dict(members=("uml", "spg")))
  # RM accuracy: `samples` policy responses to each of `prompts` prompts of `split` (every pair the
  # judge does not tie), and the first `pairs` preference pairs of the same split (0: none).
  c.eval = ml_collections.ConfigDict(dict(split="test", prompts=256, samples=4, seed=11, pairs=512))
  c.final = ml_collections.ConfigDict(dict(split="test", prompts=256, seed=1234))
  c.seeds = (0,)  # the study re-run under each (stages.over_seeds); 0 is the report's run

  if variant in ("tiny", "cpu"):
    # Gold-labelled pairs (RLP's setting): the embedded task without WARM's label flips.
    c.data.task.flip_fraction = 0.0
    c.rm.data.task = c.data.task
    c.rl.update(kl_coef=0.02, samples_per_prompt=4)  # AlpacaFarm's PPO KL coefficient
    c.uml.update(z_dim=32, hidden=128)
  if variant == "cpu":
    c.optim.lr = 3e-5
    c.train.update(num_steps=150, eval_every=50, ckpt_every=50)
  elif variant == "tiny":
    c.pairs = 48
    c.unlabeled.update(start=48, prompts=8)
    c.samples.update(n=4, prompt_len=32, max_new_tokens=16, batch_size=16)
    c.uml.update(z_dim=4, hidden=16)
    c.eval.update(prompts=8, samples=3)
    c.final.update(prompts=8)
    c.rl.update(ppo_minibatches=2)
  elif variant == "paper":
    # AlpacaFarm (Dubois et al. 2023) splits as in the paper: 10k human preferences, 20k
    # unlabelled instructions; PPO with AlpacaFarm's defaults (KL 0.02, lr 3e-6 approximated);
    # a reward-model oracle (set gold.path, e.g. one trained on the simulated preferences) judges.
    c.data.name = "alpaca_farm/instructions"
    c.data.train_split = "unlabeled"
    c.train.eval_splits = ("val",)
    c.rl.update(kl_coef=0.02, samples_per_prompt=1, max_new_tokens=128)
    c.model.max_len = c.data.max_len + c.rl.max_new_tokens
    c.optim.update(lr=3e-6)
    c.rm.data.name = "alpaca_farm/human_preference"
    c.rm.train.eval_splits = ()
    c.pairs = 0
    c.unlabeled.update(split="unlabeled", start=0, prompts=20_000)
    c.samples.update(n=10, temperature=1.0, prompt_len=384, max_new_tokens=128, batch_size=256)
    c.spg.meaning = "text"  # no entailment model offline: exact (normalised) text
    c.eval.update(split="evaluation", prompts=805, pairs=0)  # no held-out human pairs
    c.final.update(split="evaluation", prompts=805)
  return c


if __name__ == "__main__":
  from warm_jax import cli
  from warm_jax.studies import rlp
  cli.run(rlp.main)
