"""Weight averaging of reward models (WARM) and policies: in memory, over a lambda/simplex grid,
and streamed from orbax checkpoints.

    avg = averaging.average([p1, p2, p3])                      # uniform mean of pytrees
    mid = averaging.interpolate(a, b, 0.5)
    accs = averaging.sweep([a, b], averaging.lambda_grid(11), eval_fn, batch)
    params, meta = averaging.average_checkpoints([run1, run2, run3], out="runs/warm")

The package: `tree` (pure pytree maths), `sources` (the checkpoints of a streamed average,
validated before anything is read), `stream` (the streaming engine), `array_reader` (reading
OCDBT/zarr3 chunks straight into reused host buffers). The names below are the public API.
"""

from warm_jax.averaging.sources import (TRAINING_ONLY_MODEL_FIELDS, Source, model_fingerprint,
                                        plan)
from warm_jax.averaging.stream import average_checkpoints, average_once, default_target
from warm_jax.averaging.tree import (average, check_weights, combine, interpolate,
                                     interpolation_sweep, lambda_grid, simplex_grid, sweep)
from warm_jax.checkpoints import resolve_checkpoint_dir, tree_mismatch

__all__ = ["average", "combine", "interpolate", "lambda_grid", "simplex_grid", "sweep",
           "interpolation_sweep", "average_checkpoints", "average_once", "plan", "tree_mismatch",
           "check_weights", "model_fingerprint", "resolve_checkpoint_dir", "default_target",
           "Source", "TRAINING_ONLY_MODEL_FIELDS"]
