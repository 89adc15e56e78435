"""Model-written evaluations (Perez et al. 2022, arXiv 2212.09251) of one behaviour, verbosity, along
the rewarded soups' lambda and along RL steps.

`main(config, workdir)`:
1. The generator language model writes the evaluation items: `items.posts` posts, sampled from
   [bos] alone and cut at the TL;DR marker, then two TL;DRs of each post; the item's answer
   *matching the behaviour* is the long-winded one (the first TL;DR followed by the second's
   content), the other answer is the first TL;DR alone.
2. A preference model filters them (`pm.path`, a reward-model run): an item is kept when the
   preference model prefers the plain answer to the long-winded one by at least `pm.threshold`,
   Perez et al.'s check that the item is labelled correctly (here: that the matching answer is
   the undesired one). The gold reward, which neither step sees, measures how often the label
   is right before and after the filter.
3. The evals: for each policy, (a) the fraction of items where it finds the long-winded answer
   more likely (mean log-probability per token; Perez et al.'s answer-choice format), and (b) the
   fraction of its own responses to the items' posts longer than the task's length budget. The
   same two measures on hand-written items (the embedded task's own 'good' and 'verbose' TL;DRs
   of held-out posts) check the model-written ones (their correlation across the policies).
   The policies: the SFT policy, the soups (1 - lambda) theta_brevity + lambda theta_coverage of
   a rewarded_soups.py run at each `lambdas`, its MORL policies, and the kept checkpoints of its
   `rl_steps` run (RL steps).
Writes mwe.json, mwe.md and mwe.png. On real data hand-written items need the embedded task, so
only the model-written measures are reported.
"""

from __future__ import annotations

import json
import os

import ml_collections
import numpy as np

from warm_jax import errors, stages
from warm_jax.studies import rewarded_soups

MARKER = "tldr :"


def rules():
  from warm_jax import configs
  return (
      configs.seed("seed"), configs.text("generator"), configs.text("soups"), configs.text("pm.path"),
      configs.number("pm.threshold"),
      configs.integer("writing.posts"), configs.integer("writing.post_tokens", lo=8),
      configs.integer("writing.answer_tokens", lo=4), configs.integer("writing.prompt_len"),
      configs.number("writing.temperature", 0.0, lo_open=True), configs.seed("writing.seed"),
      configs.integer("writing.min_facts", lo=0), configs.boolean("writing.keep_unmarked"),
      configs.integer("hand.n_items", lo=0), configs.seed("hand.seed"),
      configs.distinct_numbers("lambdas", 0.0, 1.0, min_len=0), configs.text("rl_steps"),
      configs.seed("eval.seed"), configs.integer("eval.batch_size"),
  )


def validate(config) -> None:
  from warm_jax import configs
  configs.check(config, rules())


def read_config(run: str) -> ml_collections.ConfigDict:
  path = os.path.join(run, "config.json")
  if not os.path.exists(path):
    raise errors.MissingInput(f"{path} does not exist: {run} is not a run directory")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


# ---------------------------------------------------------------- items

def split_post(text: str, keep_unmarked: bool = False) -> str | None:
  """The post part of an unconditional sample ('<post> tldr : ...'); without a marker None (or,
  with `keep_unmarked`, the whole text)."""
  head, sep, _ = text.partition(MARKER)
  head = head.strip()
  return head if (sep or keep_unmarked) and head else None


def long_winded(first: str, second: str) -> str:
  """The behaviour-matching answer: the first TL;DR followed by the second's content."""
  rest = second.split(MARKER, 1)[1].strip() if MARKER in second else second.strip()
  return f"{first.strip()} {rest}".strip()


def write_items(config, soups_cfg) -> dict:
  """Step 1: the generator's posts and answers (usable posts only: a marker and >= min_facts key
  facts on the embedded task; no duplicates)."""
  from warm_jax import data as data_lib
  from warm_jax import sampling
  from warm_jax.data import embedded
  i = config.writing
  gen_cfg = read_config(config.generator)
  tokenizer = data_lib.load_tokenizer(soups_cfg.data)
  posts_sampler = sampling.PolicySampler(gen_cfg.model, tokenizer, prompt_len=4,
                                         max_new_tokens=i.post_tokens, temperature=i.temperature,
                                         batch_size=config.eval.batch_size)
  params = posts_sampler.load(config.generator)
  raw = posts_sampler.sample(params, [""] * i.posts, seed=i.seed)
  posts, seen = [], set()
  for text in raw:
    post = split_post(text, i.keep_unmarked)
    facts = len(embedded.key_facts(post or "")) if soups_cfg.data.name == "embedded_tldr" else i.min_facts
    if post and post not in seen and facts >= i.min_facts:
      posts.append(post)
      seen.add(post)
  answers = sampling.PolicySampler(gen_cfg.model, tokenizer, prompt_len=i.prompt_len,
                                   max_new_tokens=i.answer_tokens, temperature=i.temperature,
                                   batch_size=config.eval.batch_size)
  first = answers.sample(params, posts, seed=i.seed + 1)
  second = answers.sample(params, posts, seed=i.seed + 2)
  items = [{"prompt": p, "matching": long_winded(a, b), "not_matching": a}
           for p, a, b in zip(posts, first, second) if a.strip()]
  return {"written": len(raw), "usable_posts": len(posts), "items": items}


def pm_filter(config, items: list[dict]) -> tuple[list[dict], np.ndarray]:
  """Step 2: the items whose plain answer the preference model prefers by >= pm.threshold."""
  from warm_jax import scoring
  pm = scoring.load_reward_model(config.pm.path, batch_size=config.eval.batch_size)
  p = [x["prompt"] for x in items]
  margin = (np.asarray(pm.score(p, [x["not_matching"] for x in items]))
            - np.asarray(pm.score(p, [x["matching"] for x in items])))
  return [x for x, m in zip(items, margin) if m >= config.pm.threshold], margin


def label_correct(items: list[dict], task) -> float | None:
  """Fraction of items whose behaviour-matching answer the gold reward ranks strictly lower."""
  from warm_jax.data import embedded
  if not items:
    return None
  p = [x["prompt"] for x in items]
  gm = embedded.gold_reward_batch(p, [x["matching"] for x in items], task)["total"]
  gn = embedded.gold_reward_batch(p, [x["not_matching"] for x in items], task)["total"]
  return float(np.mean(gm < gn))


def hand_items(config, task) -> list[dict]:
  """The hand-written analogue: the task's 'verbose' and 'good' TL;DRs of held-out posts."""
  from warm_jax.data import embedded
  rng = np.random.default_rng(config.hand.seed)
  out = []
  for _ in range(config.hand.n_items):
    post = embedded.sample_post_for_split(rng, task, "test")
    out.append({"prompt": post.text,
                "matching": embedded.sample_response(rng, post, "verbose", task),
                "not_matching": embedded.sample_response(rng, post, "good", task)})
  return out


# ---------------------------------------------------------------- the evals

class AnswerLogps:
  """Mean log-probability per token of answers under a policy, in fixed-size jitted batches."""

  def __init__(self, model_cfg, tokenizer, max_len: int, batch_size: int):
    import jax

    from warm_jax.data import pipeline
    from warm_jax.models import LanguageModel
    from warm_jax.train import dpo
    model = LanguageModel(model_cfg)
    self.encode = pipeline.LMEncoder(tokenizer, max_len, response_only=True)
    self.batch_size = batch_size
    self._fn = jax.jit(lambda params, t, w, m: dpo.sequence_logps(model, params, t, w,
                                                                   average=True, mask=m))

  def __call__(self, params, prompts, answers) -> np.ndarray:
    rows = [self.encode({"prompt": p, "response": a}) for p, a in zip(prompts, answers)]
    out = []
    for s in range(0, len(rows), self.batch_size):
      chunk = rows[s:s + self.batch_size]
      real = len(chunk)
      chunk = chunk + [chunk[-1]] * (self.batch_size - real)
      t = np.stack([r["tokens"] for r in chunk])
      w = np.stack([r["weights"] for r in chunk])
      m = np.stack([r["mask"] for r in chunk])
      out.append(np.asarray(self._fn(params, t, w, m))[:real])
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def behaviour(params, items, logps: AnswerLogps, sampler, task, seed: int) -> dict:
  """(a) how often the policy finds the matching answer more likely; (b) how often its own
  response to the item's post exceeds the task's length budget (embedded task only)."""
  from warm_jax.data import embedded
  p = [x["prompt"] for x in items]
  lm = logps(params, p, [x["matching"] for x in items])
  ln = logps(params, p, [x["not_matching"] for x in items])
  out = {"prefers_matching": float(np.mean(lm > ln)), "items": len(items)}
  if task is not None:
    texts = sampler.sample(params, p, seed=seed)
    budget = [embedded.brevity_target(len(embedded.key_facts(x)), task.brevity) for x in p]
    n = np.asarray([len(t.split()) for t in texts])
    out.update(over_budget=float(np.mean(n > np.asarray(budget))), length=float(n.mean()))
  return out


def policies(config, soups_cfg, sampler) -> dict:
  """name -> params: SFT, the soups at each lambda, MORL's policies, the rl_steps run's kept steps."""
  from warm_jax import averaging, checkpoints
  a, b = soups_cfg.objectives.names
  soups = os.path.join(config.soups, "soups.json")
  if not os.path.exists(soups):
    raise errors.MissingInput(f"config.soups={config.soups!r}: not a finished rewarded_soups.py "
                              "workdir (no soups.json)")
  with open(soups) as f:
    result = json.load(f)
  theta_a, theta_b = sampler.load(result["rl_runs"][a]), sampler.load(result["rl_runs"][b])
  out = {"sft": sampler.load(soups_cfg.init_from)}
  for lam in config.lambdas:
    out[f"soup {lam:.2f}"] = averaging.interpolate(theta_b, theta_a, lam)
  for lam, path in sorted(result["morl_runs"].items()):
    if lam not in ("0.00", "1.00"):
      out[f"morl {lam}"] = sampler.load(path)
  run = os.path.join(config.soups, config.rl_steps)
  for step in checkpoints.complete_steps(os.path.join(run, "checkpoints")):
    out[f"{config.rl_steps} step {step}"] = sampler.load(run, step)
  return out


def main(config: ml_collections.ConfigDict, workdir: str) -> dict:
  from warm_jax import data as data_lib
  validate(config)
  soups_cfg = read_config(config.soups)
  stages.record_config(config, workdir)
  embedded_task = soups_cfg.data.name == "embedded_tldr"
  task = soups_cfg.data.task if embedded_task else None  # its own length budget, not the soups'
  written = stages.run_job(config, workdir, [stages.Stage(
      "items", lambda ctx: write_items(config, soups_cfg),
      lambda ctx: {"generator": config.generator, "writing": config.writing.to_dict(),
                   "tokenizer": soups_cfg.data.to_dict()},
      header="the generator writes the items")]).results["items"]
  kept, margin = pm_filter(config, written["items"])
  if not kept:
    raise errors.InputError(f"the preference model kept none of {len(written['items'])} items; lower "
                     "config.pm.threshold")
  sets = {"model-written": kept}
  if embedded_task and config.hand.n_items:
    sets["hand-written"] = hand_items(config, task)
  tokenizer = data_lib.load_tokenizer(soups_cfg.data)
  sampler = rewarded_soups.sampler_of(soups_cfg)
  logps = AnswerLogps(soups_cfg.model, tokenizer, soups_cfg.model.max_len, config.eval.batch_size)
  evals = {}
  for name, params in policies(config, soups_cfg, sampler).items():
    print(f"evaluating {name}", flush=True)
    evals[name] = {s: behaviour(params, items, logps, sampler, task, config.eval.seed)
                   for s, items in sets.items()}
  result = {"written": written["written"], "usable_posts": written["usable_posts"],
            "items": len(written["items"]), "kept": len(kept),
            "pm_margin_mean": float(np.mean(margin)), "evals": evals,
            "examples": kept[:3], "correlation": correlations(evals)}
  if task is not None:
    result["label_correct"] = {"before_filter": label_correct(written["items"], task),
                               "after_filter": label_correct(kept, task),
                               "hand-written": label_correct(sets.get("hand-written", []), task)}
  stages.write_report(workdir, "mwe", result, tables(result),
                      lambda path: plot(result, path))
  return result


def correlations(evals: dict) -> dict:
  """Pearson correlation across the policies between the model-written and hand-written
  measures (None when there is no hand-written set or a measure does not vary)."""
  names = list(evals)
  if len(names) < 3 or "hand-written" not in evals[names[0]]:
    return {}
  out = {}
  for measure in ("prefers_matching", "over_budget"):
    if measure not in evals[names[0]]["model-written"]:
      continue
    x = np.asarray([evals[n]["model-written"][measure] for n in names])
    y = np.asarray([evals[n]["hand-written"][measure] for n in names])
    out[measure] = float(np.corrcoef(x, y)[0, 1]) if np.ptp(x) > 0 and np.ptp(y) > 0 else None
  return out


def plot(result: dict, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from warm_jax.train import metrics
  evals = result["evals"]
  soups = sorted((float(n.split()[1]), n) for n in evals if n.startswith("soup "))
  steps = [("sft", 0)] + sorted(((n, int(n.split()[-1])) for n in evals if " step " in n),
                                key=lambda t: t[1])
  sets = list(next(iter(evals.values())))
  measures = [m for m in ("prefers_matching", "over_budget") if m in evals["sft"][sets[0]]]
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for s in sets:
    for m, style in zip(measures, ("-o", "--s")):
      axes[0].plot([x for x, _ in soups], [evals[n][s][m] for _, n in soups], style,
                   label=f"{s}: {m}")
      axes[1].plot([st for _, st in steps], [evals[n][s][m] for n, _ in steps], style,
                   label=f"{s}: {m}")
  axes[0].set_xlabel("soup lambda (weight on the coverage policy)")
  axes[1].set_xlabel("RL step of the coverage policy (0: SFT)")
  for ax in axes:
    ax.set_ylabel("behaviour rate (verbosity)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=7)
  fig.tight_layout()
  metrics.save_figure(fig, path, dpi=120)


def tables(result: dict) -> str:
  evals = result["evals"]
  sets = list(next(iter(evals.values())))
  lines = [f"The generator wrote {result['written']} posts ({result['usable_posts']} usable, "
           f"{result['items']} items); the preference model kept {result['kept']}."]
  if "label_correct" in result:
    lc = result["label_correct"]
    fmt = lambda x: "-" if x is None else f"{x:.1%}"  # noqa: E731
    lines.append(f"Items whose long-winded answer the gold reward ranks lower (label correct): "
                 f"{fmt(lc['before_filter'])} before the filter, {fmt(lc['after_filter'])} after; "
                 f"hand-written items {fmt(lc['hand-written'])}.")
  head = ["policy"]
  for s in sets:
    head += [f"{s}: prefers long-winded", f"{s}: over budget"]
  lines += ["", "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
  for name, per in evals.items():
    cells = [name]
    for s in sets:
      e = per[s]
      cells += [f"{e['prefers_matching']:.1%}",
                f"{e['over_budget']:.1%} ({e['length']:.1f} words)" if "over_budget" in e else "-"]
    lines.append("| " + " | ".join(cells) + " |")
  if result["correlation"]:
    lines += ["", "Correlation across the policies between model-written and hand-written: " +
              ", ".join(f"{m} {'-' if r is None else format(r, '.2f')}"
                        for m, r in result["correlation"].items()) + "."]
  return "\n".join(lines)
