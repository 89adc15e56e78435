#!/usr/bin/env bash
# Installs warm_jax into .venv and runs the main job on the embedded default task (CPU: 18-34 min
# on 2 cores, docs/warm.md): WARM end to end (pre-train, SFT, M reward models, label noise,
# interpolation, best-of-N, RL).
# Re-running reuses the finished stages. Extra flags go to the job, e.g. --config.seed=1.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
WORKDIR=${WORKDIR:-runs/warm}
python experiments/warm.py --config=experiments/warm.py:cpu --workdir="$WORKDIR" "$@"
