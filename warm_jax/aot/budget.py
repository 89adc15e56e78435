"""What a compiled program needs of each device: memory against the chip's HBM, FLOPs, and the
time they take at the chip's peak and at a stated utilisation.

Memory is XLA's own account of the compiled program per device (`memory_analysis`: arguments,
outputs, their aliasing through donation, temporaries). FLOPs are the matrix multiplies of the
traced program counted with their loops (`aot.flops`; XLA's cost analysis counts a loop body
once), divided evenly over the devices. A sampler's time also has a floor that FLOPs miss: every
generated token re-reads the device's parameters from HBM.

A program far too large for the chip is refused by the TPU compiler itself (RESOURCE_EXHAUSTED,
stating the temporaries it needs); its budget is then the arguments' shard bytes plus those
temporaries (`Budget.refused`), which is what makes the check try the fixes. A program whose
arguments alone (parameters, optimiser state, batch: their shards on one device) exceed the
chip's HBM cannot fit whatever its temporaries: it is not compiled at all (`Budget.skipped`), which
spares the fix search its longest compiles (those of 2-8B models laid out data-parallel).
"""

from __future__ import annotations

import dataclasses
import math
import re
import time

import jax
import numpy as np

from warm_jax.aot import flops as flops_lib
from warm_jax.aot.programs import Program
from warm_jax.aot.topologies import GiB, Chip


@dataclasses.dataclass(frozen=True)
class Budget:
  argument: int  # bytes per device
  output: int
  alias: int  # output bytes that reuse (donated) argument buffers
  temp: int
  flops: float  # per device, per call
  loop_trips: int  # a sampler's tokens (1 for a train step)
  compile_seconds: float
  refused: bool = False  # the compiler refused it (out of HBM): temp is what it said it needs
  skipped: bool = False  # not compiled: its arguments alone exceed the HBM (temp unknown: 0)

  @property
  def peak(self) -> int:
    """Bytes live on a device at once: arguments, outputs not aliased to them, temporaries."""
    return self.argument + self.output - self.alias + self.temp

  def fits(self, chip: Chip) -> bool:
    return self.peak <= chip.hbm_bytes

  def seconds(self, chip: Chip, utilisation: float = 1.0) -> float:
    """One call at `utilisation` of the chip's peak FLOP/s; a sampler's is at least its
    parameter reads (the argument bytes, once per token) at the chip's HBM bandwidth."""
    t = self.flops / (chip.peak_flops * utilisation)
    if self.loop_trips > 1:
      t = max(t, self.loop_trips * self.argument / (chip.hbm_bandwidth * utilisation))
    return t


def _shape_only(hlo: str) -> str:
  """StableHLO text with constant values blanked (learning rates, warm-up steps): programs that
  differ only in them need the same memory and FLOPs."""
  return re.sub(r"dense<[^>]*>", "dense<>", hlo)


_CACHE: dict[str, Budget] = {}


def measure(program: Program, hbm_bytes: int | None = None) -> Budget:
  """Compiles `program` for its mesh's devices and reads its budget; a program already measured
  in this process (same text but for constants) is not compiled again, nor one whose arguments'
  shards alone exceed `hbm_bytes` (`Budget.skipped`)."""
  with jax.set_mesh(program.mesh):
    traced = program.fn.trace(*program.args)
    lowered = traced.lower()
  key = _shape_only(lowered.as_text())
  if key not in _CACHE:
    t0 = time.time()
    total = flops_lib.jaxpr_flops(traced.jaxpr, program.loop_trips)
    common = dict(flops=total / program.mesh.devices.size, loop_trips=program.loop_trips)
    args = shard_bytes(program.args)
    if hbm_bytes is not None and args > hbm_bytes:
      return Budget(argument=args, output=0, alias=0, temp=0, compile_seconds=0.0, skipped=True,
                    **common)
    try:
      compiled = lowered.compile()
    except jax.errors.JaxRuntimeError as e:
      temp = out_of_memory_bytes(str(e))
      if temp is None:
        raise
      _CACHE[key] = Budget(argument=shard_bytes(program.args), output=0, alias=0, temp=temp,
                           compile_seconds=time.time() - t0, refused=True, **common)
      return _CACHE[key]
    m = compiled.memory_analysis()
    _CACHE[key] = Budget(
        argument=m.argument_size_in_bytes, output=m.output_size_in_bytes,
        alias=m.alias_size_in_bytes, temp=m.temp_size_in_bytes,
        compile_seconds=time.time() - t0, **common)
  return _CACHE[key]


_OOM = re.compile(r"RESOURCE_EXHAUSTED: Ran out of memory.*?HLO temporaries \(([\d.]+)([KMGT]?)\)",
                  re.S)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def out_of_memory_bytes(message: str) -> int | None:
  """The temporaries (bytes) a TPU compiler's out-of-HBM refusal says the program needs; None
  for any other error."""
  m = _OOM.search(message)
  return None if m is None else int(float(m.group(1)) * _UNITS[m.group(2)])


def shard_bytes(tree) -> int:
  """Bytes of one device's shards of a tree of abstract arrays (ShapeDtypeStructs)."""
  total = 0
  for x in jax.tree.leaves(tree):
    shape = x.sharding.shard_shape(x.shape) if getattr(x, "sharding", None) else x.shape
    try:
      itemsize = np.dtype(x.dtype).itemsize
    except TypeError:  # a PRNG key
      itemsize = 8
    total += math.prod(shape) * itemsize
  return total


def gib(n: float) -> str:
  return f"{n / GiB:.2f}"
