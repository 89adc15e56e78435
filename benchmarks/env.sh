# Sourced by the peer benchmarks: creates (once) and activates .venv-bench, which holds warm_jax
# *and* the PyTorch peers (torch CPU, transformers, trl), so one process-pair run on one machine
# measures both sides. The peers never enter the project's own .venv or its dependencies.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv-bench/bin/python ]; then
  "$PY" -m venv .venv-bench
fi
# shellcheck disable=SC1091
. .venv-bench/bin/activate
python -m pip install --quiet --disable-pip-version-check -e . 'torch==2.13.0' transformers trl datasets
