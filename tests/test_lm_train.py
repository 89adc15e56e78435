"""Language-model pre-training / SFT trainer on toy text."""

import numpy as np
import pytest

from warm_jax import configs
from warm_jax.train import lm


def lm_config(objective="sft"):
  import ml_collections
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.mesh = configs.mesh_config(shape=(2, 2, 2))
  c.sharding = ml_collections.ConfigDict({"rules": configs.DEFAULT_RULES})
  c.data = ml_collections.ConfigDict(dict(seed=0, max_len=32, batch_size=8, eval_batch_size=8))
  c.model = configs.model_config("tiny", vocab_size=64, max_len=32)
  c.optim = configs.optim_config(lr=3e-3, warmup_steps=2)
  c.train = ml_collections.ConfigDict(dict(
      objective=objective, num_steps=30, log_every=10, eval_every=30, eval_batches=0, ckpt_every=30,
      keep=1, eval_splits=("validation",)))
  return c


def _texts(n, seed):
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    k = int(rng.integers(2, 6))
    out.append({"prompt": "q" * k, "response": "r" * k + "s"})  # the response copies the length
  return out


def test_sft_lowers_validation_loss(toy_data, tmp_path):
  c = lm_config()
  sources = {"train": _texts(64, 0), "validation": _texts(16, 1)}
  c.train.num_steps = 1
  before = lm.train(c, str(tmp_path / "a"), sources, toy_data["tokenizer"])["validation/loss"]
  c.train.num_steps = 30
  after = lm.train(c, str(tmp_path / "b"), sources, toy_data["tokenizer"])["validation/loss"]
  assert after < 0.5 * before


def test_unknown_objective_is_rejected(toy_data, tmp_path):
  c = lm_config(objective="rlhf")
  with pytest.raises(ValueError, match="config.train.objective='rlhf'"):
    lm.train(c, str(tmp_path), {"train": _texts(8, 0), "validation": _texts(8, 1)},
             toy_data["tokenizer"])
