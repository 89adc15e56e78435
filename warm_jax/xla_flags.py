"""XLA flags warm_jax sets by default, before jax starts a backend (`import warm_jax` applies them).

XLA:CPU hands dot, elementwise and reduction fusions to its YNNPACK library by default. For this
project's models, giving it only the dots and leaving elementwise and reduction fusions to XLA's
own emitters takes 13-23% off the reward-model train step on the development machine (2-core
x86_64, jax 0.10.2: 686 -> 527 ms at width 256, 5,999 -> 5,234 ms at width 1024, from
`python benchmarks/rm_step.py --widths=256,512,1024 --layers=4 --vocab=8192 --seq=256 --batch=8`
with and without `WARM_JAX_XLA_DEFAULTS=0`; see benchmarks/README.md).
The flag only concerns CPU compilations; GPU and TPU programs are unchanged.

- A flag already named in the environment's XLA_FLAGS is left as the user set it.
- `WARM_JAX_XLA_DEFAULTS=0` turns the defaults off.
- The flag is experimental in XLA, and an XLA that does not know a flag aborts at start-up, so it
  is only added for the jaxlib versions it was measured with (`MEASURED_JAXLIB`).
- It takes effect only if no jax backend has started yet in the process: import warm_jax (or any
  of its modules) before the first jax computation.
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
