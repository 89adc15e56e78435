#!/usr/bin/env bash
# Installs warm_jax into .venv and runs the whole test suite (8 fake CPU devices; slow tests too).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
python -m pytest -q "$@"
