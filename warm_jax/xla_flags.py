"""XLA flags warm_jax sets by default, before jax starts a backend.

The command-line entry points apply them first thing (`warm_jax.cli.run`, the benchmarks, the
test suite's conftest); importing warm_jax changes nothing. XLA:CPU hands dot, elementwise and
reduction fusions to its YNNPACK library by default; for this project's models, giving it only
the dots and leaving elementwise and reduction fusions to XLA's own emitters makes the CPU train
steps faster (benchmarks/README.md has the measurements, `benchmarks/rm_step.py` with and without
`WARM_JAX_XLA_DEFAULTS=0`). The flag only concerns CPU compilations; GPU and TPU programs are
unchanged.

- A flag already named in the environment's XLA_FLAGS is left as the user set it.
- `WARM_JAX_XLA_DEFAULTS=0` turns the defaults off.
- The flag is experimental in XLA, and an XLA that does not know a flag aborts at start-up, so it
  is only added for the jaxlib versions it was measured with (`MEASURED_JAXLIB`).
- It takes effect only if no jax backend has started yet in the process.
"""

from __future__ import annotations

import os
import re
from importlib import metadata

CPU_DEFAULTS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}
MEASURED_JAXLIB = ((0, 10), (0, 11))  # [from, to): the jaxlib versions the flag is known in
OPT_OUT = "WARM_JAX_XLA_DEFAULTS"


def _jaxlib_version() -> tuple[int, int] | None:
  try:
    m = re.match(r"(\d+)\.(\d+)", metadata.version("jaxlib"))
  except metadata.PackageNotFoundError:
    return None
  return (int(m.group(1)), int(m.group(2))) if m else None


def default_flags(xla_flags: str, jaxlib: tuple[int, int] | None) -> list[str]:
  """The flags of `CPU_DEFAULTS` to add to an XLA_FLAGS value, for a jaxlib (major, minor)."""
  if jaxlib is None or not MEASURED_JAXLIB[0] <= jaxlib < MEASURED_JAXLIB[1]:
    return []
  named = set(re.findall(r"--?([A-Za-z0-9_]+)", xla_flags))
  return [f"--{k}={v}" for k, v in CPU_DEFAULTS.items() if k not in named]


def apply(environ=os.environ) -> list[str]:
  """Adds the default flags to environ['XLA_FLAGS'] unless opted out; returns those added."""
  if environ.get(OPT_OUT, "1").strip() == "0":
    return []
  current = environ.get("XLA_FLAGS", "")
  added = default_flags(current, _jaxlib_version())
  if added:
    environ["XLA_FLAGS"] = " ".join([current.strip(), *added]).strip()
  return added
