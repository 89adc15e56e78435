"""Weight averaging of reward models (WARM) and policies: in memory, over a lambda/simplex grid,
and streamed from orbax checkpoints.

    avg = averaging.average([p1, p2, p3])                      # uniform mean of pytrees
    mid = averaging.interpolate(a, b, 0.5)
    accs = averaging.sweep([a, b], averaging.lambda_grid(11), eval_fn, batch)
    params, meta = averaging.average_checkpoints([run1, run2, run3], out="runs/warm")
    merged = averaging.ties(base, [ft1, ft2], density=0.2)      # and the other merge operators
    params, meta = averaging.merge_checkpoints("ties", [run1, run2], base="runs/sft", density=0.2)

The package: `tree` (pure pytree maths), `merges` (task arithmetic, TIES, DARE, SLERP, model
stock, LITI, EMA as pytree functions), `sources` (the checkpoints of a streamed average,
validated before anything is read), `stream` (the streaming engine), `merge_stream` (the merges
streamed), `array_reader` (reading OCDBT/zarr3 chunks straight into reused host buffers). The
names below are the public API.
"""

from warm_jax.averaging.sources import (TRAINING_ONLY_MODEL_FIELDS, Source, model_fingerprint,
                                        plan)
from warm_jax.averaging.merge_stream import merge_checkpoints, plan_merge
from warm_jax.averaging.merges import (METHODS, dare, ema, liti, merge, model_stock, slerp,
                                       slerp_task_vectors, task_arithmetic, ties)
from warm_jax.averaging.stream import average_checkpoints, average_once, default_target
from warm_jax.averaging.tree import (average, check_weights, combine, interpolate,
                                     interpolation_sweep, lambda_grid, simplex_grid, sweep)
from warm_jax.checkpoints import resolve_checkpoint_dir, tree_mismatch

__all__ = ["average", "combine", "interpolate", "lambda_grid", "simplex_grid", "sweep",
           "interpolation_sweep", "average_checkpoints", "average_once", "plan", "tree_mismatch",
           "check_weights", "model_fingerprint", "resolve_checkpoint_dir", "default_target",
           "Source", "TRAINING_ONLY_MODEL_FIELDS", "METHODS", "merge", "task_arithmetic", "ties",
           "dare", "slerp", "slerp_task_vectors", "model_stock", "liti", "ema",
           "merge_checkpoints", "plan_merge"]
