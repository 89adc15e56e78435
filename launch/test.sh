#!/usr/bin/env bash
# Installs warm_jax into .venv and runs the whole test suite (8 fake CPU devices; slow tests too)
# in $WARM_JAX_TEST_WORKERS worker processes (pytest-xdist; default 2, one per core here), each
# test file in one worker so that its fixtures are built once; the 20 slowest tests are listed
# at the end (the suite is meant to stay under 25 minutes on 2 cores).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
python -m pytest -q -n "${WARM_JAX_TEST_WORKERS:-2}" --dist loadfile --durations=20 "$@"
