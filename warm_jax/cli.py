"""Command-line entry point shared by `experiments/*.py` (big_vision style).

    python experiments/X.py --config=experiments/X.py:variant --workdir=DIR [--config.a.b=value ...]
        [--distributed]

`--distributed` (or WARM_JAX_DISTRIBUTED=1) joins a multi-host run first (`warm_jax.distributed`).

`main(config, workdir)` of the experiment receives the parsed, overridden and locked config.
Orbax and absl log every checkpoint at INFO; unless --verbosity is given, only warnings are shown
(progress bars and results are printed separately).
"""

from __future__ import annotations

import os
from typing import Callable

import ml_collections


def run(main: Callable[[ml_collections.ConfigDict, str], None]) -> None:
  from absl import app, flags, logging
  from ml_collections import config_flags
  config_flags.DEFINE_config_file("config", None, "experiment config: path.py:variant",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "output directory (checkpoints, metrics, configs, plots)")
  flags.DEFINE_bool("distributed", False, "join a multi-host run (jax.distributed.initialize) "
                    "before anything else; also WARM_JAX_DISTRIBUTED=1")
  flags.mark_flags_as_required(["config", "workdir"])

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
    if flags.FLAGS.distributed or os.environ.get("WARM_JAX_DISTRIBUTED") == "1":
      from warm_jax import distributed
      info = distributed.initialize()
      print(f"process {info['process_index']} of {info['process_count']}: "
            f"{info['local_devices']} of {info['devices']} devices", flush=True)
    main(flags.FLAGS.config, flags.FLAGS.workdir)

  app.run(_main)
