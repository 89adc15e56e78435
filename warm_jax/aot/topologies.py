"""TPU slices by name, their devices without the hardware (libtpu's topology descriptions), and
the figures of their chips.

    slice_of("v5e-16")   -> Slice(v5e, 16 chips, topology 'v5e:4x4')
    devices("v5e-16")    -> the 16 TpuDevices a mesh is built on (nothing allocated, no TPU needed)

Names are Cloud TPU's accelerator types: v5e-N and v6e-N count chips; v4-N and v5p-N count
TensorCores (two per chip, one jax device per chip: megacore). libtpu's own topology names
(`v5e:2x2`, `v4:2x2x4`) are accepted too. The libtpu package (an optional extra:
`pip install -e .[tpu]`) compiles for them on any machine; without it the error says how to
install it.
"""

from __future__ import annotations

import dataclasses
import math
import os

from warm_jax.errors import InputError

GiB = 2 ** 30


@dataclasses.dataclass(frozen=True)
class Chip:
  """Per-chip figures of a TPU generation (Cloud TPU's system architecture pages)."""
  name: str
  hbm_bytes: int  # high-bandwidth memory of one chip (= one jax device)
  peak_flops: float  # bf16 matrix-unit peak, FLOP/s
  hbm_bandwidth: float  # bytes/s
  cores_per_chip: int  # TensorCores counted by the accelerator type's number
  megacore: bool  # the chip's cores are one jax device (libtpu chip config 'megacore')
  prefix: str  # libtpu's topology prefix
  dims: int  # 2-D (v5e, v6e) or 3-D (v4, v5p) torus


CHIPS = {
    "v4": Chip("v4", 32 * GiB, 275e12, 1.2e12, 2, True, "v4", 3),
    "v5e": Chip("v5e", 16 * GiB, 197e12, 8.2e11, 1, False, "v5e", 2),
    "v5p": Chip("v5p", 95 * GiB, 459e12, 2.765e12, 2, False, "v5p", 3),
    "v6e": Chip("v6e", 32 * GiB, 918e12, 1.64e12, 1, False, "v6e", 2),
}


# Chips -> slice shape, as Cloud TPU lays slices out.
GRIDS = {
    2: {1: (1, 1), 4: (2, 2), 8: (2, 4), 16: (4, 4), 32: (4, 8), 64: (8, 8), 128: (8, 16),
        256: (16, 16)},
    3: {4: (2, 2, 1), 8: (2, 2, 2), 16: (2, 2, 4), 32: (2, 4, 4), 64: (4, 4, 4), 128: (4, 4, 8),
        256: (4, 8, 8), 512: (8, 8, 8), 1024: (8, 8, 16), 2048: (8, 16, 16)},
}


@dataclasses.dataclass(frozen=True)
class Slice:
  name: str  # as given
  chip: Chip
  grid: tuple[int, ...]  # chips along each axis

  @property
  def chips(self) -> int:
    return math.prod(self.grid)

  @property
  def topology(self) -> str:
    """libtpu's topology name, e.g. 'v5e:4x4'."""
    return f"{self.chip.prefix}:{'x'.join(map(str, self.grid))}"


def slice_of(name: str) -> Slice:
  """A TPU slice from its accelerator type ('v5e-16', 'v4-32') or libtpu topology name
  ('v5e:4x4'); an unknown name raises InputError naming --topology and the known generations."""
  if ":" in name:
    gen, _, shape = name.partition(":")
    chip = CHIPS.get(gen)
    try:
      grid = tuple(int(x) for x in shape.split("x"))
    except ValueError:
      grid = ()
    if chip is None or len(grid) != chip.dims or min(grid, default=0) < 1:
      raise InputError(f"--topology={name!r}: not a topology of {', '.join(CHIPS)} "
                       f"(e.g. v5e:4x4, v4:2x2x4)")
    return Slice(name, chip, grid)
  gen, _, count = name.partition("-")
  chip = CHIPS.get(gen)
  chips = int(count) // chip.cores_per_chip if chip is not None and count.isdigit() else 0
  if chip is None or not count.isdigit() or chips * chip.cores_per_chip != int(count) \
      or chips not in GRIDS[chip.dims]:
    sizes = {g: sorted(n * c.cores_per_chip for n in GRIDS[c.dims]) for g, c in CHIPS.items()}
    raise InputError(f"--topology={name!r}: not a TPU slice known here; choose one of "
                     + "; ".join(f"{g}-N, N in {v}" for g, v in sizes.items())
                     + ", or a libtpu topology such as v5e:4x4")
  return Slice(name, chip, GRIDS[chip.dims][chips])


def _quiet_environment() -> None:
  """What libtpu reads when it starts on a machine that is no TPU VM: no metadata server to
  ask, and other processes of the machine holding libtpu's lock file must not stop it."""
  os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
  os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")


INSTALL_HINT = ("compiling for a TPU topology needs the libtpu package: pip install -e '.[tpu]' "
                "(or pip install 'jax[tpu]'); nothing else in warm_jax needs it")


def require_libtpu() -> None:
  """Raises InputError saying how to install libtpu when it is missing."""
  import importlib.util
  if importlib.util.find_spec("libtpu") is None:
    raise InputError(INSTALL_HINT)


def devices(name: str) -> list:
  """The jax devices of a TPU slice (one per chip), from libtpu's description of its topology:
  a mesh can be built on them and programs compiled for them; no TPU is needed."""
  sl = slice_of(name)
  require_libtpu()
  _quiet_environment()
  from jax.experimental import topologies
  kwargs = {"chip_config_name": "megacore"} if sl.chip.megacore else {}
  if sl.chips >= 4:  # four chips per host (2x2), as on Cloud TPU VMs
    kwargs["chips_per_host_bounds"] = (2, 2, 1)
  desc = topologies.get_topology_desc(topology_name=sl.topology, platform="tpu", **kwargs)
  out = list(desc.devices)
  if len(out) != sl.chips:
    raise RuntimeError(f"libtpu described {sl.topology} with {len(out)} devices, expected "
                       f"{sl.chips} (one per chip)")
  return out
