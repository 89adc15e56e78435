"""NaN/Inf in the loss or gradients: the guarded step never lets them into the state; the loop
stops naming the step (on_nonfinite='stop', the last good checkpoint kept) or skips the step
(on_nonfinite='skip', up to max_nonfinite_skips in a row)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest


from conftest import experiment
from warm_jax import checkpoints
from warm_jax.train import loop
from warm_jax.train import reward_model as rm
from warm_jax.train import state as state_lib


def _config(num_steps=8, mode="stop", max_skips=10):
  c = experiment("reward_model").get_config("tiny")
  c.model.vocab_size = 64
  c.mesh.shape = (2, 2, 2)
  c.optim.lr = 1e-3
  c.train.update(num_steps=num_steps, ckpt_every=1, keep=100, eval_every=num_steps, log_every=2,
                 on_nonfinite=mode, max_nonfinite_skips=max_skips)
  return c


def _poison(monkeypatch, bad_steps, what):
  """Makes the RM step produce NaN params ('grads') or an Inf loss ('loss') at the given 1-based
  step numbers of the loop."""
  original = rm.make_train_step

  def make(*args, **kwargs):
    step = original(*args, **kwargs)

    def poisoned(state, batch):
      new, m = step(state, batch)
      bad = jnp.isin(state.step + 1, jnp.asarray(bad_steps))
      if what == "grads":
        new = new.replace(params=jax.tree.map(lambda p: jnp.where(bad, jnp.nan, p), new.params))
      else:
        m = {**m, "loss": jnp.where(bad, jnp.inf, m["loss"])}
      return new, m
    return poisoned
  monkeypatch.setattr(rm, "make_train_step", make)


def _train(c, workdir, toy_data):
  return rm.train(c, str(workdir), sources=toy_data["sources"], tokenizer=toy_data["tokenizer"])


def _params(workdir, step):
  return checkpoints.restore_params(os.path.join(workdir, "checkpoints"), step)


def _assert_trees_equal(a, b):
  jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


def test_guard_keeps_the_state_and_flags_the_step():
  state = state_lib.TrainState(step=jnp.array(3), params={"w": jnp.ones(2)},
                               opt_state={"m": jnp.zeros(2)})

  def step(s, batch):
    new = s.replace(step=s.step + 1, params={"w": s.params["w"] * batch},
                    opt_state={"m": s.opt_state["m"] + 1})
    return new, {"loss": jnp.sum(new.params["w"])}
  guarded = jax.jit(state_lib.guard_nonfinite(step))
  new, m = guarded(state, jnp.float32(2.0))
  assert float(m["nonfinite"]) == 0.0 and new.params["w"].tolist() == [2.0, 2.0]
  new, m = guarded(state, jnp.float32(np.nan))
  assert float(m["nonfinite"]) == 1.0 and int(new.step) == 4
  assert new.params["w"].tolist() == [1.0, 1.0] and new.opt_state["m"].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("what", ["grads", "loss"])
def test_stop_names_the_step_and_keeps_the_last_good_checkpoint(toy_data, tmp_path, monkeypatch,
                                                                 what):
  clean = tmp_path / "clean"
  _train(_config(), clean, toy_data)
  _poison(monkeypatch, [5], what)
  with pytest.raises(loop.NonFiniteError, match="non-finite loss or gradients at step 5"):
    _train(_config(), tmp_path / "bad", toy_data)
  steps = checkpoints.complete_steps(str(tmp_path / "bad" / "checkpoints"))
  assert max(steps) == 4, steps  # nothing at or after the bad step was saved
  _assert_trees_equal(_params(tmp_path / "bad", 4), _params(clean, 4))


def test_skip_leaves_the_state_unchanged_and_goes_on(toy_data, tmp_path, monkeypatch):
  _poison(monkeypatch, [3, 6], "grads")
  out = _train(_config(mode="skip"), tmp_path, toy_data)
  assert out["skipped_steps"] == [3, 6] and out["step"] == 8
  _assert_trees_equal(_params(tmp_path, 3), _params(tmp_path, 2))
  _assert_trees_equal(_params(tmp_path, 6), _params(tmp_path, 5))
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(_params(tmp_path, 8)))
  with open(tmp_path / "metrics.jsonl") as f:
    train = [r for r in map(json.loads, f) if r["split"] == "train"]
  assert {r["step"]: r["nonfinite"] for r in train} == {2: 0.0, 4: 1.0, 6: 1.0, 8: 0.0}
  assert all(np.isfinite(r["loss"]) for r in train)


def test_skip_stops_after_too_many_in_a_row(toy_data, tmp_path, monkeypatch):
  _poison(monkeypatch, [3, 4, 5], "loss")
  with pytest.raises(loop.NonFiniteError, match="at step 5 .*max_nonfinite_skips=2"):
    _train(_config(mode="skip", max_skips=2), tmp_path, toy_data)
