"""Multi-host for real: two local CPU processes of 4 devices each (one JAX runtime, gloo
collectives) train a reward model on a (2, 2, 2) mesh over all 8 devices, save and restore
checkpoints, and match a 1-process run on 8 devices. The cluster settings are parsed as named."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from warm_jax import distributed

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "multihost_rm.py")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _run(workdir, n):
  port = str(_free_port())
  env = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_FLAGS", "WARM_JAX_"))}
  procs = [subprocess.Popen([sys.executable, SCRIPT, str(workdir), str(n), str(i), port], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(n)]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  return np.load(os.path.join(workdir, "result.npz")), outs


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
  one, _ = _run(tmp_path / "one", 1)
  two, outs = _run(tmp_path / "two", 2)
  assert all("done" in o for o in outs)
  np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-6)
  np.testing.assert_allclose(two["eval_loss"], one["eval_loss"], rtol=1e-6)
  finals = [k for k in one.files if k.startswith("final")]
  assert len(finals) > 10
  for k in finals:
    # Each run's restored checkpoint is exactly its final state (all hosts wrote their shards).
    np.testing.assert_array_equal(two[k], two["restored" + k[len("final"):]])
    if k == "final['reward_head']['bias']":
      continue  # cancels in r_chosen - r_rejected: its gradient is rounding noise that Adam scales up
    np.testing.assert_allclose(two[k], one[k], atol=1e-5, err_msg=k)
  # Only process 0 wrote the logs.
  assert len(two["losses"]) == 4


def test_explicit_cluster_settings():
  env = {"WARM_JAX_COORDINATOR": "10.0.0.2:1234", "WARM_JAX_NUM_PROCESSES": "4",
         "WARM_JAX_PROCESS_ID": "3"}
  assert distributed.explicit_cluster(env) == {"coordinator_address": "10.0.0.2:1234",
                                               "num_processes": 4, "process_id": 3}
  assert distributed.explicit_cluster({}) is None  # JAX detects SLURM / TPU pods itself
  for bad, match in (({"WARM_JAX_PROCESS_ID": "4"}, "PROCESS_ID=4"),
                     ({"WARM_JAX_NUM_PROCESSES": "two"}, "integers"),
                     ({"WARM_JAX_COORDINATOR": "10.0.0.2"}, "host:port"),
                     ({"WARM_JAX_PROCESS_ID": ""}, "are not")):
    with pytest.raises(ValueError, match=match):
      distributed.explicit_cluster({**env, **bad})


def test_only_process_zero_writes_reports_and_figures(tmp_path, monkeypatch):
  import jax
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  from warm_jax import checkpoints
  from warm_jax.train import metrics
  for index, exists in ((1, False), (0, True)):
    monkeypatch.setattr(jax, "process_index", lambda: index)
    checkpoints.write_atomic(str(tmp_path / f"r{index}.json"), "{}")
    fig, _ = plt.subplots()
    metrics.save_figure(fig, str(tmp_path / f"f{index}.png"))
    assert (tmp_path / f"r{index}.json").exists() == exists
    assert (tmp_path / f"f{index}.png").exists() == exists
  assert sorted(p.name for p in tmp_path.iterdir()) == ["f0.png", "r0.json"]  # no temporaries left
