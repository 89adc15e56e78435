"""Test setup: 8 fake CPU devices (so sharding is exercised), and small shared fixtures."""

import contextlib
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


class ToyTokenizer:
  """A character-level tokenizer for trainer tests that should not depend on the data set build."""
  pad_id, bos_id, eos_id = 0, 1, 2
  vocab_size = 64

  def encode(self, text):
    return [3 + (ord(c) % 61) for c in text]

  def decode(self, ids):
    return "".join(chr(i - 3 + 61) for i in ids if i > 2)


def toy_pairs(n, seed=0):
  """Preference records where the chosen response has more 'a's than the rejected one."""
  rng = np.random.default_rng(seed)
  out = []
  for i in range(n):
    prompt = "".join(rng.choice(list("xyz"), size=rng.integers(3, 8)))
    k = int(rng.integers(1, 6))
    out.append({"prompt": prompt, "chosen": "a" * (k + 2) + "b", "rejected": "a" * k + "bb", "id": i})
  return out


@pytest.fixture
def toy_data():
  return {"tokenizer": ToyTokenizer(),
          "sources": {"train": toy_pairs(64, 0), "validation": toy_pairs(32, 1),
                      "ood": toy_pairs(16, 2)}}


@contextlib.contextmanager
def data_dir(path):
  """Points the embedded task's TFDS cache ($WARM_JAX_DATA_DIR) at `path` for the block."""
  old = os.environ.get("WARM_JAX_DATA_DIR")
  os.environ["WARM_JAX_DATA_DIR"] = str(path)
  try:
    yield
  finally:
    if old is None:
      os.environ.pop("WARM_JAX_DATA_DIR", None)
    else:
      os.environ["WARM_JAX_DATA_DIR"] = old
