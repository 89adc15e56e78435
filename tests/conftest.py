"""Test setup: 8 fake CPU devices (so sharding is exercised), and small shared fixtures."""

import contextlib
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent compilation cache for the session, shared with the subprocesses tests start (the
# experiments and commands they run end to end): the tests' tiny models compile the same programs
# many times over, in-process and out. Removed when the session ends.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  import atexit
  import shutil
  import tempfile
  _cache = tempfile.mkdtemp(prefix="warm_jax_tests_xla_cache_")
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ.update(JAX_COMPILATION_CACHE_DIR=_cache,
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")

from warm_jax import xla_flags  # noqa: E402

xla_flags.apply()  # as every entry point does, before any test starts jax

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


def experiment(name: str):
  """The config module of experiments/<name>.py (as `warm_jax.configs.load_experiment` loads it)."""
  from warm_jax import configs
  return configs.load_experiment(name)


def script(relpath: str):
  """A script of this checkout (e.g. 'launch/sweep.py') imported as a module, by its path."""
  import importlib.util
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), relpath)
  spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


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


HF_TOKENIZER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "hf",
                            "tokenizer")


def write_tiny_hf(out_dir, kind="lm", seed=0, vocab_size=320, dtype="float32"):
  """A tiny Llama-layout Hugging Face directory (warm_jax's own export of a fresh model, stored
  in `dtype`) with the fixture BPE tokenizer (303 ids) padding with its eos, as Llama 3's does:
  kind 'lm' writes a *ForCausalLM, 'rm' a *ForSequenceClassification (random score head)."""
  import json

  import flax.linen as nn
  import jax
  import jax.numpy as jnp

  from warm_jax import configs, pretrained
  from warm_jax.models import LanguageModel, RewardModel
  cfg = configs.model_config("tiny", vocab_size=vocab_size, max_len=64, reward_head_bias=False,
                             scale_tied_logits=False)
  model = (LanguageModel if kind == "lm" else RewardModel)(cfg)
  params = nn.unbox(model.init(jax.random.key(seed), jnp.ones((1, 4), jnp.int32))["params"])
  if kind == "rm":
    head = params["reward_head"]["kernel"]
    params["reward_head"]["kernel"] = jax.random.normal(jax.random.key(seed + 1), head.shape)
  pretrained.export_hf(params, cfg, str(out_dir), tokenizer_dir=HF_TOKENIZER, eos_id=2, bos_id=1,
                       pad_id=2, dtype=dtype)
  path = os.path.join(str(out_dir), "tokenizer_config.json")
  with open(path) as f:
    tok_config = json.load(f)
  tok_config["pad_token"] = "</s>"
  with open(path, "w") as f:
    json.dump(tok_config, f)
  return str(out_dir)


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory):
  """{'lm': a tiny *ForCausalLM directory, 'rm': a tiny *ForSequenceClassification} (see
  `write_tiny_hf`), shared by the tests of a session."""
  root = tmp_path_factory.mktemp("tiny_hf")
  return {"lm": write_tiny_hf(root / "lm", "lm"), "rm": write_tiny_hf(root / "rm", "rm")}


def make_rm(path, seed=0, scale=1.0, shift=0.0, base=None, bias=0.3, **model_fields):
  """A tiny reward-model checkpoint (the embedded task's tokenizer, config.model updated with
  `model_fields`) with a random head; with `base`, the same parameters as `base`'s except a head
  giving scale * r_base + shift. Returns its path."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  from warm_jax import checkpoints
  from warm_jax.models import RewardModel
  c = experiment("reward_model").get_config("tiny")
  c.model.update(dropout_rate=0.0, **model_fields)
  if base is None:
    model = RewardModel(c.model)
    params = nn.unbox(jax.jit(model.init)(jax.random.key(seed), jnp.ones((1, 8), jnp.int32))["params"])
    k = jax.random.normal(jax.random.key(seed + 100), params["reward_head"]["kernel"].shape)
    params["reward_head"] = {"kernel": k, "bias": jnp.full((1,), bias)}
  else:
    params = jax.tree.map(np.asarray, checkpoints.restore_params(base))
    head = params["reward_head"]
    params["reward_head"] = {"kernel": head["kernel"] * scale, "bias": head["bias"] * scale + shift}
  checkpoints.save_params(str(path), params, {"config": c.to_dict()})
  return str(path)
