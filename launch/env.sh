# Sourced by the quick-start scripts: creates (once) and activates the project's virtualenv in
# .venv and installs warm_jax into it with its test extra (or the extras in $WARM_JAX_EXTRAS).
# Only PyPI needs to be reachable.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
# WARM_JAX_EXTRAS: the extras to install (CI adds tpu: libtpu, for the TPU compile tests).
python -m pip install --quiet --disable-pip-version-check -e ".[${WARM_JAX_EXTRAS:-test}]"
