"""KL-regularised RL against a single reward model and against WARM, judged by the gold reward.

`main(config, workdir)`: two RL runs from the same SFT policy with the same settings
(`warm_jax.studies.rl`: REINFORCE with a batch-mean
baseline, as the WARM paper's RL, and a KL penalty to the SFT policy): `single/` optimises the best
reward model of a `warm_label_noise.py` run (its ranking split decides), `warm/` the weight average
of the M best (`config.m`). Both log the proxy reward they optimise, the gold reward (never
optimised), the KL to the SFT policy and the response length at every step. At the end each final
policy answers `final.prompts` prompts of `final.split` (same prompts, same sampling seed) and the
gold reward judges them side by side: the win rate of the WARM policy against the single-RM
policy (the paper reports 79.4% for M = 6, WARM at 3.5k steps vs the best single RM at 3k), and of
each against the SFT policy. Writes `rl.json` and `rl.png` (gold vs step, gold vs KL, length).
Each run resumes from its checkpoints.
"""

from __future__ import annotations

import os

import ml_collections

from warm_jax import configs, errors, evaluation, stages
from warm_jax.studies import SFT_RUN
from warm_jax.studies import rl, rl_curves
from warm_jax.train import policy
from warm_jax.studies.warm import label_noise


RULES = (
    *policy.RULES, *evaluation.GOLD_RULES,
    configs.Rule("m", lambda v, c: configs.is_int(v) and v >= 0 and v != 1,
                 "0 (all members) or M >= 2 (WARM of the M best)"),
    configs.text("final.split"), configs.integer("final.prompts"), configs.integer("final.batch_size"),
    configs.integer("final.prompt_len"), configs.integer("final.max_new_tokens"),
    configs.seed("final.seed"),
    configs.fits_model("final.prompt_len", "final.max_new_tokens"),
)


def validate(config: ml_collections.ConfigDict, n_members: int) -> None:
  """`RULES`, then M against the label-noise run's number of members."""
  configs.check(config, RULES)
  if config.m > n_members:
    raise errors.InputError(f"config.m={config.m}: WARM of M members needs 2 <= M <= {n_members} "
                            "(0 = all)")


def warm_reward(config, ln: dict, workdir: str) -> str:
  """The WARM checkpoint of the M best members: the label-noise run's own when M is all of them,
  else an average written once to workdir/warm_rm."""
  m = config.m or len(ln["members"])
  if m == len(ln["members"]):
    return ln["warm"]
  from warm_jax import averaging
  return averaging.average_once(os.path.join(workdir, "warm_rm"),
                                [ln["members"][i]["path"] for i in ln["ranking"][:m]])


def run_config(config: ml_collections.ConfigDict, reward_path: str) -> ml_collections.ConfigDict:
  """An RL run's config: this one's RL settings with reward = the reward-model run at reward_path."""
  c = ml_collections.ConfigDict(config.to_dict())
  for field in ("label_noise", "m", "final"):
    del c[field]
  c.reward = ml_collections.ConfigDict(dict(kind="rm", path=reward_path))
  return c


def final_samples(config, runs: dict[str, str]) -> tuple[list[str], dict[str, list[str]]]:
  """The same prompts answered by each policy run (and the SFT policy), same sampling seed."""
  from warm_jax import data as data_lib
  from warm_jax import sampling
  f = config.final
  prompts = data_lib.load_prompts(config.data, f.split, f.prompts)
  sampler = sampling.PolicySampler.of(config, f, config.rl.temperature)
  return prompts, {name: sampler.sample(path, prompts, seed=f.seed) for name, path in runs.items()}


def main(config: ml_collections.ConfigDict, workdir: str) -> dict:
  from warm_jax import evaluation
  configs.require(config, {"init_from": SFT_RUN, "label_noise": label_noise.WORKDIR})
  ln, _ = label_noise.load(config.label_noise)
  validate(config, len(ln["members"]))
  stages.record_config(config, workdir)
  rewards = {"single": ln["members"][ln["ranking"][0]]["path"],
             "warm": warm_reward(config, ln, workdir)}
  runs = {}
  for name, reward_path in rewards.items():
    runs[name] = os.path.join(workdir, name)
    print(f"RL against {name}: {reward_path} -> {runs[name]}", flush=True)
    rl.main(run_config(config, reward_path), runs[name])

  prompts, texts = final_samples(config, {"sft": config.init_from, **runs})
  gold_fn = evaluation.gold_fn(config)  # the judge of the RL logs (config.gold), once more
  comparisons = {
      "warm_vs_single": evaluation.gold_comparison(prompts, texts["warm"], texts["single"], gold_fn),
      "warm_vs_sft": evaluation.gold_comparison(prompts, texts["warm"], texts["sft"], gold_fn),
      "single_vs_sft": evaluation.gold_comparison(prompts, texts["single"], texts["sft"], gold_fn)}
  m = config.m or len(ln["members"])
  result = {"m": m, "rewards": rewards, "runs": runs, "final": comparisons,
            "curves": {name: rl_curves.key_points(rl_curves.curves(path, smooth=3))
                       for name, path in runs.items()},
            "examples": [{"prompt": prompts[i], **{k: texts[k][i] for k in texts}}
                         for i in range(min(3, len(prompts)))]}
  curves = {"single RM": rl_curves.curves(runs["single"]),
            f"WARM M={m}": rl_curves.curves(runs["warm"])}
  stages.write_report(workdir, "rl", result, table(result), lambda path: rl_curves.plot(curves, path))
  return result


def table(result: dict) -> str:
  lines = ["| policy (reward optimised) | gold at step 0 | gold peak (step, KL) | gold at the end "
           "(step) | KL at the end | length start -> end |", "|---|---|---|---|---|---|"]
  for name, label in (("single", "single RM"), ("warm", f"WARM (M = {result['m']})")):
    s = result["curves"][name]
    lines.append(f"| {label} | {s['gold_start']:.3f} | {s['gold_peak']:.3f} ({s['peak_step']}, "
                 f"{s['peak_kl']:.2f}) | {s['gold_end']:.3f} ({s['end_step']}) | "
                 f"{s['kl_end']:.2f} | {s['length_start']:.1f} -> {s['length_end']:.1f} |")
  lines += ["", rl_curves.peak_note(result["curves"]["single"]["peak_window"])]
  f = result["final"]
  lines += ["", "| final policies, gold-judged | win rate (+- one standard error) | ties | n |",
            "|---|---|---|---|"]
  for key, label in (("warm_vs_single", "WARM policy vs single-RM policy"),
                     ("warm_vs_sft", "WARM policy vs SFT"), ("single_vs_sft", "single-RM policy vs SFT")):
    r = f[key]
    lines.append(f"| {label} | {r['win_rate']:.1%} +- {r['win_rate_stderr']:.1%} | "
                 f"{r['ties']:.1%} | {r['n']} |")
  return "\n".join(lines)
