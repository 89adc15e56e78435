"""Reward-model trainer: sharded == unsharded, real sharding, restore across meshes, bad configs."""

import os

import jax
import numpy as np
import pytest
from conftest import experiment

from warm_jax import checkpoints
from warm_jax import sharding as shd
from warm_jax.data import pipeline
from warm_jax.train import reward_model as rm
from warm_jax.train import state as state_lib


def tiny_config(mesh_shape=(-1, 1, 1)):
  c = experiment("reward_model").get_config("tiny")
  c.model.vocab_size = 64  # the toy tokenizer's vocabulary
  c.mesh.shape = mesh_shape
  c.model.dropout_rate = 0.1
  c.optim.lr = 1e-3
  return c


def _one_step(config, devices, batch):
  setup = rm.build(config, devices)
  state = state_lib.create_state(setup.init_params, setup.tx, jax.random.key(config.seed),
                                 setup.shardings)
  step = state_lib.jit_step(rm.make_train_step(setup.model, setup.tx, setup.schedule, 0.0, 1),
                            setup.shardings, setup.batch_sharding, setup.mesh, setup.rules)
  gbatch = shd.to_global(batch, setup.batch_sharding)
  state, m1 = step(state, gbatch)
  state, m2 = step(state, gbatch)
  return state, (m1, m2)


def test_sharded_step_matches_single_device(toy_data):
  encode = pipeline.PairEncoder(toy_data["tokenizer"], 64)
  batch = next(pipeline.Batches(toy_data["sources"]["train"], encode, 8, seed=0))
  s1, (a1, a2) = _one_step(tiny_config((1, 1, 1)), jax.devices()[:1], batch)
  s8, (b1, b2) = _one_step(tiny_config((2, 2, 2)), jax.devices(), batch)
  for x, y in ((a1, b1), (a2, b2)):
    np.testing.assert_allclose(float(x["loss"]), float(y["loss"]), rtol=1e-5)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4,
                                                       atol=1e-5), s1.params, s8.params)
  # The sharded run's parameters really are split across devices.
  q = s8.params["decoder"]["block_0"]["attn"]["query"]
  assert q.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor", None)
  assert q.addressable_shards[0].data.shape == (q.shape[0] // 2, q.shape[1] // 2, q.shape[2])
  assert len({s.device for s in q.addressable_shards}) == 8


def test_training_learns_and_checkpoint_restores_on_another_mesh(toy_data, tmp_path):
  c = tiny_config((2, 2, 2))
  c.train.num_steps = 12
  out = rm.train(c, str(tmp_path), sources=toy_data["sources"], tokenizer=toy_data["tokenizer"])
  assert out["validation/accuracy"] > 0.8
  rows = [r for r in open(tmp_path / "metrics.jsonl")]
  assert len(rows) >= 6 and os.path.isdir(tmp_path / "tb") and os.path.exists(tmp_path / "config.json")
  # Restore the params onto a different mesh (data=8) and onto one device: same rewards.
  encode = pipeline.PairEncoder(toy_data["tokenizer"], 64)
  batch = next(pipeline.epoch_batches(toy_data["sources"]["validation"], encode, 8))
  rewards = []
  for shape, devices in (((2, 2, 2), None), ((8, 1, 1), None), ((1, 1, 1), jax.devices()[:1])):
    c2 = tiny_config(shape)
    setup = rm.build(c2, devices)
    target = rm.abstract_state(setup).params
    params = checkpoints.restore_params(str(tmp_path / "checkpoints"), target=target)
    assert params["decoder"]["embed"]["embedding"].sharding == target["decoder"]["embed"]["embedding"].sharding
    with jax.set_mesh(setup.mesh):
      rc, _ = rm.pair_rewards(setup.model, params, shd.to_global(batch, setup.batch_sharding))
    rewards.append(np.asarray(rc))
  np.testing.assert_allclose(rewards[0], rewards[1], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(rewards[0], rewards[2], rtol=1e-5, atol=1e-5)


def test_resume_continues_to_the_same_params_as_one_run(toy_data, tmp_path):
  c = tiny_config()
  c.train.num_steps = 8
  full = rm.train(c, str(tmp_path / "full"), sources=toy_data["sources"], tokenizer=toy_data["tokenizer"])
  # The same run, crashing while it reads the 5th batch (checkpoints were saved at steps 2 and 4).
  class Stop(Exception):
    pass

  class Flaky:
    def __init__(self, src, fail_after):
      self.src, self.calls, self.fail_after = src, 0, fail_after
    def __len__(self):
      return len(self.src)
    def __getitem__(self, i):
      self.calls += 1
      if self.calls > self.fail_after:
        raise Stop()
      return self.src[i]

  flaky = dict(toy_data["sources"], train=Flaky(toy_data["sources"]["train"], fail_after=4 * 8))
  with pytest.raises(Stop):
    rm.train(c, str(tmp_path / "resumed"), sources=flaky, tokenizer=toy_data["tokenizer"])
  assert checkpoints.Checkpointer(str(tmp_path / "resumed" / "checkpoints"), save_every=2,
                                  keep=3).latest_step() == 4
  resumed = rm.train(c, str(tmp_path / "resumed"), sources=toy_data["sources"],
                     tokenizer=toy_data["tokenizer"])
  jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)),
               full["state"].params, resumed["state"].params)


def test_resume_with_a_different_model_shape_names_the_parameter(toy_data, tmp_path):
  c = tiny_config()
  c.train.num_steps = 2
  rm.train(c, str(tmp_path), sources=toy_data["sources"], tokenizer=toy_data["tokenizer"])
  before = sorted(os.listdir(tmp_path / "checkpoints"))
  c.model.d_ff = 96
  with pytest.raises(ValueError, match=r"decoder/block_0/mlp/down/kernel: float32\[64, 32\] in the "
                                       r"checkpoint vs float32\[96, 32\] in the model"):
    rm.train(c, str(tmp_path), sources=toy_data["sources"], tokenizer=toy_data["tokenizer"])
  assert sorted(os.listdir(tmp_path / "checkpoints")) == before


def test_resume_under_a_changed_config_is_refused_naming_the_fields(toy_data, tmp_path, capsys,
                                                                    monkeypatch):
  from warm_jax import errors
  c = tiny_config()
  c.train.num_steps = 2
  run = lambda c: rm.train(c, str(tmp_path), sources=toy_data["sources"],  # noqa: E731
                           tokenizer=toy_data["tokenizer"])
  run(c)
  before = sorted(os.listdir(tmp_path)), sorted(os.listdir(tmp_path / "checkpoints"))
  # Another RoPE trains the last steps of another function; another seed is another run.
  changed = c.copy_and_resolve_references()
  changed.model.rope_theta, changed.seed, changed.train.num_steps = 500_000.0, 7, 4
  with pytest.raises(errors.InputError) as e:
    run(changed)
  assert "config.model.rope_theta: 10000.0 in the checkpoint vs 500000.0 now" in str(e.value)
  assert "config.seed: 0 in the checkpoint vs 7 now" in str(e.value)
  assert "num_steps" not in str(e.value).split("Fields that may change")[0]
  assert (sorted(os.listdir(tmp_path)), sorted(os.listdir(tmp_path / "checkpoints"))) == before
  # Forced: it resumes and says what changed, which is not what may change on resume (more steps,
  # logging, evaluation and checkpoint cadence, the mesh).
  monkeypatch.setenv(checkpoints.RESUME_CHANGED_CONFIG_ENV, "1")
  forced = c.copy_and_resolve_references()
  forced.seed = 7
  forced.train.update(num_steps=3, log_every=1, eval_every=3, ckpt_every=1, keep=5)
  forced.mesh.shape = (2, 2, 2)
  capsys.readouterr()
  assert run(forced)["step"] == 3
  said = [line for line in capsys.readouterr().out.splitlines() if "under a changed config" in line]
  assert len(said) == 1 and said[0].endswith("config.seed: 0 in the checkpoint vs 7 now"), said


def test_config_changes_leave_out_what_may_change_on_resume():
  c = tiny_config().to_dict()
  other = tiny_config()
  other.train.update(num_steps=9, log_every=1, eval_every=1, eval_batches=0, ckpt_every=1, keep=9,
                     on_nonfinite="skip", eval_splits=("validation",))
  other.mesh.shape = (2, 2, 2)
  other.model.remat = True
  other.data.eval_batch_size = 8
  assert checkpoints.config_changes(c, other.to_dict()) == []
  other.model.qk_norm = False  # a decoder field the saved config lacks: at its default there
  assert checkpoints.config_changes(c, other.to_dict()) == []
  other.optim.lr, other.data.seed, other.model.qkv_bias = 0.5, 3, True
  assert checkpoints.config_changes(c, other.to_dict()) == [
      "config.data.seed: 0 in the checkpoint vs 3 now",
      "config.model.qkv_bias: False in the checkpoint vs True now",
      "config.optim.lr: 0.001 in the checkpoint vs 0.5 now"]


@pytest.mark.parametrize("field,value,match", [
    ("optim.lr", -1e-3, r"config.optim.lr=-0.001: must be positive"),
    ("mesh.shape", (3, 1, 1), r"config.mesh.shape=\(3, 1, 1\) needs 3 devices"),
    ("mesh.axes", ("data", "fsdp", "model"), r"config.sharding.rules: .* mesh axis 'tensor'"),
    ("data.batch_size", 6, r"config.data.batch_size=6 is not a positive multiple of 8"),
    ("model.n_heads", 3, r"config.model.n_heads=3: must be a divisor of d_model .*d_model=32"),
    ("train.num_steps", 0, r"config.train.num_steps=0"),
])
def test_bad_config_fails_before_compute_naming_the_field(field, value, match, toy_data, tmp_path):
  c = tiny_config()
  section, name = field.split(".")
  c[section][name] = value
  with pytest.raises(ValueError, match=match):
    rm.train(c, str(tmp_path), sources=toy_data["sources"], tokenizer=toy_data["tokenizer"])
  assert not os.path.exists(tmp_path / "checkpoints")


def test_tensorboard_events_and_jsonl_are_written(toy_data, tmp_path):
  from warm_jax.train import metrics
  c = tiny_config()
  c.train.num_steps = 2
  rm.train(c, str(tmp_path), sources=toy_data["sources"], tokenizer=toy_data["tokenizer"])
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tb"))
  train_rows = metrics.read_metrics(str(tmp_path), "train")
  assert [r["step"] for r in train_rows] == [2]
  assert {"loss", "accuracy", "margin", "grad_norm", "lr"} <= set(train_rows[0])
  assert [r["step"] for r in metrics.read_metrics(str(tmp_path), "validation")] == [2]


def test_linear_probe_fits_a_head_on_fixed_features():
  rng = np.random.default_rng(0)
  w_true = rng.normal(size=8)
  f_r = rng.normal(size=(200, 8))
  delta = rng.normal(size=(200, 8))
  delta *= np.sign(delta @ w_true)[:, None]  # chosen - rejected always agrees with w_true,
  delta += 0.5 * w_true / np.linalg.norm(w_true)  # with a margin
  w, fit = rm.fit_linear_head(f_r + delta, f_r, steps=200, lr=0.05)
  assert w.shape == (8, 1) and fit["accuracy"] == 1.0
  assert fit["loss"] < np.log(2) / 4  # far below the zero head's log 2
  cos = float(w[:, 0] @ w_true / np.linalg.norm(w) / np.linalg.norm(w_true))
  assert cos > 0.9  # the direction that separates the pairs

