r"""What a policy writes: samples of one or more policy runs on the same prompts, with gold rewards.

    python experiments/sample_policy.py runs/sft runs/rl_gold runs/rl_proxy [--split validation] \
        [--n 4] [--temperature 1.0] [--seed 1]

Each run is an LM run (pre-training, SFT, RL or DPO) of the embedded task; its model and data
settings are read from its own checkpoint's config. Prints, per prompt, each run's response and its
gold total; returns {run: [(response, gold), ...]}.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> dict:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("runs", nargs="+", help="LM run directories (SFT, RL, DPO, pre-training)")
  ap.add_argument("--split", default="validation")
  ap.add_argument("--n", type=int, default=4, help="number of prompts")
  ap.add_argument("--prompt_len", type=int, default=72)
  ap.add_argument("--max_new_tokens", type=int, default=40)
  ap.add_argument("--temperature", type=float, default=1.0)
  ap.add_argument("--seed", type=int, default=1)
  args = ap.parse_args(argv)
  if args.n < 1:
    ap.error(f"--n must be >= 1, got {args.n}")
  for r in args.runs:
    if not os.path.exists(r):
      ap.error(f"run {r} does not exist")

  import ml_collections

  from warm_jax import checkpoints, sampling
  from warm_jax import data as data_lib
  from warm_jax.data import embedded
  from warm_jax.train import init

  out, prompts = {}, None
  for run in args.runs:
    meta = checkpoints.read_meta(init.resolve(run))
    config = ml_collections.ConfigDict(meta["config"])
    if prompts is None:
      source = data_lib.load_split(config.data, args.split)
      prompts = [source[i]["prompt"] for i in range(min(args.n, len(source)))]
      tokenizer = data_lib.load_tokenizer(config.data)
    model_cfg = config.model.copy_and_resolve_references()
    model_cfg.max_len = max(model_cfg.max_len, args.prompt_len + args.max_new_tokens)
    sampler = sampling.PolicySampler(model_cfg, tokenizer, prompt_len=args.prompt_len,
                                     max_new_tokens=args.max_new_tokens,
                                     temperature=args.temperature, batch_size=len(prompts))
    texts = sampler.sample(run, prompts, seed=args.seed)
    gold = embedded.gold_reward_batch(prompts, texts, config.data.task)["total"]
    out[run] = [(t, float(g)) for t, g in zip(texts, gold)]
  for i, p in enumerate(prompts):
    print(f"prompt: {p}")
    for run in args.runs:
      t, g = out[run][i]
      print(f"  {run:<24} [gold {g:.2f}] {t}")
  return out


if __name__ == "__main__":
  main()
