"""Multi-host runs: one process per host (TPU pod worker, GPU node), all in one JAX runtime.

    python experiments/X.py --config=... --workdir=/mnt/bucket/run --distributed

`initialize()` calls `jax.distributed.initialize`. The coordinator address, process count and
process id come from, in order: the WARM_JAX_COORDINATOR / WARM_JAX_NUM_PROCESSES /
WARM_JAX_PROCESS_ID variables (`launch/gpu.py` sets them), or JAX's own detection of the cluster
(SLURM's variables, Open MPI, TPU pod VMs, GKE). On CPU the processes exchange data through gloo.
The workdir must be shared by every process (a gcsfuse mount of a bucket, NFS): orbax writes all
processes' shards into one checkpoint, and the other writers use plain file operations.

What multi-host needs from the rest of the code, and where it lives: every process reads only its
slice of each global batch (`data.pipeline`, by process index) and `sharding.to_global` assembles
the slices into global arrays; only process 0 writes metrics, configs, reports and plots
(`train.metrics`, `train.loop.write_config`); every process takes part in orbax saves and restores.
"""

from __future__ import annotations

import os
from typing import Mapping

ENV = ("WARM_JAX_COORDINATOR", "WARM_JAX_NUM_PROCESSES", "WARM_JAX_PROCESS_ID")


def explicit_cluster(env: Mapping[str, str] = os.environ) -> dict | None:
  """{coordinator_address, num_processes, process_id} from the WARM_JAX_* variables, None when
  WARM_JAX_COORDINATOR is unset; a partial or invalid setting raises, naming the variable."""
  if not env.get(ENV[0]):
    return None
  missing = [k for k in ENV[1:] if not env.get(k)]
  if missing:
    raise ValueError(f"WARM_JAX_COORDINATOR is set but {missing} are not")
  try:
    n, i = int(env[ENV[1]]), int(env[ENV[2]])
  except ValueError as e:
    raise ValueError(f"WARM_JAX_NUM_PROCESSES={env[ENV[1]]!r} and WARM_JAX_PROCESS_ID="
                     f"{env[ENV[2]]!r} must be integers") from e
  if n < 1 or not 0 <= i < n:
    raise ValueError(f"WARM_JAX_PROCESS_ID={i} must be in [0, WARM_JAX_NUM_PROCESSES={n})")
  if ":" not in env[ENV[0]]:
    raise ValueError(f"WARM_JAX_COORDINATOR={env[ENV[0]]!r} must be host:port")
  return {"coordinator_address": env[ENV[0]], "num_processes": n, "process_id": i}


def initialize(env: Mapping[str, str] = os.environ) -> dict:
  """jax.distributed.initialize with the explicit cluster or JAX's detection; returns
  {process_index, process_count, local_devices, devices}."""
  import jax
  kwargs = explicit_cluster(env) or {}
  # Cross-process collectives of the CPU backend (tests, CPU clusters); GPUs and TPUs ignore it.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**kwargs)
  return {"process_index": jax.process_index(), "process_count": jax.process_count(),
          "local_devices": jax.local_device_count(), "devices": jax.device_count()}
