r"""Weight-average reward-model checkpoints (WARM) into a new checkpoint.

    python -m warm_jax.average --ckpt runs/rm_a --ckpt runs/rm_b --ckpt runs/rm_c --out runs/warm
    python -m warm_jax.average --ckpt runs/rm_a@300 --ckpt runs/rm_b --weights 2 1 --out runs/warm
    python -m warm_jax.average --ckpt base --ckpt ft1 --ckpt ft2 --weights -1 1 1 \
        --no-normalize --out runs/task_sum

Each --ckpt is a run directory (holding checkpoints/) or a checkpoint directory, optionally with
@STEP (default: its latest complete step). Weights are normalised to sum to 1 unless
--no-normalize. Checkpoints are streamed one at a time into a float32 running sum (peak memory
~2 models whatever their number), one progress line per checkpoint read. Every input is validated
before anything is read or written; the output is written atomically and is a regular
params-only checkpoint (its metadata records the sources, steps, weights and config), so it loads
like any other (`warm_jax.load_reward_model(out)`, `checkpoints.restore_params(out)`). The
average is a new model: it carries none of its members' stored reward statistics
(`warm_jax.reward_norm`), which are never averaged; compute its own with
`python -m warm_jax.evaluate --rm OUT --store_norm SPLIT`.
Exit status 2 on invalid input (with the reason), 0 on success.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from warm_jax import averaging
from warm_jax.train import metrics


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
                 help="a checkpoint (repeat once per model)")
  p.add_argument("--weights", nargs="+", type=float, default=None,
                 help="one weight per --ckpt (default: uniform); normalised to sum to 1")
  p.add_argument("--no-normalize", dest="normalize", action="store_false",
                 help="use the weights as given (any sign): a task-arithmetic sum")
  p.add_argument("--out", required=True, help="output checkpoint directory (must not hold one)")
  p.add_argument("--quiet", action="store_true", help="no progress lines")
  return p


def main(argv: list[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  specs = [parse_ckpt(c) for c in args.ckpt]
  paths, steps = [p for p, _ in specs], [s for _, s in specs]
  try:
    sources, weights = averaging.plan(paths, args.weights, steps, args.normalize, args.out)
  except (ValueError, FileNotFoundError, FileExistsError, TypeError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2

  from warm_jax.train.metrics import Progress
  total_bytes = sum(s.nbytes for s, w in zip(sources, weights) if w != 0)
  progress = Progress(len(sources), "averaging", enabled=not args.quiet)
  t0 = time.time()
  state = {"bytes": 0}

  def on_read(i, src, seconds):
    state["bytes"] += src.nbytes
    rate = state["bytes"] / max(time.time() - t0, 1e-9)
    progress.update(i + 1, f"read {src.given} step {src.step} "
                    f"({metrics.format_bytes(src.nbytes)} in {seconds:.1f}s, "
                    f"{metrics.format_bytes(rate)}/s)", force=True)

  _, meta = averaging.average_checkpoints(
      [s.path for s in sources], args.weights, steps=[s.step for s in sources],
      normalize=args.normalize, out=args.out, on_read=on_read)
  if not args.quiet:
    progress.close(len(sources), "done")
    print(json.dumps({"out": args.out, "weights": meta["weights"], "steps": meta["steps"],
                      "model_fingerprint": meta["model_fingerprint"],
                      "bytes_read": total_bytes, "seconds": round(time.time() - t0, 2)}))
  return 0


if __name__ == "__main__":
  sys.exit(main())
