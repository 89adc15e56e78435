"""A run killed with SIGKILL mid-training and restarted ends with exactly the params of an
uninterrupted run; SIGTERM saves a checkpoint before exiting, also when it comes while the last
checkpoint is being written."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
RUN = [sys.executable, os.path.join(HERE, "toy_rm_run.py")]


def _run(workdir, steps, delay=0.0):
  out = subprocess.run(RUN + [str(workdir), str(steps), str(delay)], capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return dict(np.load(out.stdout.strip().splitlines()[-1]))


def _start_and_signal(workdir, steps, sig, wait_for_step):
  proc = subprocess.Popen(RUN + [str(workdir), str(steps), "0.03"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  ckpts = os.path.join(workdir, "checkpoints")
  deadline = time.time() + 300
  while time.time() < deadline:
    done = [int(d) for d in (os.listdir(ckpts) if os.path.isdir(ckpts) else []) if d.isdigit()]
    if done and max(done) >= wait_for_step:
      break
    if proc.poll() is not None:
      pytest.fail("the run finished before it could be interrupted: " + proc.stderr.read()[-2000:])
    time.sleep(0.05)
  proc.send_signal(sig)
  _, err = proc.communicate(timeout=120)
  return proc.returncode, err


@pytest.mark.slow
def test_sigkill_then_restart_equals_uninterrupted(tmp_path):
  reference = _run(tmp_path / "reference", 10)
  code, _ = _start_and_signal(tmp_path / "killed", 10, signal.SIGKILL, wait_for_step=4)
  assert code == -signal.SIGKILL
  steps = sorted(int(d) for d in os.listdir(tmp_path / "killed" / "checkpoints") if d.isdigit())
  assert steps and max(steps) < 10, steps  # it really was interrupted
  resumed = _run(tmp_path / "killed", 10)
  assert reference.keys() == resumed.keys()
  for k in reference:
    np.testing.assert_array_equal(reference[k], resumed[k], err_msg=k)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_before_exiting(tmp_path):
  code, err = _start_and_signal(tmp_path, 40, signal.SIGTERM, wait_for_step=2)
  assert code != 0 and "SIGTERM: saved a checkpoint at step" in err
  saved = int(err.split("saved a checkpoint at step ")[1].split()[0])
  steps = [int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()]
  assert saved in steps and saved < 40


@pytest.mark.slow
def test_sigterm_while_the_final_checkpoint_is_written_waits_for_it(tmp_path):
  from warm_jax import checkpoints
  env = dict(os.environ, TOY_SIGTERM_IN_FINAL_SAVE="1")
  out = subprocess.run(RUN + [str(tmp_path), "4"], capture_output=True, text=True, timeout=600,
                       env=env)
  # It exited 143 with no message, the last step's checkpoint never finalised.
  assert out.returncode == 1, (out.returncode, out.stderr[-2000:])
  assert f"SIGTERM: saved a checkpoint at step 4 in {tmp_path / 'checkpoints'}" in out.stderr
  assert checkpoints.complete_steps(str(tmp_path / "checkpoints"))[-1] == 4
  assert checkpoints.read_meta(str(tmp_path / "checkpoints"), 4)["step"] == 4
