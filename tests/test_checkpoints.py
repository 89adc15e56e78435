import os

import jax.numpy as jnp
import numpy as np
import pytest

from warm_jax import checkpoints


def _params(d=4):
  return {"layer": {"w": jnp.arange(d * 2, dtype=jnp.float32).reshape(d, 2), "b": jnp.ones((2,))}}


def test_params_checkpoint_roundtrip_and_metadata(tmp_path):
  checkpoints.save_params(str(tmp_path / "ck"), _params(), {"note": "x"})
  restored = checkpoints.restore_params(str(tmp_path / "ck"))
  np.testing.assert_array_equal(restored["layer"]["w"], _params()["layer"]["w"])
  meta = checkpoints.read_meta(str(tmp_path / "ck"))
  assert meta["note"] == "x" and "version" in meta
  assert tuple(checkpoints.params_metadata(str(tmp_path / "ck"))["layer"]["w"].shape) == (4, 2)


def test_save_params_refuses_to_overwrite(tmp_path):
  checkpoints.save_params(str(tmp_path / "ck"), _params(), {})
  with pytest.raises(FileExistsError, match="refusing to overwrite"):
    checkpoints.save_params(str(tmp_path / "ck"), _params(), {})


def test_missing_and_half_written_checkpoints_are_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="no checkpoint directory"):
    checkpoints.restore_params(str(tmp_path / "nope"))
  # What a save killed mid-way leaves: a temporary step directory, never a complete step.
  half = tmp_path / "half"
  os.makedirs(half / "3.orbax-checkpoint-tmp-123" / "params")
  with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
    checkpoints.restore_params(str(half))


def test_restore_into_a_mismatched_target_names_the_path(tmp_path):
  import jax
  checkpoints.save_params(str(tmp_path / "ck"), _params(), {})
  target = jax.eval_shape(lambda: _params(d=5))
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                       sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0])),
                        target)
  with pytest.raises(ValueError, match=r"layer/w: float32\[4, 2\] in the checkpoint vs "
                                       r"float32\[5, 2\] in the model"):
    checkpoints.restore_params(str(tmp_path / "ck"), target=target)


def test_restore_can_leave_out_named_parameter_groups(tmp_path):
  import jax
  one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  checkpoints.save_params(str(tmp_path / "ck"), {**_params(), "value_head": {"b": jnp.ones((1,))}}, {})
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=one), _params())
  with pytest.raises(ValueError, match="value_head/b: float32\\[1\\] in the checkpoint, missing"):
    checkpoints.restore_params(str(tmp_path / "ck"), target=target)
  out = checkpoints.restore_params(str(tmp_path / "ck"), target=target, skip=("value_head",))
  assert set(out) == {"layer"}
  np.testing.assert_array_equal(out["layer"]["w"], _params()["layer"]["w"])


def test_first_mismatch_reports_missing_and_dtype():
  a = {"x": np.zeros((2,), np.float32), "y": np.zeros((1,), np.float32)}
  assert checkpoints.first_mismatch(a, a) is None
  assert "y: float32[1] in the checkpoint, missing in the model" in checkpoints.first_mismatch(
      a, {"x": a["x"]})
  b = {"x": np.zeros((2,), np.float16), "y": a["y"]}
  assert checkpoints.first_mismatch(a, b).startswith("x: float32[")
  assert "in the checkpoint vs float16[" in checkpoints.first_mismatch(a, b)


def test_complete_steps_lists_finished_steps_only(tmp_path):
  assert checkpoints.complete_steps(str(tmp_path / "none")) == []
  params = {"w": np.ones((2,), np.float32)}
  checkpoints.save_params(str(tmp_path / "a"), params, {"x": 1}, step=7)
  assert checkpoints.complete_steps(str(tmp_path / "a")) == [7]
  os.makedirs(tmp_path / "b" / "3.orbax-checkpoint-tmp-1")  # an interrupted save
  assert checkpoints.complete_steps(str(tmp_path / "b")) == []
