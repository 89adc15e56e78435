#!/usr/bin/env bash
# Installs warm_jax into .venv and runs the whole test suite (8 fake CPU devices; slow tests too)
# in $WARM_JAX_TEST_WORKERS worker processes (pytest-xdist; default 2, one per core here), each
# test file in one worker so that its fixtures are built once.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
python -m pytest -q -n "${WARM_JAX_TEST_WORKERS:-2}" --dist loadfile "$@"
