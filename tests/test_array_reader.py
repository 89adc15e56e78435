"""array_reader: direct reads of OCDBT/zarr3 chunks equal the saved arrays (dtypes, scalars, inline
and out-of-line chunks, sharded targets, checkpoints saved from sharded arrays), a bad index or a
short file is never read silently, and the two host buffers are reused."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from warm_jax import checkpoints
from warm_jax.averaging import array_reader

PARAMS = {
    "big": np.arange(300 * 8, dtype=np.float32).reshape(300, 8) / 7,   # > 1 KiB: out of line
    "bf": (np.arange(64 * 4).reshape(64, 4) / 3).astype(jnp.bfloat16),
    "ints": np.arange(48, dtype=np.int32).reshape(8, 6),
    "scalar": np.float32(3.5),
    "tiny": np.array([1.0, -2.0, 0.25], np.float32),                  # inline in the B+tree
    "zeros": np.zeros((5, 3), np.float32),
    "nested": {"w": np.linspace(-1, 1, 16 * 6, dtype=np.float32).reshape(16, 6)},
}


def _item(path):
  return os.path.join(path, "0", checkpoints.PARAMS)


def _flat(tree):
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return [tuple(getattr(k, "key", k) for k in p) for p, _ in flat], [v for _, v in flat]


def _read(path, target, **kw):
  keys, abstract = _flat(target)
  with array_reader.ArrayReader(**kw) as reader:
    arrays = [np.asarray(x) for x in reader.finish(reader.start(_item(path), keys, abstract))]
    return dict(zip(keys, arrays)), dict(reader.stats)


def _targets(params, sharding_of):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype,
                                                     sharding=sharding_of(np.shape(x))), params)


def test_crc32c_matches_the_standard_check_value():
  assert array_reader.crc32c(b"123456789") == 0xE3069283
  assert array_reader.crc32c(b"") == 0


@pytest.mark.parametrize("layout", ["one device", "rows x columns over 8", "replicated over 8"])
def test_direct_reads_equal_the_saved_arrays(tmp_path, layout):
  path = str(tmp_path / "ckpt")
  checkpoints.save_params(path, PARAMS, {})
  mesh = Mesh(np.array(jax.devices()[:8]).reshape(4, 2), ("r", "c"))
  if layout == "one device":
    def sharding_of(shape):
      return jax.sharding.SingleDeviceSharding(jax.devices()[0])
  elif layout == "rows x columns over 8":
    def sharding_of(shape):  # rows over 4 devices, columns over 2 (where they divide): each
      axes = [a if n % mesh.shape[a] == 0 else None for a, n in zip(("r", "c"), shape)]
      return NamedSharding(mesh, P(*axes))  # device gets a strided view of the rows read
  else:
    def sharding_of(shape):
      return NamedSharding(mesh, P())
  target = _targets(PARAMS, sharding_of)
  got, stats = _read(path, target)
  keys, want = _flat(PARAMS)
  for k, w in zip(keys, want):
    assert got[k].dtype == np.asarray(w).dtype, k
    np.testing.assert_array_equal(got[k], np.asarray(w), err_msg=str(k))
  assert stats == {"direct": len(keys), "tensorstore": 0}
  # The same through tensorstore, and the sharded arrays on their target shardings.
  via_ts, stats = _read(path, target, direct=False)
  assert stats == {"direct": 0, "tensorstore": len(keys)}
  for k in keys:
    np.testing.assert_array_equal(via_ts[k], got[k])


def test_shard_by_shard_reads_equal_the_saved_arrays(tmp_path, monkeypatch):
  # A host of a multi-host mesh that holds a few columns reads its shards one by one; with one
  # process every shard is local, so that path is forced here.
  path = str(tmp_path / "ckpt")
  checkpoints.save_params(path, PARAMS, {})
  mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("r", "c"))

  def sharding_of(shape):
    axes = [a if n % mesh.shape[a] == 0 else None for a, n in zip(("r", "c"), shape)]
    return NamedSharding(mesh, P(*axes))
  target = _targets(PARAMS, sharding_of)
  assert not any(array_reader._by_shard(a) for a in jax.tree.leaves(target))  # one host: rows
  monkeypatch.setattr(array_reader, "_by_shard", lambda a: bool(a.shape))
  got, stats = _read(path, target)
  keys, want = _flat(PARAMS)
  for k, w in zip(keys, want):
    np.testing.assert_array_equal(got[k], np.asarray(w), err_msg=str(k))
  assert stats == {"direct": 1, "tensorstore": len(keys) - 1}  # the scalar is read directly


def test_checkpoints_saved_from_sharded_arrays_read_directly_or_by_tensorstore(tmp_path):
  mesh = Mesh(np.array(jax.devices()[:8]), ("x",))
  x = np.arange(16 * 24, dtype=np.float32).reshape(16, 24)
  params = {"by_rows": jax.device_put(x, NamedSharding(mesh, P("x", None))),
            "by_cols": jax.device_put(x + 1, NamedSharding(mesh, P(None, "x")))}
  path = str(tmp_path / "ckpt")
  checkpoints.save_params(path, params, {})
  target = _targets({"by_rows": x, "by_cols": x}, lambda shape: NamedSharding(mesh, P("x", None)))
  got, stats = _read(path, target)
  np.testing.assert_array_equal(got[("by_rows",)], x)
  np.testing.assert_array_equal(got[("by_cols",)], x + 1)
  # Chunks of whole rows are read directly; chunks that split the columns go to tensorstore.
  assert stats == {"direct": 1, "tensorstore": 1}


def _value_range(path, name):
  located = array_reader.locate(_item(path))
  return located[f"{name}/c/0/0"]


def test_a_corrupt_shard_index_is_never_used(tmp_path):
  path = str(tmp_path / "ckpt")
  checkpoints.save_params(path, {"big": PARAMS["big"]}, {})
  data_file, offset, length = _value_range(path, "big")
  with open(data_file, "r+b") as f:  # flip a bit of the index's crc32c (its last 4 bytes)
    f.seek(offset + length - 1)
    b = f.read(1)
    f.seek(offset + length - 1)
    f.write(bytes([b[0] ^ 1]))
  target = _targets({"big": PARAMS["big"]}, lambda shape: jax.sharding.SingleDeviceSharding(jax.devices()[0]))
  # The direct read rejects the index and hands the array to tensorstore, which refuses it too.
  with pytest.raises(Exception, match="DATA_LOSS.*[Dd]igest mismatch"):
    _read(path, target)


def test_a_short_data_file_is_an_error_naming_it(tmp_path):
  path = str(tmp_path / "ckpt")
  checkpoints.save_params(path, {"big": PARAMS["big"]}, {})
  data_file, offset, length = _value_range(path, "big")
  os.truncate(data_file, offset + length // 2)
  target = _targets({"big": PARAMS["big"]}, lambda shape: jax.sharding.SingleDeviceSharding(jax.devices()[0]))
  with pytest.raises(EOFError, match=os.path.basename(data_file)):
    _read(path, target)


def test_a_target_of_another_shape_or_dtype_is_refused_by_name(tmp_path):
  path = str(tmp_path / "ckpt")
  checkpoints.save_params(path, PARAMS, {})
  dev = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  for direct in (True, False):
    with array_reader.ArrayReader(direct=direct) as reader:
      wrong = jax.ShapeDtypeStruct((5, 4), np.float32, sharding=dev)
      with pytest.raises(ValueError, match=r"nested/w is float32\[16, 6\] on disk, the target "
                                           r"wants float32\[5, 4\]"):
        reader.finish(reader.start(_item(path), [("nested", "w")], [wrong]))
      wrong = jax.ShapeDtypeStruct((64, 4), np.float32, sharding=dev)
      with pytest.raises(ValueError, match=r"bf is bfloat16\[64, 4\] on disk"):
        reader.finish(reader.start(_item(path), [("bf",)], [wrong]))


def test_two_buffers_are_reused_and_cpu_arrays_are_views_of_them(tmp_path):
  paths = []
  for i in range(4):
    paths.append(str(tmp_path / f"c{i}"))
    checkpoints.save_params(paths[-1], {"big": PARAMS["big"] + i}, {})
  dev = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  a = jax.ShapeDtypeStruct(PARAMS["big"].shape, np.float32, sharding=dev)
  with array_reader.ArrayReader() as reader:
    pointers, held = set(), []
    for i, p in enumerate(paths):
      (x,) = reader.finish(reader.start(_item(p), [("big",)], [a]))
      np.testing.assert_array_equal(np.asarray(x), PARAMS["big"] + i)
      pointers.add(x.unsafe_buffer_pointer())
      held.append(x)
    assert len(pointers) == 2  # alternating between the two arenas: nothing allocated per read
    assert reader.buffer_bytes == 2 * array_reader._round_up(PARAMS["big"].nbytes)
    # The contract: a finish's arrays are overwritten by the start after next.
    np.testing.assert_array_equal(np.asarray(held[0]), PARAMS["big"] + 2)
