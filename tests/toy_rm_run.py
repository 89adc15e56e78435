"""A reward-model run on the toy pairs, as a separate process (for the kill/resume tests).

    python tests/toy_rm_run.py WORKDIR NUM_STEPS [SLEEP_PER_RECORD]
Prints the path of an .npz with the final params when done. With TOY_SIGTERM_IN_FINAL_SAVE=1 the
process sends itself a SIGTERM 0.1 s after the last step's save starts, a save whose commit is
slowed down by 1 s (so the signal lands while it is being written).
"""

import os
import sys
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import numpy as np

from conftest import ToyTokenizer, experiment, toy_pairs
from warm_jax.train import reward_model as rm


class Slow:
  def __init__(self, src, delay):
    self.src, self.delay = src, delay

  def __len__(self):
    return len(self.src)

  def __getitem__(self, i):
    time.sleep(self.delay)
    return self.src[i]


def sigterm_in_final_save(num_steps):
  import signal
  import threading
  import orbax.checkpoint as ocp
  from warm_jax import checkpoints
  save, write_json = checkpoints.Checkpointer.save, ocp.JsonCheckpointHandler._save_fn

  def save_then_signal(self, step, *a, **k):
    saved = save(self, step, *a, **k)
    if saved and step == num_steps:
      threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGTERM)).start()
    return saved

  async def slow_json(self, x, directory):
    if x.get("step") == num_steps:
      time.sleep(1.0)  # in orbax's commit thread
    await write_json(self, x, directory)
  checkpoints.Checkpointer.save = save_then_signal
  ocp.JsonCheckpointHandler._save_fn = slow_json


def main(workdir, num_steps, delay=0.0):
  if os.environ.get("TOY_SIGTERM_IN_FINAL_SAVE") == "1":
    sigterm_in_final_save(num_steps)
  c = experiment("reward_model").get_config("tiny")
  c.model.vocab_size = 64
  c.model.dropout_rate = 0.1
  c.mesh.shape = (2, 2, 2)
  c.train.num_steps = num_steps
  sources = {"train": Slow(toy_pairs(64, 0), delay), "validation": toy_pairs(16, 1),
             "ood": toy_pairs(16, 2)}
  out = rm.train(c, workdir, sources=sources, tokenizer=ToyTokenizer())
  flat = {jax.tree_util.keystr(p): np.asarray(v)
          for p, v in jax.tree_util.tree_flatten_with_path(out["state"].params)[0]}
  path = os.path.join(workdir, "final_params.npz")
  np.savez(path, **flat)
  print(path)


if __name__ == "__main__":
  main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)
