"""XLA flags warm_jax sets by default, before jax starts a backend.

The command-line entry points apply them first thing (`warm_jax.cli.run` once the config is read,
the benchmarks, the test suite's conftest); importing warm_jax changes nothing. XLA:CPU hands dot,
elementwise and reduction fusions to its YNNPACK library by default. The defaults depend on the
compute precision of the models a process runs (`config.model.dtype`):

- float32: YNNPACK gets the dots only, XLA's own emitters the elementwise and reduction fusions,
  which makes this project's float32 CPU train steps faster;
- bfloat16 (or float16): nothing is set. XLA's default is what runs bfloat16 x bfloat16 -> float32
  matmuls on the CPU's matrix units (AMX), several times the float32 rate; with the dots-only flag
  they fall back to a slower path, below float32's.

`benchmarks/step_profile.py` measures both settings (with and without `WARM_JAX_XLA_DEFAULTS=0`);
benchmarks/README.md has the figures. The flags only concern CPU compilations; GPU and TPU programs
are unchanged.

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

CPU_DEFAULTS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}  # float32
LOW_PRECISION = ("bfloat16", "float16")  # compute dtypes that keep XLA's defaults
MEASURED_JAXLIB = ((0, 10), (0, 11))  # [from, to): the jaxlib versions the flag is known in
OPT_OUT = "WARM_JAX_XLA_DEFAULTS"


def _jaxlib_version() -> tuple[int, int] | None:
  try:
    m = re.match(r"(\d+)\.(\d+)", metadata.version("jaxlib"))
  except metadata.PackageNotFoundError:
    return None
  return (int(m.group(1)), int(m.group(2))) if m else None


def default_flags(xla_flags: str, jaxlib: tuple[int, int] | None,
                  dtype: str = "float32") -> list[str]:
  """The flags of `CPU_DEFAULTS` to add to an XLA_FLAGS value, for a jaxlib (major, minor) and
  the compute dtype of the process's models (none for bfloat16 and float16)."""
  if jaxlib is None or not MEASURED_JAXLIB[0] <= jaxlib < MEASURED_JAXLIB[1]:
    return []
  if dtype in LOW_PRECISION:
    return []
  named = set(re.findall(r"--?([A-Za-z0-9_]+)", xla_flags))
  return [f"--{k}={v}" for k, v in CPU_DEFAULTS.items() if k not in named]


def apply(environ=os.environ, dtype: str = "float32") -> list[str]:
  """Adds the default flags for models computing in `dtype` to environ['XLA_FLAGS'] unless opted
  out; returns those added."""
  if environ.get(OPT_OUT, "1").strip() == "0":
    return []
  current = environ.get("XLA_FLAGS", "")
  added = default_flags(current, _jaxlib_version(), dtype)
  if added:
    environ["XLA_FLAGS"] = " ".join([current.strip(), *added]).strip()
  return added


def config_dtype(config) -> str:
  """The compute dtype that decides the defaults for a config: 'bfloat16' (or 'float16') when
  every `model.dtype` in it (each stage's, for a multi-stage job) is that, else 'float32'."""
  found = set()

  def walk(node):
    for key, value in node.items():
      if hasattr(value, "items"):
        if key == "model" and "dtype" in value:
          found.add(str(value["dtype"]))
        walk(value)
  if hasattr(config, "items"):
    walk(config)
  return found.pop() if len(found) == 1 and next(iter(found)) in LOW_PRECISION else "float32"


def argv_dtype(argv) -> str:
  """The dtype a benchmark's command line asks for (`--dtype=X` or `--dtype X`), default
  'float32': the benchmarks set the defaults before parsing their arguments."""
  for i, a in enumerate(argv):
    if a.startswith("--dtype="):
      return a.split("=", 1)[1]
    if a == "--dtype" and i + 1 < len(argv):
      return argv[i + 1]
  return "float32"
