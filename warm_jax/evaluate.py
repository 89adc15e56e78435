r"""Evaluate reward models: RewardBench v1 and v2 as RewardBench scores them, and the embedded
task's splits, with calibration, length bias and (for an ensemble) uncertainty, side by side.

    # The main job's members, their ENS and its WARM checkpoint on the embedded splits:
    python -m warm_jax.evaluate --bench embedded --combine each ensemble \
        --rm runs/warm/warm_label_noise/members/rm0 ... --rm runs/warm/warm_label_noise/members/rm5 \
        --extra WARM=runs/warm/warm_label_noise/warm --train_examples 1024 --max_len 112 \
        --out runs/rm_eval --publish docs/rm_eval.md
    # RewardBench v1 / v2 (downloads allenai/reward-bench(-2) on first use):
    python -m warm_jax.evaluate --bench rewardbench_v1 --rm runs/rm --out runs/rb1
    python -m warm_jax.evaluate --bench rewardbench_v2 --rm path/to/Skywork-Reward-Llama-3.1-8B \
        --chat_template --max_len 4096 --out runs/rb2
    # Store a reward model's statistics on a reference split (warm_jax.reward_norm):
    python -m warm_jax.evaluate --bench embedded --rm runs/rm --store_norm validation

`--rm [LABEL=]PATH` (repeat): a warm_jax run or checkpoint directory (a WARM average written by
`python -m warm_jax.average` among them) or a Hugging Face `*ForSequenceClassification` directory
(one with config.json; imported by `warm_jax.pretrained.load_hf`, its tokenizer by
`load_tokenizer`). `--combine` says what is evaluated of them: `each` (each alone, the default),
`average` (WARM: their weight average, `--weights`, made in memory by `scoring.load_averaged`)
and/or `ensemble` (ENS: the mean of their rewards, what `scoring.load_ensemble` returns; also
reports ENS's variance as an uncertainty signal). `--extra [LABEL=]PATH`: more models evaluated
alone, never combined (e.g. a written WARM checkpoint next to its members).

Each model is loaded, scores every set (`RewardScorer.score`, in fixed-size batches sharded over
the devices of `--mesh_shape`, a progress bar per model) and is released before the next one. The
scores go to `warm_jax.rm_eval`; the command writes `<out>/rm_eval.json`, `<out>/rm_eval.md`
(printed) and, for pairwise sets, `<out>/rm_eval.png` (reliability: confidence vs accuracy);
`--publish PAGE` puts the tables between the page's `<!-- rm-eval:begin -->` and
`<!-- rm-eval:end -->` markers and the plot in the page's `figures/`. Exit status 2 on bad input.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
from typing import Sequence

import numpy as np

from warm_jax import rm_eval
from warm_jax.errors import EXIT_BAD_INPUT, InputError, MissingInput

BENCHES = ("embedded", "rewardbench_v1", "rewardbench_v2")
COMBINE = ("each", "average", "ensemble")
BENCH_DATA = {"rewardbench_v1": ("reward_bench", "filtered"),
              "rewardbench_v2": ("reward_bench_2", "test")}
EMBEDDED_SPLITS = ("validation", "test", "ood", "train")
MARKER = "rm-eval"
BEGIN, END = f"<!-- {MARKER}:begin -->", f"<!-- {MARKER}:end -->"
FIGURE = "rm_eval_reliability.png"


# ---------------------------------------------------------------- what to evaluate
def parse_spec(spec: str) -> tuple[str, str]:
  """'[LABEL=]PATH' -> (label, path); the label defaults to the run's directory name."""
  label, sep, path = spec.partition("=")
  if not sep or os.path.sep in label:
    path = spec
    norm = os.path.normpath(path)
    label = os.path.basename(os.path.dirname(norm)) if os.path.basename(norm) == "checkpoints" \
        else os.path.basename(norm)
  if not label:
    raise InputError(f"--rm {spec!r}: an empty label")
  return label, path


def is_hf_dir(path: str) -> bool:
  """A Hugging Face model directory (config.json, no warm_jax checkpoints)."""
  return os.path.isfile(os.path.join(path, "config.json")) and not os.path.isdir(
      os.path.join(path, "checkpoints"))


def tokenizer_identity(tok) -> str:
  """What makes two tokenizers the same: the SHA-256 of their model file(s) and special ids."""
  h = hashlib.sha256()
  path = getattr(tok, "path", None) or ""
  files = [path] if os.path.isfile(path) else [
      os.path.join(path, f) for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
      if path and os.path.isfile(os.path.join(path, f))]
  for f in files:
    with open(f, "rb") as fh:
      h.update(hashlib.sha256(fh.read()).digest())
  ids = tuple(getattr(tok, k, None) for k in ("vocab_size", "bos_id", "eos_id", "pad_id"))
  h.update(repr((type(tok).__name__, ids)).encode())
  return h.hexdigest()


def load_tokenizer_of(path: str):
  """The tokenizer a model at `path` reads text with (no weights are loaded)."""
  if is_hf_dir(path):
    from warm_jax.pretrained import load_tokenizer
    return load_tokenizer(path)
  from warm_jax import data as data_lib
  return data_lib.load_tokenizer(run_config(path).data)


def check_same_tokenizer(tokenizers: dict) -> None:
  """ENS averages rewards of one text: every member must read it with the same tokenizer.
  `tokenizers`: {label: tokenizer}, in --rm order."""
  names = list(tokenizers)
  first = tokenizer_identity(tokenizers[names[0]])
  for name in names[1:]:
    if tokenizer_identity(tokenizers[name]) != first:
      where = lambda n: getattr(tokenizers[n], "path", None) or "?"  # noqa: E731
      raise InputError(f"--rm {name}: its tokenizer ({where(name)}) is not the one of --rm "
                       f"{names[0]} ({where(names[0])}): the members of an ensemble must share one "
                       "tokenizer (the runs' config.data.tokenizer / the HF directories' "
                       "tokenizer.json)")


def run_config(path: str):
  """The config a warm_jax run or checkpoint records (its meta), read without any array."""
  import ml_collections
  from warm_jax import checkpoints
  if not os.path.exists(path):
    raise MissingInput(f"--rm {path}: no such directory")
  meta = checkpoints.read_meta(checkpoints.resolve_checkpoint_dir(path))
  if not meta.get("config"):
    raise InputError(f"{path}: its checkpoint records no config (field 'config' of its meta)")
  return ml_collections.ConfigDict(meta["config"])


def load_model(path: str, args):
  """A RewardScorer of a warm_jax run / checkpoint or of a Hugging Face directory."""
  from warm_jax import scoring
  kw = dict(batch_size=args.batch_size, devices=None, mesh_shape=args.mesh_shape)
  try:
    if is_hf_dir(path):
      return scoring.load_hf_reward_model(path, max_len=args.max_len or 2048, dtype=args.hf_dtype,
                                          **kw)
    rm = scoring.load_reward_model(path, **kw)
  except InputError:
    raise
  except ValueError as e:  # a checkpoint, mesh or batch size that does not fit
    raise InputError(f"--rm {path}: {e}") from None
  if args.max_len:
    rm.max_len = args.max_len
  return rm


# ---------------------------------------------------------------- data
def _records(src, limit: int = 0) -> list[dict]:
  n = len(src) if not limit else min(limit, len(src))
  return [src[i] for i in range(n)]


def load_sets(bench: str, args, data_config=None, splits: Sequence[str] | None = None) -> dict:
  """{set name: {'kind': 'pairs' | 'ranking', 'records': [...], 'source': where}}. The embedded
  task's 'train' split becomes 'train_clean' and 'train_corrupted' (its records say which labels
  were flipped) and is cut to --train_examples."""
  from warm_jax.data.builders import registry
  if bench in BENCH_DATA:
    name, split = BENCH_DATA[bench]
    src = registry.load_split(name, split, args.data_dir or None)
    kind = "ranking" if bench == "rewardbench_v2" else "pairs"
    return {split: {"kind": kind, "records": _records(src, args.limit), "source": f"{name}/{split}"}}
  if data_config is None:
    raise InputError("--bench embedded reads the task from a warm_jax run's config: give at least "
                     "one warm_jax --rm or --extra")
  from warm_jax import data as data_lib
  out = {}
  for split in splits or args.splits:
    if split not in EMBEDDED_SPLITS:
      raise InputError(f"--splits {split!r}: the embedded task's preference splits are "
                       f"{EMBEDDED_SPLITS}")
    src = data_lib.load_split(data_config, split)
    if split == "train":
      recs = _records(src, args.train_examples or args.limit)
      if recs and "flipped" in recs[0]:
        for sub, flipped in (("train_clean", False), ("train_corrupted", True)):
          out[sub] = {"kind": "pairs", "source": f"{data_config.name}/train",
                      "records": [r for r in recs if bool(r["flipped"]) == flipped]}
        continue
    else:
      recs = _records(src, args.limit)
    out[split] = {"kind": "pairs", "records": recs, "source": f"{data_config.name}/{split}"}
  return out


def chat_texts(tokenizer, prompt: str, response: str) -> tuple[str, str]:
  """(prompt, response) rendered by the tokenizer's chat template as a user turn and the
  assistant's answer (RewardBench's formatting), split where the answer starts; the template's
  leading bos text is left to the scorer, which places bos itself."""
  head = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                       add_generation_prompt=True)
  full = tokenizer.apply_chat_template([{"role": "user", "content": prompt},
                                        {"role": "assistant", "content": response}],
                                       add_generation_prompt=False)
  if not full.startswith(head):
    raise InputError(f"{getattr(tokenizer, 'path', 'the tokenizer')}: its chat template does not "
                     "render the conversation as the prompt followed by the answer; score without "
                     "--chat_template")
  bos = getattr(tokenizer, "special_tokens", {}).get("bos_token")
  return (head[len(bos):] if bos and head.startswith(bos) else head), full[len(head):]


def texts_of(s: dict) -> tuple[list[str], list[str], list[int]]:
  """(prompts, responses, answers per record) of a set, the chosen answers first: pairs give
  [chosen, rejected] per record, ranking records all their answers."""
  prompts, responses, counts = [], [], []
  for r in s["records"]:
    answers = (list(r["chosen"]) + list(r["rejected"]) if s["kind"] == "ranking"
               else [r["chosen"], r["rejected"]])
    prompts += [r["prompt"]] * len(answers)
    responses += answers
    counts.append(len(answers))
  return prompts, responses, counts


# ---------------------------------------------------------------- scoring
def score_sets(scorer, name: str, sets: dict, chat_template: bool = False) -> dict:
  """{set: rewards of every answer, in `texts_of` order} from one model, with a progress bar."""
  from warm_jax.train.metrics import Progress
  texts = {k: texts_of(s)[:2] for k, s in sets.items()}
  total = sum(len(p) for p, _ in texts.values())
  progress = Progress(total, f"scoring {name}")
  chunk, done, out = scorer.batch_size * 8, 0, {}
  for k, (prompts, responses) in texts.items():
    if chat_template:
      prompts, responses = map(list, zip(*[chat_texts(scorer.tokenizer, p, r)
                                           for p, r in zip(prompts, responses)])) if prompts else ([], [])
    parts = []
    for i in range(0, len(prompts), chunk):
      parts.append(np.asarray(scorer.score(prompts[i:i + chunk], responses[i:i + chunk]), np.float64))
      done += len(parts[-1])
      progress.update(done, k)
    r = np.concatenate(parts) if parts else np.zeros((0,), np.float64)
    bad = np.flatnonzero(~np.isfinite(r))
    if bad.size:
      raise InputError(f"{name}: non-finite reward for answer {bad[0]} of set {k!r}")
    out[k] = r
  progress.close(done)
  return out


def split_rewards(s: dict, rewards: np.ndarray):
  """Pairs: (r_chosen, r_rejected); ranking: one array of scores per record (chosen first)."""
  if s["kind"] == "pairs":
    return rewards[0::2], rewards[1::2]
  counts = texts_of(s)[2]
  return np.split(rewards, np.cumsum(counts)[:-1]) if counts else []


# ---------------------------------------------------------------- metrics
def metrics_of(sets: dict, rewards: dict, bench: str, bins: int) -> dict:
  """One model's metrics on every set: pairwise sets get `rm_eval.pair_metrics`; RewardBench
  sets also their RewardBench scores under 'rewardbench'."""
  out = {}
  for k, s in sets.items():
    recs = s["records"]
    if s["kind"] == "pairs":
      rc, rr = split_rewards(s, rewards[k])
      lc = rm_eval.word_lengths([r["chosen"] for r in recs])
      lr = rm_eval.word_lengths([r["rejected"] for r in recs])
      out[k] = rm_eval.pair_metrics(rc, rr, lc, lr, bins) if len(recs) else {"n": 0}
      if bench == "rewardbench_v1":
        out[k]["rewardbench"] = rm_eval.v1_scores([r["subset"] for r in recs], rc, rr,
                                                  ids=[r["id"] for r in recs], source=s["source"])
    else:
      scores = split_rewards(s, rewards[k])
      out[k] = {"n": len(recs), "rewardbench": rm_eval.v2_scores(
          [r["subset"] for r in recs], [r["id"] for r in recs], scores,
          [len(r["chosen"]) for r in recs], source=s["source"])}
  return out


def check_inputs(args, members, extras) -> None:
  """What can be checked before any model is loaded: labels, combinations, paths, an ensemble's
  tokenizers, the page to publish into. InputError naming the argument."""
  labels = [n for n, _ in members + extras] + (["WARM"] if "average" in args.combine else []) + (
      ["ENS"] if "ensemble" in args.combine else [])
  dup = sorted({n for n in labels if labels.count(n) > 1})
  if dup:
    raise InputError(f"two models are labelled {dup[0]!r}: name them with --rm LABEL=PATH")
  combined = [c for c in args.combine if c != "each"]
  if combined and len(members) < 2:
    raise InputError(f"--combine {' '.join(combined)} needs two or more --rm, got {len(members)}")
  if args.weights is not None and (len(args.weights) != len(members) or "average" not in args.combine):
    raise InputError(f"--weights: one weight per --rm ({len(members)}) with --combine average")
  for _, path in members + extras:
    if not os.path.isdir(path):
      raise MissingInput(f"--rm {path}: no such directory")
  if "average" in args.combine and any(is_hf_dir(p) for _, p in members):
    raise InputError("--combine average: a weight average needs warm_jax checkpoints of one "
                     "architecture; import Hugging Face models first or evaluate them alone")
  if args.store_norm and args.bench in BENCH_DATA and args.store_norm != BENCH_DATA[args.bench][1]:
    raise InputError(f"--store_norm {args.store_norm!r}: {args.bench} has the one split "
                     f"{BENCH_DATA[args.bench][1]!r}")
  if "ensemble" in args.combine:
    check_same_tokenizer({n: load_tokenizer_of(p) for n, p in members})
  if args.publish:
    if not args.out:
      raise InputError("--publish needs --out (where the plot is written)")
    with open(args.publish) as f:
      text = f.read()
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
      raise InputError(f"--publish {args.publish}: the page must hold {BEGIN} then {END}, once each")


def evaluate(args) -> dict:
  """Loads, scores and measures every model of `args`; returns the result (JSON-able)."""
  import jax
  members = [parse_spec(s) for s in args.rm]
  extras = [parse_spec(s) for s in args.extra or []]
  check_inputs(args, members, extras)
  combined = [c for c in args.combine if c != "each"]
  data_config = next((run_config(p).data for _, p in members + extras if not is_hf_dir(p)), None)
  sets = load_sets(args.bench, args, data_config)
  if args.store_norm:
    norm_sets = ({k: v for k, v in sets.items()} if args.bench in BENCH_DATA else
                 load_sets(args.bench, args, data_config, [args.store_norm]))
  rewards, roles, stored = {}, {}, {}
  need_members = "each" in args.combine or "ensemble" in args.combine or not combined
  for label, path in (members if need_members else []) + extras:
    rm = load_model(path, args)
    rewards[label] = score_sets(rm, label, sets, args.chat_template)
    roles[label] = {"role": "member" if (label, path) in members and combined else "single",
                    "path": os.path.abspath(path)}
    if args.store_norm:
      stored[label] = _store_norm(rm, norm_sets, args)
    del rm
    jax.clear_caches()
  if "ensemble" in args.combine:
    names = [n for n, _ in members]
    rewards["ENS"] = {k: rm_eval.ensemble_rewards([rewards[n][k] for n in names]) for k in sets}
    roles["ENS"] = {"role": "ENS", "members": names}
  if "average" in args.combine:
    from warm_jax import scoring
    warm = scoring.load_averaged([p for _, p in members], args.weights, batch_size=args.batch_size,
                                 mesh_shape=args.mesh_shape)
    if args.max_len:
      warm.max_len = args.max_len
    rewards["WARM"] = score_sets(warm, "WARM", sets, args.chat_template)
    roles["WARM"] = {"role": "WARM", "members": [n for n, _ in members],
                     "weights": list(args.weights) if args.weights else None}
  order = list(dict.fromkeys(([n for n, _ in members] if "each" in args.combine else []) + [
      n for n in ("ENS", "WARM") if n in rewards] + [n for n, _ in extras]))  # each row once
  shown = [n for n in order if n in rewards]
  result = {"bench": args.bench, "models": [{"name": n, **roles[n]} for n in shown],
            "sets": {k: {"records": len(s["records"]), "kind": s["kind"], "source": s["source"]}
                     for k, s in sets.items()},
            "metrics": {n: metrics_of(sets, rewards[n], args.bench, args.bins) for n in shown},
            "settings": {"max_len": args.max_len, "batch_size": args.batch_size,
                         "limit": args.limit, "train_examples": args.train_examples,
                         "chat_template": args.chat_template, "bins": args.bins,
                         "devices": len(jax.devices())}}
  if "ensemble" in args.combine:
    names = [n for n, _ in members]
    result["uncertainty"] = {
        k: rm_eval.uncertainty(*[np.stack([split_rewards(s, rewards[n][k])[j] for n in names])
                                 for j in (0, 1)])
        for k, s in sets.items() if s["kind"] == "pairs" and s["records"]}
  if stored:
    result["stored_norm"] = stored
  return result


def _store_norm(rm, norm_sets: dict, args) -> dict:
  from warm_jax import reward_norm
  records = [r for s in norm_sets.values() for r in s["records"]]
  sources = sorted({s["source"] for s in norm_sets.values()})
  norm = reward_norm.compute(rm, *reward_norm.reference_texts(records), {
      "data": ", ".join(sources), "split": args.store_norm, "records": len(records),
      "max_len": rm.max_len})
  path = reward_norm.store(rm, norm)
  print(f"stored reward statistics (mean {norm.mean:.4f}, std {norm.std:.4f}) in {path}",
        flush=True)
  return {"path": path, "mean": norm.mean, "std": norm.std}


# ---------------------------------------------------------------- report
def _f(x, fmt="{:.3f}") -> str:
  return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else fmt.format(x)


def tables(result: dict, figure: str | None = "rm_eval.png") -> str:
  """The result as Markdown: accuracy, calibration, length bias (pairwise sets), RewardBench
  scores, ENS uncertainty, the reliability plot."""
  models = [m["name"] for m in result["models"]]
  met = result["metrics"]
  sets = [k for k, s in result["sets"].items() if s["records"]]
  pair_sets = [k for k in sets if result["sets"][k]["kind"] == "pairs"]
  title = {"embedded": "the embedded task", "rewardbench_v1": "RewardBench v1",
           "rewardbench_v2": "RewardBench 2"}[result["bench"]]
  lines = [f"## Reward models on {title}", "",
           "Models: " + "; ".join(_describe_model(m) for m in result["models"]) + ".", "",
           "Records: " + ", ".join(f"{k} {result['sets'][k]['records']}" for k in sets) + "."]
  members = [m["name"] for m in result["models"] if m["role"] == "member"]

  def table(header, cell, extra_rows=()):
    out = ["", "| reward model | " + " | ".join(s.replace("_", " ") for s in pair_sets) + " |",
           "|---|" + "---|" * len(pair_sets)]
    for n in models:
      out.append(f"| {n} | " + " | ".join(cell(met[n][s]) for s in pair_sets) + " |")
    out += list(extra_rows)
    return [header] + out

  if pair_sets:
    mean_row = lambda key: (["| mean of the members | " + " | ".join(  # noqa: E731
        _f(np.mean([met[n][s][key] for n in members])) for s in pair_sets) + " |"]
        if len(members) > 1 else [])
    lines += ["", "### Pairwise accuracy", ""]
    lines += table("The chosen response's reward strictly higher (ties wrong).",
                   lambda m: _f(m["accuracy"]), mean_row("accuracy"))
    lines += ["", "### Calibration", ""]
    lines += table(f"Expected calibration error of sigmoid(r_c - r_r) against the labels "
                   f"({result['settings']['bins']} equal-width confidence bins over [0.5, 1]; "
                   "lower is better).", lambda m: _f(m["ece"]), mean_row("ece"))
    lines += ["", "### Length bias", ""]
    lines += table("Accuracy where the chosen response is longer / shorter than the rejected one "
                   "(words), and the gap: a model that leans on length does better when the "
                   "preferred answer is the longer one.",
                   lambda m: f"{_f(m['length']['longer']['accuracy'])} / "
                             f"{_f(m['length']['shorter']['accuracy'])} "
                             f"({_f(m['length']['gap'], '{:+.3f}')})")
    first = met[models[0]]
    lines += ["", "Pairs per set (chosen longer / shorter / as long): " + ", ".join(
        f"{s} {first[s]['length']['longer']['n']} / {first[s]['length']['shorter']['n']} / "
        f"{first[s]['length']['equal']['n']}" for s in pair_sets) + "."]
    lines += [""] + table(
        "How often the model rewards the longer of two responses of unequal length higher (the "
        "labels prefer the longer one in: " + ", ".join(
            f"{s} {_f(first[s]['length']['labels_prefer_longer'])}" for s in pair_sets) + ").",
        lambda m: _f(m["length"]["model_prefers_longer"]))
  if "uncertainty" in result:
    u = result["uncertainty"]
    lines += ["", "### ENS variance as an uncertainty signal", "",
              "The variance across members of each pair's margin r_c - r_r, against ENS's "
              "errors: AUROC of the variance for telling errors from correct pairs (0.5: no "
              "signal), next to AUROC of -|ENS margin| (the confidence ENS has anyway), and ENS's "
              "error rate in the fifth of pairs with the lowest and with the highest variance.", "",
              "| set | ENS error rate | AUROC variance | AUROC -abs(margin) | error rate, lowest "
              "variance | error rate, highest variance |", "|---|---|---|---|---|---|"]
    for s, v in u.items():
      lines.append(f"| {s.replace('_', ' ')} | {_f(v['error_rate'])} | {_f(v['auroc_variance'])} | "
                   f"{_f(v['auroc_margin'])} | {_f(v['bins'][0]['error_rate'])} | "
                   f"{_f(v['bins'][-1]['error_rate'])} |")
  if result["bench"] == "rewardbench_v1":
    lines += _v1_table(result, models, sets)
  if result["bench"] == "rewardbench_v2":
    lines += _v2_table(result, models, sets)
  if figure and pair_sets:
    lines += ["", f"![reliability: confidence vs accuracy]({figure})"]
  return "\n".join(lines)


def _describe_model(m: dict) -> str:
  if m["role"] == "ENS":
    return f"ENS = the mean reward of {', '.join(m['members'])}"
  if m["role"] == "WARM":
    return f"WARM = the weight average of {', '.join(m['members'])} (made in memory)"
  return f"{m['name']} = {m['path']}"


def _v1_table(result, models, sets) -> list[str]:
  lines = []
  for s in sets:
    rb = {n: result["metrics"][n][s]["rewardbench"] for n in models}
    subsets = [x for x in rm_eval.V1_SUBSETS if x in rb[models[0]]["subsets"]]
    lines += ["", f"### RewardBench v1 ({s})", "",
              "Per-subset accuracy; sections weighted by RewardBench's example counts (math-prm "
              "as 984); the score is the mean of the four sections.", "",
              "| subset | n | " + " | ".join(models) + " |", "|---|---|" + "---|" * len(models)]
    for x in subsets:
      lines.append(f"| {x} | {rb[models[0]]['subsets'][x]['n']} | " + " | ".join(
          _f(rb[n]["subsets"][x]["accuracy"]) for n in models) + " |")
    for section in rm_eval.V1_SECTIONS:
      lines.append(f"| **{section}** | | " + " | ".join(
          _f(rb[n]["sections"].get(section)) for n in models) + " |")
    lines.append("| **Score** | | " + " | ".join(f"**{_f(rb[n]['score'])}**" for n in models) + " |")
    if rb[models[0]]["missing"]:
      lines += ["", "Partial: no subset of " + ", ".join(rb[models[0]]["missing"]) + " was scored; "
                "the score is the mean of the sections present."]
  return lines


def _v2_table(result, models, sets) -> list[str]:
  lines = []
  for s in sets:
    rb = {n: result["metrics"][n][s]["rewardbench"] for n in models}
    lines += ["", f"### RewardBench 2 ({s})", "",
              "Best-of-n accuracy per subset (ties share the credit); Ties scored by its own rule; "
              "the score is the mean of the six subsets.", "",
              "| subset | n | " + " | ".join(models) + " |", "|---|---|" + "---|" * len(models)]
    for x in rm_eval.V2_SUBSETS:
      if x in rb[models[0]]["subsets"]:
        lines.append(f"| {x} | {rb[models[0]]['subsets'][x]['n']} | " + " | ".join(
            _f(rb[n]["subsets"][x]["score"]) for n in models) + " |")
    if rb[models[0]]["ties"]:
      for part in rm_eval.TIES_WEIGHTS:
        lines.append(f"| Ties: {part.replace('_', ' ')} | | " + " | ".join(
            _f(rb[n]["ties"][part]) for n in models) + " |")
    lines.append("| **Score** | | " + " | ".join(f"**{_f(rb[n]['score'])}**" for n in models) + " |")
    if rb[models[0]]["missing"]:
      lines += ["", "Partial: " + ", ".join(rb[models[0]]["missing"]) + " not scored; the score is "
                "the mean of the subsets present."]
  return lines


def plot(result: dict, path: str) -> None:
  """Reliability diagrams: per pairwise set, each model's accuracy against its mean confidence in
  each non-empty bin (members grey, ENS blue, WARM red), the diagonal dashed."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from warm_jax.train import metrics
  sets = [k for k, s in result["sets"].items() if s["kind"] == "pairs" and s["records"]]
  fig, axes = plt.subplots(1, len(sets), figsize=(3.2 * len(sets), 3.4), squeeze=False)
  others = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"][2:])
  colors = {}
  for m in result["models"]:
    colors[m["name"]] = {"member": "#b0b0b0", "ENS": "tab:blue", "WARM": "tab:red"}.get(
        m["role"], "tab:red" if m["name"].upper() == "WARM" else None) or next(others)
  for ax, s in zip(axes[0], sets):
    ax.plot([0.5, 1.0], [0.5, 1.0], "--", color="black", lw=0.8)
    labelled = set()
    for m in result["models"]:
      bins = [b for b in result["metrics"][m["name"]][s]["reliability"] if b["n"]]
      member = m["role"] == "member"
      label = "members" if member else m["name"]
      ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "-o",
              color=colors[m["name"]], ms=2.5 if member else 3.5, lw=0.8 if member else 1.6,
              label=None if label in labelled else label, zorder=1 if member else 2)
      labelled.add(label)
    ax.set(xlim=(0.5, 1.0), ylim=(0.0, 1.0), xlabel="confidence max(p, 1 - p)",
           title=s.replace("_", " "))
  axes[0][0].set_ylabel("accuracy")
  axes[0][-1].legend(fontsize=7, loc="lower right")
  fig.suptitle("Reliability of sigmoid(r_c - r_r)", fontsize=10)
  fig.tight_layout()
  metrics.save_figure(fig, path, dpi=110)


def publish(page: str, result: dict, plot_path: str | None) -> None:
  """The tables between the page's markers, the plot copied to the page's figures/ directory."""
  from warm_jax.studies.warm.publish import splice
  fig_rel = os.path.join("figures", FIGURE)
  with open(page) as f:
    text = f.read()
  try:
    text = splice(text, tables(result, fig_rel if plot_path else None), "figures", MARKER)
  except ValueError as e:
    raise InputError(f"--publish {page}: {e}") from None
  if plot_path:
    dest = os.path.join(os.path.dirname(os.path.abspath(page)), fig_rel)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    shutil.copyfile(plot_path, dest)
  with open(page, "w") as f:
    f.write(text)
  print(f"{page} updated", flush=True)


# ---------------------------------------------------------------- command line
def _mesh_shape(text: str) -> tuple[int, ...]:
  try:
    return tuple(int(x) for x in text.strip("()").split(",") if x.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r}: a mesh shape such as -1,1,1") from None


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m warm_jax.evaluate",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--rm", action="append", required=True, metavar="[LABEL=]PATH",
                 help="a reward model (repeat): a warm_jax run / checkpoint or an HF directory")
  p.add_argument("--extra", action="append", metavar="[LABEL=]PATH",
                 help="a reward model evaluated alone, never combined (repeat)")
  p.add_argument("--combine", nargs="+", choices=COMBINE, default=["each"],
                 help="what to evaluate of the --rm models: each alone, their WARM average, ENS")
  p.add_argument("--weights", nargs="+", type=float, help="WARM's weights, one per --rm")
  p.add_argument("--bench", choices=BENCHES, required=True)
  p.add_argument("--splits", nargs="+", default=["validation", "test", "ood"],
                 help="the embedded task's splits ('train': its clean and corrupted pairs)")
  p.add_argument("--train_examples", type=int, default=0,
                 help="the first N training pairs (a label-noise run's config.train_examples)")
  p.add_argument("--limit", type=int, default=0, help="at most N records per set (0: all)")
  p.add_argument("--data_dir", default="", help="TFDS data directory of the RewardBench builds")
  p.add_argument("--batch_size", type=int, default=64)
  p.add_argument("--max_len", type=int, default=0,
                 help="tokens per (prompt, response) (default: the run's config.data.max_len; "
                 "2048 for HF models)")
  p.add_argument("--mesh_shape", type=_mesh_shape, default=None,
                 help="shard the models over the devices, e.g. -1,1,1 (default: one device)")
  p.add_argument("--hf_dtype", default="float32", choices=("float32", "bfloat16", "float16"))
  p.add_argument("--chat_template", action="store_true",
                 help="format each (prompt, answer) with the tokenizer's chat template")
  p.add_argument("--bins", type=int, default=10, help="calibration bins")
  p.add_argument("--store_norm", default="", metavar="SPLIT",
                 help="store each single model's reward statistics on SPLIT (warm_jax.reward_norm)")
  p.add_argument("--out", default="", help="directory of rm_eval.json / .md / .png")
  p.add_argument("--publish", default="", metavar="PAGE",
                 help="put the tables and the plot into PAGE between its rm-eval markers")
  return p


def main(argv: list[str] | None = None) -> int:
  args = parser().parse_args(argv)
  for name in ("batch_size", "bins"):
    if getattr(args, name) < 1:
      print(f"error: --{name}={getattr(args, name)}: must be positive", file=sys.stderr)
      return EXIT_BAD_INPUT
  for name in ("limit", "train_examples", "max_len"):
    if getattr(args, name) < 0:
      print(f"error: --{name}={getattr(args, name)}: must be >= 0", file=sys.stderr)
      return EXIT_BAD_INPUT
  from warm_jax import xla_flags
  xla_flags.apply()
  try:
    if args.mesh_shape is not None:
      from warm_jax import sharding as shd
      try:
        shd.make_mesh(("data", "fsdp", "tensor"), args.mesh_shape, field="mesh")
      except ValueError as e:
        raise InputError(f"--mesh_shape: {e}") from None
    result = evaluate(args)
    markdown = tables(result, "rm_eval.png")
    if args.out:
      from warm_jax import stages
      has_pairs = any(s["kind"] == "pairs" and s["records"] for s in result["sets"].values())
      stages.write_report(args.out, "rm_eval", result, markdown,
                          (lambda path: plot(result, path)) if has_pairs else None)
      if args.publish:
        publish(args.publish, result,
                os.path.join(args.out, "rm_eval.png") if has_pairs else None)
    else:
      print(markdown)
  except (InputError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return EXIT_BAD_INPUT
  return 0


if __name__ == "__main__":
  sys.exit(main())
