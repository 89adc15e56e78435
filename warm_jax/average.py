r"""Weight-average reward-model checkpoints (WARM) into a new checkpoint or Hugging Face directory,
or merge them.

    python -m warm_jax.average --ckpt runs/rm_a --ckpt runs/rm_b --ckpt runs/rm_c --out runs/warm
    python -m warm_jax.average --ckpt runs/rm_a@300 --ckpt runs/rm_b --weights 2 1 --out runs/warm
    python -m warm_jax.average --ckpt base --ckpt ft1 --ckpt ft2 --weights -1 1 1 \
        --no-normalize --out runs/task_sum
    python -m warm_jax.average --ckpt hf:rm_a_hf --ckpt hf:rm_b_hf --out warm_hf      # HF in, HF out
    python -m warm_jax.average --ckpt runs/rm_a --ckpt runs/rm_b --out warm_hf --out_format hf
    python -m warm_jax.average --method ties --base runs/sft --ckpt ft1 --ckpt ft2 --density 0.2 \
        --out runs/ties
    python -m warm_jax.average --method slerp --ckpt runs/rm_a --ckpt runs/rm_b --weights 0.7 0.3 \
        --out runs/slerp   # t = 0.3; with --base: SLERP of the task vectors

`--method` (default linear): linear, task_arithmetic (--scale), ties (--density, --scale), dare
(--drop, --seed, --scale, --combine sum|ties), slerp (2 models, or M >= 2 task vectors with
--base), model_stock; `--base PATH[@STEP]` for the methods on task vectors
(`warm_jax.averaging.merges` defines each; `merge_stream` how they stream: linear and
task_arithmetic as the average below, the others a group of tensors, or a block of rows of a large
tensor, at a time over all the checkpoints: about one model plus seven groups of memory). The
merges take warm_jax checkpoints.

Each --ckpt is a run directory (holding checkpoints/) or a checkpoint directory, optionally with
@STEP (default: its latest complete step), or a Hugging Face model directory (hf:DIR, or a
directory holding config.json and safetensors weights); the inputs are all checkpoints or all
Hugging Face directories of one architecture, never a mix. Weights are normalised to sum to 1
unless --no-normalize. --out_format: 'warm_jax' (a params-only checkpoint) or 'hf' (a Hugging
Face directory); default: the inputs' format. Hugging Face inputs give a Hugging Face directory
(`averaging.hf.average_hf`: streamed tensor by tensor, peak memory about one tensor whatever the
model's size); checkpoints are streamed one at a time into a float32 running sum (peak memory ~2
models whatever their number), one progress line per checkpoint read, and with --out_format hf the
average is exported (`pretrained.export_run`: the family of the runs' model, the tokenizer of the
Hugging Face model they started from, if any; --drop_reward_bias drops a non-zero reward-head
bias, which the family's `score` layer cannot hold). Every input is validated before anything is
read or written; the output is written atomically; a checkpoint output records the sources,
steps, weights and config in its metadata (it loads like any other:
`warm_jax.load_reward_model(out)`), a Hugging Face output in warm_jax_average.json. The
average is a new model: it carries none of its members' stored reward statistics
(`warm_jax.reward_norm`), which are never averaged; compute its own with
`python -m warm_jax.evaluate --rm OUT --store_norm SPLIT`.
Exit status 2 on invalid input (with the reason): a bad argument, a missing or damaged checkpoint
(named with its step and what is wrong), weights that overflow, an average that is not finite, an
--out that is not new or empty (a run's workdir is never written into); 0 on success.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from warm_jax import averaging, errors
from warm_jax.averaging import hf
from warm_jax.train import metrics

FORMATS = ("warm_jax", "hf")
MERGE_ARGS = ("density", "drop", "seed", "scale", "combine")  # the merges' parameters


def parse_ckpt(spec: str) -> tuple[str, int | None]:
  """'path' or 'path@step'."""
  if "@" in spec:
    path, _, step = spec.rpartition("@")
    if step.isdigit():
      return path, int(step)
  return spec, None


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m warm_jax.average",
                              description="Weight-average checkpoints (WARM).")
  p.add_argument("--ckpt", action="append", required=True, metavar="PATH[@STEP]",
                 help="a checkpoint or a Hugging Face directory (repeat once per model)")
  p.add_argument("--weights", nargs="+", type=float, default=None,
                 help="one weight per --ckpt (default: uniform); normalised to sum to 1")
  p.add_argument("--no-normalize", dest="normalize", action="store_false",
                 help="use the weights as given (any sign): a task-arithmetic sum")
  p.add_argument("--method", default="linear", help="linear (default), task_arithmetic, ties, "
                 "dare, slerp or model_stock (warm_jax.averaging.merges)")
  p.add_argument("--base", default=None, metavar="PATH[@STEP]",
                 help="the base the task vectors are taken from (task_arithmetic, ties, dare, "
                      "model_stock; slerp of task vectors)")
  p.add_argument("--density", type=float, default=None, help="ties: fraction kept, in (0, 1]")
  p.add_argument("--drop", type=float, default=None, help="dare: drop probability, in [0, 1)")
  p.add_argument("--seed", type=int, default=None, help="dare: seed of the masks (default 0)")
  p.add_argument("--scale", type=float, default=None,
                 help="task_arithmetic, ties, dare: the merged task vector's scale (default 1)")
  p.add_argument("--combine", default=None, help="dare: sum (default) or ties")
  p.add_argument("--out", required=True, help="output directory (must not hold a checkpoint; a "
                 "Hugging Face output must not exist)")
  p.add_argument("--out_format", choices=FORMATS, default=None,
                 help="a warm_jax checkpoint or a Hugging Face directory (default: as the inputs)")
  p.add_argument("--drop_reward_bias", action="store_true",
                 help="--out_format hf from checkpoints: drop a non-zero reward-head bias")
  p.add_argument("--quiet", action="store_true", help="no progress lines")
  return p


def _check(paths, steps, weights, normalize, out, out_format) -> tuple[str, str]:
  """(input format, output format), after validating everything (raises on bad input)."""
  fmt = hf.input_format(paths)
  out_format = out_format or fmt
  if fmt == "hf":
    if any(s is not None for s in steps):
      raise ValueError(f"--ckpt ...@{next(s for s in steps if s is not None)}: Hugging Face "
                       "directories have no steps")
    if out_format != "hf":
      raise ValueError("Hugging Face inputs are averaged into a Hugging Face directory "
                       "(--out_format hf)")
    hf.plan_hf(paths, weights, normalize, out)
  else:
    averaging.plan(paths, weights, steps, normalize, checkpoint_out(out, out_format))
  return fmt, out_format


def checkpoint_out(out: str, out_format: str) -> str | None:
  """The checkpoint directory the average or merge writes: `out` for a warm_jax output; None for
  a Hugging Face one (exported afterwards), which must not exist yet (FileExistsError)."""
  if out_format != "hf":
    return out
  if os.path.exists(out):
    raise FileExistsError(f"output {out} exists; refusing to overwrite it")
  return None


def main(argv: list[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  specs = [parse_ckpt(c) for c in args.ckpt]
  paths, steps = [p for p, _ in specs], [s for _, s in specs]
  merge = args.method != "linear" or args.base is not None or any(
      getattr(args, k) is not None for k in MERGE_ARGS)
  try:
    if merge and not args.normalize:
      raise errors.InputError("--no-normalize applies to the linear average only (the merges "
                              "take --scale)")
    if merge:
      if hf.input_format(paths) == "hf":
        raise errors.InputError(f"--method {args.method}: the merges take warm_jax checkpoints "
                                "(import Hugging Face models first; --out_format hf exports)")
      fmt, out_format = "warm_jax", args.out_format or "warm_jax"
      base, base_step = parse_ckpt(args.base) if args.base is not None else (None, None)
      kw = {k: getattr(args, k) for k in MERGE_ARGS if getattr(args, k) is not None}
      _, weights, sources, _ = averaging.plan_merge(
          args.method, paths, args.weights, steps=steps, base=base, base_step=base_step,
          out=checkpoint_out(args.out, out_format), **kw)
    else:
      fmt, out_format = _check(paths, steps, args.weights, args.normalize, args.out,
                               args.out_format)
  except (ValueError, FileNotFoundError, FileExistsError, TypeError) as e:
    print(f"error: {e}", file=sys.stderr)
    return errors.EXIT_BAD_INPUT

  from warm_jax.train.metrics import Progress
  t0 = time.time()
  ckpt_out = None if out_format == "hf" else args.out  # a Hugging Face output is exported last
  if fmt == "hf":
    bar: list = []

    def on_tensor(i, n, name):
      if not bar:
        bar.append(Progress(n, "averaging tensors", enabled=not args.quiet))
      bar[0].update(i, name)

    try:  # what only reading can find: a damaged tensor, an average that is not finite
      meta = hf.average_hf(paths, args.weights, out=args.out, normalize=args.normalize,
                           on_tensor=on_tensor)
    except (ValueError, FileExistsError) as e:
      print(f"error: {e}", file=sys.stderr)
      return errors.EXIT_BAD_INPUT
    if not args.quiet:
      bar[0].close(bar[0].total, "done")
      print(json.dumps({"out": args.out, "weights": meta["weights"], "format": "hf",
                        "bytes_read": meta["bytes_read"], "seconds": round(time.time() - t0, 2)}))
    return 0

  if not merge:
    sources, weights = averaging.plan(paths, args.weights, steps, args.normalize)
  total_bytes = sum(s.nbytes for s, w in zip(sources, weights) if w != 0)
  progress = Progress(len(sources), "merging" if merge else "averaging", enabled=not args.quiet)
  state = {"bytes": 0}

  def on_read(i, src, seconds):
    state["bytes"] += src.nbytes
    rate = state["bytes"] / max(time.time() - t0, 1e-9)
    progress.update(i + 1, f"read {src.given} step {src.step} "
                    f"({metrics.format_bytes(src.nbytes)} in {seconds:.1f}s, "
                    f"{metrics.format_bytes(rate)}/s)", force=True)

  try:  # what only reading can find: damaged arrays, a result that is not finite
    if merge:
      params, meta = averaging.merge_checkpoints(
          args.method, [s.path for s in sources], args.weights, steps=[s.step for s in sources],
          base=base, base_step=base_step, out=ckpt_out, on_read=on_read, **kw)
    else:
      params, meta = averaging.average_checkpoints(
          [s.path for s in sources], args.weights, steps=[s.step for s in sources],
          normalize=args.normalize, out=ckpt_out, on_read=on_read)
    if out_format == "hf":  # nothing written on failure: e.g. a reward-head bias
      from warm_jax import pretrained
      pretrained.export_run(params, meta["config"], args.out,
                            drop_reward_bias=args.drop_reward_bias)
  except (ValueError, FileExistsError) as e:  # InputError is a ValueError
    print(f"error: {e}", file=sys.stderr)
    return errors.EXIT_BAD_INPUT
  if not args.quiet:
    progress.close(len(sources), "done")
    print(json.dumps({"out": args.out, "method": meta.get("method", "linear"),
                      "weights": meta["weights"], "steps": meta["steps"],
                      "format": out_format, "model_fingerprint": meta["model_fingerprint"],
                      "bytes_read": total_bytes, "seconds": round(time.time() - t0, 2)}))
  return 0


if __name__ == "__main__":
  sys.exit(main())
