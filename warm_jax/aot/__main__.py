r"""Compile an experiment for a TPU slice without the hardware: does it fit, how long is a step.

    python -m warm_jax.aot --config=experiments/reward_model.py:paper --topology=v5e-16
    python -m warm_jax.aot --config=experiments/warm.py:paper --topology=v4-32,v5p-8 \
        --model=own,llama-3-8b --config.warm_rl.data.batch_size=64
    python -m warm_jax.aot --experiment=reward_model,dpo --variant=paper --topology=v5e-16 \
        --model=gemma-2b --markdown=runs/fit.md

For every model the experiment trains (each stage of a multi-stage one) and every program of its
trainer (the train step; a policy's sampler too), prints per device: argument, output and
temporary memory, their peak against the chip's HBM, FLOPs per call, and the time at the chip's
peak and at --utilisation. A stage that does not fit is tried again with FSDP over every device,
rematerialisation and smaller per-device batches until one fits, printed as --config overrides;
the exit status is then 1. --model swaps in a published architecture (`pretrained.presets`;
'own': the config's). --markdown writes the tables as a page. Needs libtpu (pip install -e
'.[tpu]'); bad input (an unknown topology, a mesh that does not divide the slice's devices, a
batch its batch axes do not divide) fails before compiling, naming the flag or field, with exit
status 2.
"""

from __future__ import annotations

import os
import sys
import time

from warm_jax import errors


def _env() -> None:
  # The host's jax backend is the CPU (a TPU is only described, never attached).
  os.environ.setdefault("JAX_PLATFORMS", "cpu")


def main() -> None:
  _env()
  from absl import app, flags
  from ml_collections import config_flags
  config_flags.DEFINE_config_file("config", None, "experiment config: path.py:variant",
                                  lock_config=False)
  flags.DEFINE_list("experiment", [], "experiment names (experiments/<name>.py), instead of "
                    "--config; with --variant")
  flags.DEFINE_string("variant", "paper", "the variant of --experiment")
  flags.DEFINE_list("topology", None, "TPU slices: v5e-16, v4-32, v5p-8, v6e-256, v5e:4x4, ...")
  flags.DEFINE_list("model", ["own"], "architectures: 'own' (the config's) or presets "
                    "(gemma-2b, gemma-2-2b, llama-3-8b, qwen2.5-7b)")
  flags.DEFINE_float("utilisation", 0.4, "the fraction of peak FLOP/s the second time assumes")
  flags.DEFINE_bool("suggest", True, "when a stage does not fit, compile fixes until one fits")
  flags.DEFINE_string("markdown", None, "also write the tables to this markdown file")
  flags.mark_flags_as_required(["topology"])

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from warm_jax.aot import report
    try:
      runs = report.experiments_of(flags.FLAGS.config, flags.FLAGS["config"].config_filename
                                   if flags.FLAGS.config is not None else None,
                                   flags.FLAGS.experiment, flags.FLAGS.variant)
      t0 = time.time()
      result = report.run(runs, flags.FLAGS.topology, flags.FLAGS.model,
                          flags.FLAGS.utilisation, flags.FLAGS.suggest)
    except errors.InputError as e:
      print(f"error: {e}", file=sys.stderr, flush=True)
      sys.exit(errors.EXIT_BAD_INPUT)
    if flags.FLAGS.markdown:
      command = "python -m warm_jax.aot " + " ".join(sys.argv[1:])
      with open(flags.FLAGS.markdown, "w") as f:
        f.write(report.page(result, command, flags.FLAGS.utilisation, time.time() - t0))
    sys.exit(0 if result.all_fit else 1)

  app.run(_main)


if __name__ == "__main__":
  main()
