"""One point of a WARM pair's interpolation: the reward model (1 - lam) phi_a + lam phi_b of two
reward-model runs of one architecture, scored on preference pairs; the unit a lambda sweep runs.

`main(config, workdir)`: the average is computed in memory (`warm_jax.scoring.load_averaged`) and
scored on the first `pairs` pairs of each of `splits` of the runs' data: pairwise accuracy against
the recorded labels. Writes <workdir>/interpolate.json.
"""

from __future__ import annotations

import json
import os

import ml_collections

from warm_jax import errors


def main(config: ml_collections.ConfigDict, workdir: str) -> dict:
  from warm_jax import checkpoints, evaluation, scoring
  from warm_jax import data as data_lib
  if not config.a or not config.b:
    raise errors.MissingInput("config.a and config.b must both name reward-model runs")
  if not 0.0 <= config.lam <= 1.0:
    raise errors.InputError(f"config.lam={config.lam}: must be in [0, 1] (an interpolation)")
  rm = scoring.load_averaged([config.a, config.b], weights=[1.0 - config.lam, config.lam],
                              batch_size=config.batch_size)
  data_cfg = rm.config.data
  out = {"a": config.a, "b": config.b, "lam": config.lam, "accuracy": {}, "pairs": {}}
  for split in config.splits:
    src = data_lib.load_split(data_cfg, split)
    recs = [src[i] for i in range(min(config.pairs, len(src)) if config.pairs else len(src))]
    p = [r["prompt"] for r in recs]
    rc, rr = rm.score(p, [r["chosen"] for r in recs]), rm.score(p, [r["rejected"] for r in recs])
    out["accuracy"][split] = evaluation.pair_accuracy(rc, rr)
    out["pairs"][split] = len(recs)
  os.makedirs(workdir, exist_ok=True)
  checkpoints.write_atomic(os.path.join(workdir, "interpolate.json"), json.dumps(out, indent=1))
  print(json.dumps(out))
  return out
