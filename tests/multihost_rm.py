"""A few reward-model steps and a checkpoint save/restore, as one process of a multi-process run
(or alone), for tests/test_multihost.py.

    python tests/multihost_rm.py WORKDIR NUM_PROCESSES PROCESS_ID PORT
Each process has 8 / NUM_PROCESSES fake CPU devices; the mesh (2, 2, 2) spans all 8. Process 0
writes WORKDIR/result.npz: the final params (gathered from every process), the restored params
and the training losses.
"""

import os
import sys

N, PID, PORT = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={8 // N}"
os.environ["JAX_PLATFORMS"] = "cpu"
if N > 1:
  os.environ.update(WARM_JAX_COORDINATOR=f"127.0.0.1:{PORT}", WARM_JAX_NUM_PROCESSES=str(N),
                    WARM_JAX_PROCESS_ID=str(PID))
HERE = os.path.dirname(os.path.abspath(__file__))

from warm_jax import distributed

if N > 1:
  distributed.initialize()

import jax
import numpy as np
from jax.experimental import multihost_utils

from conftest import ToyTokenizer, experiment, toy_pairs
from warm_jax import checkpoints
from warm_jax.train import loop, reward_model as rm
from warm_jax.train.metrics import read_metrics


def flat(tree):
  tree = multihost_utils.process_allgather(tree, tiled=True)
  return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def main(workdir):
  assert jax.process_count() == N and jax.device_count() == 8
  c = experiment("reward_model").get_config("tiny")
  c.model.vocab_size = 64
  c.model.dropout_rate = 0.1
  c.mesh.shape = (2, 2, 2)
  c.train.update(num_steps=4, ckpt_every=2, eval_every=2, log_every=1)
  sources = {"train": toy_pairs(64, 0), "validation": toy_pairs(16, 1), "ood": toy_pairs(16, 2)}
  out = rm.train(c, workdir, sources=sources, tokenizer=ToyTokenizer())
  setup = rm.build(c)
  restored = checkpoints.restore_params(os.path.join(workdir, "checkpoints"),
                                        target=loop.abstract_state(setup).params)
  final, back = flat(out["state"].params), flat(restored)
  if jax.process_index() == 0:
    losses = [r["loss"] for r in read_metrics(workdir, "train")]
    np.savez(os.path.join(workdir, "result.npz"), losses=np.asarray(losses),
             eval_loss=np.asarray(out["validation/loss"]),
             **{f"final{k}": v for k, v in final.items()}, **{f"restored{k}": v for k, v in back.items()})
  print(f"process {jax.process_index()} done", flush=True)


if __name__ == "__main__":
  main(sys.argv[1])
