#!/usr/bin/env bash
# Installs warm_jax into .venv and runs the main job on the embedded default task (CPU, minutes).
# Re-running reuses the finished stages. Extra flags go to the experiment, e.g. --config.seed=1.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
WORKDIR=${WORKDIR:-runs/main}
python experiments/reward_model.py --config=experiments/reward_model.py:cpu --workdir="$WORKDIR" "$@"
