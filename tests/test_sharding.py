import jax
import pytest
from jax.sharding import PartitionSpec as P

from warm_jax import configs
from warm_jax import sharding as shd


def test_mesh_minus_one_takes_the_rest():
  mesh = shd.make_mesh(("data", "fsdp", "tensor"), (-1, 2, 1))
  assert dict(mesh.shape) == {"data": 4, "fsdp": 2, "tensor": 1}
  assert jax.device_count() == 8


@pytest.mark.parametrize("shape,match", [
    ((3, 1, 1), "needs 3 devices but 8"),
    ((-1, 3, 1), "do not divide the 8"),
    ((-1, -1, 1), "at most one -1"),
    ((2, 2), "has 2 entries"),
])
def test_bad_mesh_shapes_name_the_field(shape, match):
  with pytest.raises(ValueError, match=match) as e:
    shd.make_mesh(("data", "fsdp", "tensor"), shape)
  assert "config.mesh" in str(e.value)


def test_rule_naming_unknown_mesh_axis_is_rejected():
  mesh = shd.make_mesh(("data", "fsdp", "tensor"), (-1, 1, 1))
  rules = configs.DEFAULT_RULES + (("experts", "expert"),)
  with pytest.raises(ValueError, match=r"config.sharding.rules.*'experts'.*'expert'"):
    shd.validate_rules(rules, mesh)


def test_indivisible_dimension_is_replicated_not_padded():
  mesh = shd.make_mesh(("data", "fsdp", "tensor"), (2, 2, 2))
  rules = configs.DEFAULT_RULES
  assert shd.spec_for(("embed", "mlp"), (32, 64), mesh, rules) == P("fsdp", "tensor")
  assert shd.spec_for(("embed", "mlp"), (32, 63), mesh, rules) == P("fsdp", None)
  assert shd.spec_for(("embed", "scalar"), (32, 1), mesh, rules) == P("fsdp", None)


def test_batch_size_must_divide_batch_axes():
  mesh = shd.make_mesh(("data", "fsdp", "tensor"), (2, 2, 2))
  shd.check_batch_size(8, mesh, configs.DEFAULT_RULES, "config.data.batch_size")
  with pytest.raises(ValueError, match=r"config.data.batch_size=6 is not a positive multiple of 4"):
    shd.check_batch_size(6, mesh, configs.DEFAULT_RULES, "config.data.batch_size")


def test_to_global_shards_batch_over_data_axes():
  import numpy as np
  mesh = shd.make_mesh(("data", "fsdp", "tensor"), (2, 2, 2))
  sharding = shd.batch_sharding(mesh, configs.DEFAULT_RULES)
  out = shd.to_global({"x": np.arange(16).reshape(8, 2)}, sharding)["x"]
  assert out.shape == (8, 2)
  assert out.sharding.spec == P(("data", "fsdp"))
  assert {s.data.shape for s in out.addressable_shards} == {(2, 2)}
  np.testing.assert_array_equal(np.asarray(out), np.arange(16).reshape(8, 2))
