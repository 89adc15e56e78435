"""The command-line entry point of every experiment (big_vision style).

    python experiments/X.py --config=experiments/X.py:variant --workdir=DIR [--config.a.b=value ...]
        [--distributed] [--resume_changed_config]

An experiment file is a config (`get_config(variant)`) and one line naming the study it runs:

    if __name__ == "__main__":
      cli.run(label_noise.main)        # main(config, workdir) -> dict

Once the config is read, before anything runs on jax, `run` sets warm_jax's XLA defaults for the
config's compute precision (`warm_jax.xla_flags`) and, with `--distributed` (or
WARM_JAX_DISTRIBUTED=1), joins a multi-host run (`warm_jax.distributed`). A run resumes in its
workdir only under the config it was saved with (but for the fields of
`checkpoints.RESUME_MAY_CHANGE`: steps, logging, evaluation and checkpoint cadence, the mesh, ...);
`--resume_changed_config` (or WARM_JAX_RESUME_CHANGED_CONFIG=1) resumes it anyway, reporting each
changed field. `main` receives the parsed, overridden and locked config.
Bad input (`warm_jax.errors.InputError`: a config value, a missing run, a damaged checkpoint or
data file, a resume under a changed config) ends the command with its message and exit status 2,
without a traceback. Orbax and absl log every checkpoint at INFO; unless
--verbosity is given, only warnings are shown (progress bars and results are printed separately).
"""

from __future__ import annotations

import os
import sys
from typing import Callable

import ml_collections

from warm_jax import errors, xla_flags


def run(main: Callable[[ml_collections.ConfigDict, str], object]) -> None:
  from absl import app, flags, logging
  from ml_collections import config_flags
  config_flags.DEFINE_config_file("config", None, "experiment config: path.py:variant",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "output directory (checkpoints, metrics, configs, plots)")
  flags.DEFINE_bool("distributed", False, "join a multi-host run (jax.distributed.initialize) "
                    "before anything else; also WARM_JAX_DISTRIBUTED=1")
  flags.DEFINE_bool("resume_changed_config", False, "resume a run in --workdir even though its "
                    "config changed in fields that change what it computes (each is reported); "
                    "also WARM_JAX_RESUME_CHANGED_CONFIG=1")
  flags.mark_flags_as_required(["config", "workdir"])

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # The config is read (a config file starts no jax backend); nothing has run on jax yet.
    xla_flags.apply(dtype=xla_flags.config_dtype(flags.FLAGS.config))
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
    if flags.FLAGS.resume_changed_config:
      from warm_jax import checkpoints
      os.environ[checkpoints.RESUME_CHANGED_CONFIG_ENV] = "1"
    if flags.FLAGS.distributed or os.environ.get("WARM_JAX_DISTRIBUTED") == "1":
      from warm_jax import distributed
      info = distributed.initialize()
      print(f"process {info['process_index']} of {info['process_count']}: "
            f"{info['local_devices']} of {info['devices']} devices", flush=True)
    try:
      main(flags.FLAGS.config, flags.FLAGS.workdir)
    except errors.InputError as e:
      print(f"error: {e}", file=sys.stderr, flush=True)
      sys.exit(errors.EXIT_BAD_INPUT)

  app.run(_main)
