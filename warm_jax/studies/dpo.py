"""DPO / IPO fine-tuning of a policy on preference pairs against its frozen SFT reference.

`main(config, workdir)`: the reference is an SFT run (`config.dpo.ref_checkpoint`, on the same
config.model), also the policy's starting point; training is `warm_jax.train.dpo` (implicit-reward
accuracy and margins on the preference splits). On the embedded task the end of the run samples
the DPO and SFT policies on `config.gold_eval.n` test prompts and writes the gold-judged win rate
of DPO over SFT to `<workdir>/gold_eval.json` (also in the returned result).
"""

from __future__ import annotations

import json
import os

import ml_collections

from warm_jax import configs
from warm_jax.studies.lm import report


def rules():
  """The trainer's fields and config.gold_eval (used after training: checked before it)."""
  from warm_jax.train import dpo
  return (
      *dpo.RULES,
      configs.integer("gold_eval.n", lo=0), configs.text("gold_eval.split"),
      configs.number("gold_eval.temperature", 0.0, lo_open=True),
      configs.integer("gold_eval.prompt_len"), configs.integer("gold_eval.max_new_tokens"),
      configs.seed("gold_eval.seed"),
      configs.fits_model("gold_eval.prompt_len", "gold_eval.max_new_tokens"),
  )


def validate(config: ml_collections.ConfigDict) -> None:
  configs.check(config, rules())


def main(config: ml_collections.ConfigDict, workdir: str) -> dict:
  from warm_jax import data as data_lib
  from warm_jax.train import dpo, init
  configs.require(config, {"dpo.ref_checkpoint": "an SFT run (experiments/sft.py) on the same "
                           "config.model, e.g. --config.dpo.ref_checkpoint=runs/warm/sft"})
  validate(config)
  setup = dpo.build(config)
  ref_params = init.load_lm_params(config.dpo.ref_checkpoint, config.model, setup.mesh,
                                   setup.rules)
  tokenizer = data_lib.load_tokenizer(config.data)
  sources = {s: data_lib.load_split(config.data, s) for s in ("train", *config.train.eval_splits)}
  result = dpo.train(config, workdir, sources, tokenizer, ref_params)
  state = result.pop("state")
  report(result)
  if config.gold_eval.n and config.data.name == "embedded_tldr":
    gold = gold_eval(config, setup.model, state.params, ref_params, tokenizer,
                     data_lib.load_split(config.data, config.gold_eval.split))
    with open(os.path.join(workdir, "gold_eval.json"), "w") as f:
      json.dump(gold, f, indent=1)
    print(f"gold win rate of DPO over SFT on {gold['n']} {config.gold_eval.split} prompts: "
          f"{gold['win_rate']:.3f} +- {gold['win_rate_stderr']:.3f} (gold DPO {gold['gold_a']:.3f}, "
          f"SFT {gold['gold_b']:.3f})")
    result["gold_eval"] = gold
  return result


def gold_eval(config, model, params, ref_params, tokenizer, source) -> dict:
  """Samples the DPO and SFT policies on the same prompts; the gold-judged win rate of DPO."""
  from warm_jax import evaluation, sampling
  from warm_jax.data import embedded
  g = config.gold_eval
  prompts = [source[i]["prompt"] for i in range(min(g.n, len(source)))]
  fn = sampling.make_generate(model, max_new_tokens=g.max_new_tokens, temperature=g.temperature,
                              eos_id=tokenizer.eos_id)
  kw = dict(prompt_len=g.prompt_len, max_new_tokens=g.max_new_tokens, seed=g.seed,
            batch_size=config.data.eval_batch_size, generate_fn=fn)
  texts_dpo = sampling.sample_texts(model, params, tokenizer, prompts, **kw)
  texts_sft = sampling.sample_texts(model, ref_params, tokenizer, prompts, **kw)
  gold_fn = lambda p, r: embedded.gold_reward_batch(p, r, config.data.task)["total"]
  out = evaluation.gold_comparison(prompts, texts_dpo, texts_sft, gold_fn)
  out.update(split=g.split, temperature=g.temperature,
             examples=[{"prompt": p, "dpo": a, "sft": b}
                       for p, a, b in list(zip(prompts, texts_dpo, texts_sft))[:3]])
  return out
