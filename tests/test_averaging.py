"""Weight averaging (WARM): in-memory average, float32 accumulation, sharding kept, sweeps,
streaming over checkpoints == in-memory, validation before any write, interruption, CLI, ENS."""

import os
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest


from conftest import experiment
from warm_jax import average as average_cli
from warm_jax import averaging, checkpoints, ensemble, errors
from warm_jax.averaging import array_reader
from warm_jax.models import RewardModel
from warm_jax.train import reward_model as rm


def tiny_config(mesh_shape=(-1, 1, 1), **model):
  c = experiment("reward_model").get_config("tiny")
  c.model.vocab_size = 64
  c.mesh.shape = mesh_shape
  c.model.update(model)
  return c


def rm_params(config, seed, sharded_setup=None):
  """Random tiny-RM params (host numpy) of the model's shapes (no init compile: fast)."""
  model = RewardModel(config.model)
  dummy = jnp.ones((1, config.data.max_len), jnp.int32)
  shapes = nn.unbox(jax.eval_shape(lambda: model.init(jax.random.key(0), dummy)["params"]))
  rng = np.random.default_rng(seed)
  p = jax.tree.map(lambda x: (0.3 * rng.standard_normal(x.shape)).astype(x.dtype), shapes)
  if sharded_setup is not None:
    p = jax.device_put(p, sharded_setup.shardings.params)
  return p


def save_run(path, config, params, **extra):
  checkpoints.save_params(str(path), params, {"config": config.to_dict(), **extra})
  return str(path)


def close(a, b, **kw):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x, np.float32),
                                                       np.asarray(y, np.float32), **kw), a, b)


# ------------------------------------------------------------------------------- in memory


def test_average_weights_uniform_normalised_and_unnormalised():
  trees = [{"w": np.full((2, 3), float(i), np.float32), "b": {"c": np.array([i], np.float32)}}
           for i in range(3)]
  close(averaging.average(trees), {"w": np.full((2, 3), 1.0), "b": {"c": [1.0]}})
  close(averaging.average(trees, [1, 0, 3]), {"w": np.full((2, 3), 1.5), "b": {"c": [1.5]}})
  # Task arithmetic: base + 2 * (t2 - t1), weights used as given.
  close(averaging.average(trees, [1, -2, 2], normalize=False),
        {"w": np.full((2, 3), 2.0), "b": {"c": [2.0]}})
  close(averaging.interpolate(trees[0], trees[2], 0.25), {"w": np.full((2, 3), 0.5), "b": {"c": [0.5]}})


def test_bfloat16_leaves_accumulate_in_float32_and_cast_back():
  big, one = jnp.full((4,), 256.0, jnp.bfloat16), jnp.ones((4,), jnp.bfloat16)
  out = averaging.average([{"x": big}, {"x": one}, {"x": one}, {"x": one}], [1, 1, 1, 1],
                          normalize=False)
  assert out["x"].dtype == jnp.bfloat16
  # float32: 259 -> rounds to bf16 260; a bfloat16 running sum would stay at 256 (256 + 1 = 256).
  np.testing.assert_array_equal(np.asarray(out["x"], np.float32), 260.0)
  mean = averaging.average([{"x": big}, {"x": one}, {"x": one}, {"x": one}])
  np.testing.assert_array_equal(np.asarray(mean["x"], np.float32), 65.0)  # 64.75 -> bf16 65


def test_sharded_average_keeps_shardings_on_a_2x2x2_mesh():
  config = tiny_config((2, 2, 2))
  setup = rm.build(config)
  trees = [rm_params(config, s, setup) for s in range(3)]
  out = averaging.average(trees, [0.2, 0.3, 0.5])
  jax.tree.map(lambda o, i: (o.sharding == i.sharding) or pytest.fail(f"{o.sharding} != {i.sharding}"),
               out, trees[0])
  q = out["decoder"]["block_0"]["attn"]["query"]
  assert q.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor", None)
  assert q.addressable_shards[0].data.shape == (q.shape[0] // 2, q.shape[1] // 2, q.shape[2])
  host = [jax.device_get(t) for t in trees]
  expect = jax.tree.map(lambda a, b, c: 0.2 * a + 0.3 * b + 0.5 * c, *host)
  close(out, expect, rtol=1e-6, atol=1e-6)


def test_mismatches_name_the_path_and_both_values():
  a = {"layer": {"w": np.zeros((2, 3), np.float32), "b": np.zeros((3,), np.float32)}}
  with pytest.raises(ValueError, match=r"layer/w: float32\[2, 3\] in tree 0 vs float32\[3, 2\] in tree 1"):
    averaging.average([a, {"layer": {"w": np.zeros((3, 2), np.float32), "b": a["layer"]["b"]}}])
  with pytest.raises(ValueError, match=r"layer/b: float32\[3\] in tree 0 vs bfloat16\[3\] in tree 1"):
    averaging.average([a, {"layer": {"w": a["layer"]["w"], "b": jnp.zeros((3,), jnp.bfloat16)}}])
  with pytest.raises(ValueError, match=r"layer/b: float32\[3\] in tree 0, missing in tree 2"):
    averaging.average([a, a, {"layer": {"w": a["layer"]["w"]}}])
  with pytest.raises(ValueError, match="list of models is empty"):
    averaging.average([])
  with pytest.raises(ValueError, match="got 3 weights for 2 models"):
    averaging.average([a, a], [1, 2, 3])
  with pytest.raises(ValueError, match="non-negative.*weight 1 is negative"):
    averaging.average([a, a], [1, -1])
  with pytest.raises(ValueError, match="all zero"):
    averaging.average([a, a], [0, 0])
  with pytest.raises(TypeError, match="step in tree 0: dtype int32 is not a floating-point type"):
    averaging.average([{"step": np.zeros((), np.int32)}] * 2)


def test_grids_and_sweeps_compile_once():
  grid = averaging.simplex_grid(3, 4)
  assert grid.shape == (15, 3) and np.allclose(grid.sum(1), 1) and (grid >= 0).all()
  assert len({tuple(r) for r in grid}) == 15 and (grid[:3] == np.eye(3)).all()
  np.testing.assert_allclose(averaging.simplex_grid(2, 4)[:, 1], [0, 1, 0.25, 0.5, 0.75])
  assert list(averaging.lambda_grid(5)) == [0, 0.25, 0.5, 0.75, 1]

  trees = [{"w": jnp.full((3,), float(i))} for i in range(3)]
  traces = []

  def eval_fn(params, scale):
    traces.append(1)
    return {"sum": scale * jnp.sum(params["w"])}

  out = averaging.sweep(trees, grid, eval_fn, jnp.float32(2.0))
  assert len(traces) == 1 and len(out) == 15
  for w, o in zip(grid, out):
    np.testing.assert_allclose(o["sum"], 2 * 3 * (w @ np.arange(3.0)), rtol=1e-6)
  curve = averaging.interpolation_sweep(trees[0], trees[2], [-0.5, 0.0, 0.5, 1.0], eval_fn, 1.0)
  np.testing.assert_allclose([c["sum"] for c in curve], [-3.0, 0.0, 3.0, 6.0], atol=1e-6)
  with pytest.raises(ValueError, match="one column per model"):
    averaging.sweep(trees, np.ones((2, 2)), eval_fn, 1.0)


# ------------------------------------------------------------------------------- streaming


@pytest.fixture
def three_runs(tmp_path):
  config = tiny_config()
  runs = []
  for s in range(3):
    c = tiny_config(dropout_rate=0.1 * s)  # training-only field: may differ
    runs.append(save_run(tmp_path / f"run{s}", c, rm_params(config, s)))
  return config, runs


def test_streaming_average_matches_in_memory_and_keeps_target_shardings(three_runs, tmp_path):
  config, runs = three_runs
  setup = rm.build(tiny_config((2, 2, 2)))
  target = rm.abstract_state(setup).params
  weights = [1.0, 2.0, 1.0]
  reads = []
  params, meta = averaging.average_checkpoints(
      runs, weights, target=target, out=str(tmp_path / "avg"), group_bytes=8 << 10,
      on_read=lambda i, src, s: reads.append(i))  # small groups: many partial restores
  assert reads == [0, 1, 2]
  jax.tree.map(lambda p, t: (p.sharding == t.sharding) or pytest.fail(str(p.sharding)), params, target)
  in_memory = averaging.average([checkpoints.restore_params(r) for r in runs], weights)
  close(params, in_memory, rtol=1e-6, atol=1e-7)
  # The output is a regular checkpoint with the sources, weights, fingerprint and config.
  saved = checkpoints.read_meta(str(tmp_path / "avg"))
  assert saved["paths"] == [os.path.abspath(r) for r in runs] and saved["steps"] == [0, 0, 0]
  assert saved["weights"] == [0.25, 0.5, 0.25] and saved["model_fingerprint"] == meta["model_fingerprint"]
  assert saved["config"]["model"]["d_model"] == config.model.d_model and "version" in saved
  assert saved["sources"][1] == {"path": os.path.abspath(runs[1]), "step": 0, "weight": 0.5}
  close(checkpoints.restore_params(str(tmp_path / "avg"), target=target), params)
  # An average can itself be averaged (same fingerprint: dropout is not architecture).
  again, m2 = averaging.average_checkpoints([str(tmp_path / "avg"), runs[0]])
  assert m2["model_fingerprint"] == meta["model_fingerprint"]


def test_streaming_bfloat16_checkpoints_sum_in_float32(tmp_path):
  big, one = np.full((4,), 256.0, jnp.bfloat16), np.ones((4,), jnp.bfloat16)
  paths = [str(tmp_path / f"b{i}") for i in range(4)]
  for p, x in zip(paths, [big, one, one, one]):
    checkpoints.save_params(p, {"x": x}, {})
  params, meta = averaging.average_checkpoints(paths, out=str(tmp_path / "avg"))
  assert params["x"].dtype == jnp.bfloat16 and meta["model_fingerprint"] is None
  np.testing.assert_array_equal(np.asarray(params["x"], np.float32), 65.0)  # 64.75 -> bf16 65
  restored = checkpoints.restore_params(str(tmp_path / "avg"))
  assert restored["x"].dtype == jnp.bfloat16


def test_zero_weight_checkpoint_is_validated_but_not_read(three_runs, monkeypatch):
  _, runs = three_runs
  read = []
  orig = array_reader.ArrayReader.start
  monkeypatch.setattr(array_reader.ArrayReader, "start",
                      lambda self, d, *a, **k: read.append(d) or orig(self, d, *a, **k))
  params, _ = averaging.average_checkpoints(runs, [0, 1, 0])
  assert read == [os.path.join(os.path.abspath(runs[1]), "0", "params")]
  close(params, checkpoints.restore_params(runs[1]))
  # An unnormalised all-zero combination reads nothing and is zero (with each leaf's dtype).
  read.clear()
  params, _ = averaging.average_checkpoints(runs, [0, 0, 0], normalize=False)
  assert read == []
  jax.tree.map(lambda p, r: (p.dtype == r.dtype and not np.any(np.asarray(p)))
               or pytest.fail(str(p)), params, checkpoints.restore_params(runs[1]))


def test_direct_tensorstore_and_orbax_reads_agree_on_a_sharded_target(three_runs, monkeypatch):
  _, runs = three_runs
  item = os.path.join(os.path.abspath(runs[0]), "0", "params")
  assert array_reader.ArrayReader.supports(item)  # what array_handler writes
  target = rm.abstract_state(rm.build(tiny_config((2, 2, 2)))).params
  used = []
  close_ = array_reader.ArrayReader.close
  monkeypatch.setattr(array_reader.ArrayReader, "close",
                      lambda self: used.append(dict(self.stats)) or close_(self))
  direct, _ = averaging.average_checkpoints(runs, [1, 2, 3], target=target, group_bytes=8 << 10)
  n_leaves = len(jax.tree.leaves(target))
  assert used[-1] == {"direct": 3 * n_leaves, "tensorstore": 0}  # every array read directly
  init = array_reader.ArrayReader.__init__
  monkeypatch.setattr(array_reader.ArrayReader, "__init__",
                      lambda self, **kw: init(self, direct=False, **kw))
  via_ts, _ = averaging.average_checkpoints(runs, [1, 2, 3], target=target, group_bytes=8 << 10)
  assert used[-1] == {"direct": 0, "tensorstore": 3 * n_leaves}
  monkeypatch.setattr(array_reader.ArrayReader, "supports", staticmethod(lambda d: False))
  via_orbax, _ = averaging.average_checkpoints(runs, [1, 2, 3], target=target, group_bytes=8 << 10)
  for other in (via_ts, via_orbax):
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
                 direct, other)
  jax.tree.map(lambda a, b: (a.sharding == b.sharding) or pytest.fail(str(a.sharding)), direct, target)


def test_prefetch_asks_the_kernel_for_the_ranges_a_read_reads(three_runs, monkeypatch):
  # prefetch(...) advises WILLNEED on exactly the file ranges that start(...) with the same
  # arguments then reads (whole arrays and row blocks), and only for items already located
  _, runs = three_runs
  item = os.path.join(os.path.abspath(runs[0]), "0", "params")
  flat = jax.tree_util.tree_flatten_with_path(checkpoints.restore_params(runs[0]))[0]
  dev = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  keys = [tuple(getattr(k, "key", k) for k in p) for p, _ in flat]
  abstract = [jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=dev) for _, x in flat]
  rows = [(1, 2) if len(a.shape) == 2 and a.shape[0] > 1 else None for a in abstract]
  advised, read = [], []
  fadvise, preadv = os.posix_fadvise, os.preadv
  monkeypatch.setattr(os, "posix_fadvise", lambda fd, off, n, how: advised.append(
      (os.readlink(f"/proc/self/fd/{fd}"), off, n)) or fadvise(fd, off, n, how))
  monkeypatch.setattr(os, "preadv", lambda fd, bufs, off: read.append(
      (os.readlink(f"/proc/self/fd/{fd}"), off, sum(map(len, bufs)))) or preadv(fd, bufs, off))
  with array_reader.ArrayReader() as reader:
    reader.prefetch(item, keys, abstract, rows).result()
    assert advised == []  # not located yet: nothing to advise
    reader.finish(reader.start(item, keys, abstract, rows=rows))
    data = sorted(r for r in read if r[2] > array_reader._INDEX_BYTES)  # not the shard indexes
    reader.prefetch(item, keys, abstract, rows).result()
  # one call per run of ranges of a file at most a page apart, covering every range read
  assert advised and len(advised) <= len(data)
  for path, off, n in data:
    assert any(p == path and o <= off and off + n <= o + m for p, o, m in advised), (path, off)
  assert sum(m for _, _, m in advised) < 2 * sum(n for _, _, n in data) + 4096 * len(advised)


def test_read_loop_overlaps_reads_prefetches_ahead_and_skips_unneeded_reads():
  # the next read starts before this take; the d-th disk read's start asks for disk reads
  # d + 1 and d + 2; a read not needed when its turn comes is never started
  events = []
  disk = [lambda d=d: events.append(("prefetch", d)) for d in range(4)]

  def read(name, d=None, needed=None):
    return averaging.stream.Read(lambda: events.append(("start", name)) or name,
                                 lambda pending: pending, lambda v: events.append(("take", v)),
                                 None if d is None else disk[d], needed)

  reads = [read("a", 0), read("b", 1), read("x", needed=lambda: False), read("c"),
           read("d", 2), read("e", 3)]
  averaging.stream.read_loop(iter(reads), disk)
  assert events == [("prefetch", 1), ("prefetch", 2), ("start", "a"), ("prefetch", 3),
                    ("start", "b"), ("take", "a"), ("start", "c"), ("take", "b"),
                    ("start", "d"), ("take", "c"), ("start", "e"), ("take", "d"), ("take", "e")]


def _bad_cases(tmp_path, runs):
  wide = save_run(tmp_path / "wide", tiny_config(d_model=64), rm_params(tiny_config(d_model=64), 0))
  p = rm_params(tiny_config(), 0)
  p["reward_head"]["bias"] = jnp.zeros((2,), jnp.float32)
  tampered = save_run(tmp_path / "tampered", tiny_config(), p)
  half = tmp_path / "half"
  os.makedirs(half / "4.orbax-checkpoint-tmp-99" / "params")
  taken = save_run(tmp_path / "taken", tiny_config(), rm_params(tiny_config(), 0))
  return [
      (dict(paths=[]), ValueError, "no checkpoint paths"),
      (dict(paths=runs, weights=[1, 2]), ValueError, "got 2 weights for 3 models"),
      (dict(paths=runs, weights=[1, -1, 1]), ValueError, "non-negative"),
      (dict(paths=runs, weights=[0, 0, 0]), ValueError, "all zero"),
      (dict(paths=[runs[0], str(tmp_path / "nope")]), FileNotFoundError, "does not exist"),
      (dict(paths=[runs[0], str(half)]), FileNotFoundError, "no complete checkpoint"),
      (dict(paths=[runs[0], runs[1]], steps=[0, 7]), FileNotFoundError, "step 7"),
      (dict(paths=[runs[0], wide]), ValueError, r"config.model.d_model: 32 in checkpoint 0 .* vs 64"),
      (dict(paths=[runs[0], tampered]), ValueError,
       r"reward_head/bias: float32\[1\] in checkpoint 0 .* vs float32\[2\] in checkpoint 1"),
      (dict(paths=runs, out=taken), FileExistsError, "already holds a checkpoint"),
  ]


def test_bad_inputs_fail_before_anything_is_read_or_written(three_runs, tmp_path, monkeypatch):
  _, runs = three_runs
  cases = _bad_cases(tmp_path, runs)

  def no_read(*a, **k):
    raise AssertionError("a checkpoint was read before validation finished")
  monkeypatch.setattr(checkpoints, "restore_params", no_read)
  monkeypatch.setattr(averaging.stream, "_restore_item", no_read)
  for i, (kw, exc, msg) in enumerate(cases):
    out = kw.pop("out", str(tmp_path / f"out{i}"))
    with pytest.raises(exc, match=msg):
      averaging.average_checkpoints(kw.pop("paths"), kw.pop("weights", None), out=out, **kw)
    if not out.endswith("taken"):
      assert not os.path.exists(out), f"case {i} wrote {out}"


def test_interrupted_average_never_leaves_a_complete_checkpoint(three_runs, tmp_path, monkeypatch):
  _, runs = three_runs
  out = str(tmp_path / "avg")
  # 1) Killed while reading the sources: nothing has been written.
  orig = array_reader.ArrayReader.start
  calls = []

  def flaky(*a, **k):
    calls.append(1)
    if len(calls) == 2:
      raise KeyboardInterrupt("interrupted while reading")
    return orig(*a, **k)
  monkeypatch.setattr(array_reader.ArrayReader, "start", flaky)
  with pytest.raises(KeyboardInterrupt):
    averaging.average_checkpoints(runs, out=out)
  assert not os.path.exists(out)
  monkeypatch.setattr(array_reader.ArrayReader, "start", orig)

  # 2) Killed in the middle of the save, after the arrays were written: orbax's temporary
  #    directory is never renamed into a step, so no complete checkpoint exists.
  def fail_meta(self, *a, **k):
    raise RuntimeError("killed mid-save")
  for name in ("save", "async_save"):
    monkeypatch.setattr(ocp.JsonCheckpointHandler, name, fail_meta)
  with pytest.raises(RuntimeError, match="mid-save"):
    averaging.average_checkpoints(runs, out=out)
  monkeypatch.undo()
  with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
    checkpoints.read_meta(out)
  assert not checkpoints.complete_steps(out)
  # A retry into the same directory succeeds (the leftover temporary directory is cleaned up).
  averaging.average_checkpoints(runs, out=out)
  assert checkpoints.read_meta(out)["weights"] == pytest.approx([1 / 3] * 3)


def test_cli_averages_and_rejects_bad_input(three_runs, tmp_path, capsys):
  _, runs = three_runs
  out = str(tmp_path / "cli")
  rc = average_cli.main(["--ckpt", runs[0], "--ckpt", runs[1] + "@0", "--weights", "1", "3",
                         "--out", out])
  assert rc == 0
  err = capsys.readouterr().err
  assert err.count("averaging 1/2") == 1 and "averaging 2/2" in err and "eta" in err
  assert checkpoints.read_meta(out)["weights"] == [0.25, 0.75]
  rc = average_cli.main(["--ckpt", runs[0], "--ckpt", runs[1], "--weights", "1", "--out",
                         str(tmp_path / "cli2")])
  assert rc == 2 and "got 1 weights for 2 models" in capsys.readouterr().err
  assert not os.path.exists(tmp_path / "cli2")
  rc = average_cli.main(["--ckpt", runs[0], "--ckpt", runs[1], "--out", out])
  assert rc == 2 and "already holds a checkpoint" in capsys.readouterr().err
  assert average_cli.parse_ckpt("a@b@12") == ("a@b", 12) and average_cli.parse_ckpt("x@y") == ("x@y", None)


def _leaves_equal(a, b):
  jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


def test_weights_are_checked_after_every_transformation(three_runs, tmp_path, capsys):
  _, runs = three_runs
  # Their sum overflows float64: normalised without it (it was an all-zero model).
  out = str(tmp_path / "huge")
  rc = average_cli.main(["--ckpt", runs[0], "--ckpt", runs[1], "--weights", "1e308", "1e308",
                         "--out", out, "--quiet"])
  assert rc == 0 and checkpoints.read_meta(out)["weights"] == [0.5, 0.5]
  _leaves_equal(checkpoints.restore_params(out), averaging.average_checkpoints(runs[:2])[0])
  # Finite in float64, inf in float32 (the dtype the parameters are multiplied in).
  out = str(tmp_path / "inf32")
  rc = average_cli.main(["--ckpt", runs[0], "--ckpt", runs[1], "--weights", "1e39", "1",
                         "--no-normalize", "--out", out])
  assert rc == 2 and "weight 0 (1e+39) overflows float32" in capsys.readouterr().err
  assert not os.path.exists(out)
  with pytest.raises(errors.InputError, match="underflow to 0 in float32"):
    averaging.check_weights([1e-50, 1e-50], 2, normalize=False)
  # Finite weights whose products overflow: the average is checked before it is written.
  out = str(tmp_path / "overflow")
  rc = average_cli.main(["--ckpt", runs[0], "--ckpt", runs[1], "--weights", "3e38", "3e38",
                         "--no-normalize", "--out", out])
  assert rc == 2 and "is not finite at" in capsys.readouterr().err
  assert not checkpoints.complete_steps(out)
  # A source holding a NaN: no average of it is written either.
  nan = rm_params(tiny_config(), 0)
  nan["reward_head"]["bias"] = np.full_like(nan["reward_head"]["bias"], np.nan)
  nan_run = save_run(tmp_path / "nan", tiny_config(), nan)
  with pytest.raises(errors.InputError, match="not finite at reward_head/bias"):
    averaging.average_checkpoints([runs[0], nan_run], out=str(tmp_path / "nan_avg"))
  assert not checkpoints.complete_steps(str(tmp_path / "nan_avg"))


def test_out_is_never_a_run_or_anything_a_resolver_reads(three_runs, tmp_path, capsys):
  _, runs = three_runs
  # A run's workdir: checkpoints/ and its config (what `--out runs/rmA` pointed at).
  run = tmp_path / "rmA"
  save_run(run / "checkpoints", tiny_config(), rm_params(tiny_config(), 5))
  (run / "config.json").write_text("{}")
  before = sorted(os.listdir(run))
  rc = average_cli.main(["--ckpt", runs[0], "--ckpt", runs[1], "--out", str(run)])
  assert rc == 2 and "a run's workdir" in capsys.readouterr().err
  assert sorted(os.listdir(run)) == before
  assert checkpoints.resolve_checkpoint_dir(str(run)) == str(run / "checkpoints")
  # Any directory that is not empty (but for what an interrupted save leaves), or a file.
  other = tmp_path / "notes"
  other.mkdir()
  (other / "todo.txt").write_text("x")
  for out in (other, other / "todo.txt"):
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
      averaging.average_checkpoints(runs[:2], out=str(out))
  assert sorted(os.listdir(other)) == ["todo.txt"]
  # A directory that already is both (the state that takeover left) is refused, not resolved.
  checkpoints.save_params(str(tmp_path / "both"), rm_params(tiny_config(), 6), {})
  os.makedirs(tmp_path / "both" / "checkpoints")
  with pytest.raises(errors.InputError, match="ambiguous"):
    averaging.average_checkpoints([str(tmp_path / "both"), runs[0]])


def _damage(path, how):
  """Damages a file: 'truncate' (to half), 'overwrite' (a block in the middle), 'delete'."""
  if how == "delete":
    os.remove(path)
    return
  size = os.path.getsize(path)
  with open(path, "r+b") as f:
    if how == "truncate":
      f.truncate(size // 2)
    else:
      f.seek(size // 2)
      f.write(bytes(255 - b for b in f.read(64)))  # every byte changed


def _largest_file(directory):
  files = [os.path.join(d, n) for d, _, names in os.walk(directory) for n in names]
  return max(files, key=os.path.getsize)


@pytest.mark.parametrize("how", ["truncate", "overwrite", "delete"])
def test_damaged_source_is_named_with_its_step_and_exit_status_2(three_runs, tmp_path, capsys,
                                                                 how):
  import shutil
  from warm_jax import scoring
  _, runs = three_runs
  bad = str(tmp_path / "bad")
  shutil.copytree(runs[0], bad)
  _damage(_largest_file(os.path.join(bad, "0", "params")), how)  # the arrays' data file
  out = str(tmp_path / "out")
  rc = average_cli.main(["--ckpt", bad, "--ckpt", runs[1], "--out", out, "--quiet"])
  (err,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
  assert rc == 2 and f"checkpoint {bad} step 0 is damaged" in err, err
  assert len(err) < 1000 and "TensorStore details" not in err  # no 2,500-character spec
  assert not checkpoints.complete_steps(out)
  with pytest.raises(errors.InputError, match=f"checkpoint {bad} step 0 is damaged"):
    scoring.load_reward_model(bad)


def test_missing_parts_of_a_checkpoint_are_named(three_runs, tmp_path, capsys):
  import shutil
  from warm_jax import scoring
  _, runs = three_runs
  for part, match in [("params/_METADATA", r"the parameters' tree \(params/_METADATA\) is missing"),
                      ("params", "it has no params/"), ("meta", "it has no meta/")]:
    bad = str(tmp_path / part.replace("/", "_"))
    shutil.copytree(runs[0], bad)
    target = os.path.join(bad, "0", part)
    shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)
    rc = average_cli.main(["--ckpt", bad, "--ckpt", runs[1], "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and f"checkpoint {bad} step 0 is damaged" in err and re.search(match, err), err
    with pytest.raises(errors.InputError, match=match):
      scoring.load_reward_model(bad)


# ------------------------------------------------------------------------------- ENS


def test_ensemble_mean_and_variance_of_members():
  config = tiny_config(n_layers=1)
  model = RewardModel(config.model)
  members = [rm_params(config, s) for s in range(3)]
  tokens = jnp.asarray(np.random.default_rng(0).integers(3, 64, size=(4, 16)), jnp.int32)
  apply = jax.jit(lambda p, t: model.apply({"params": p}, t))
  each = np.stack([np.asarray(apply(p, tokens)) for p in members])
  ens = ensemble.Ensemble(model, members)
  mean, var = ens(tokens, return_variance=True)
  np.testing.assert_allclose(mean, each.mean(0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(var, each.var(0), rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(ens(tokens), each.mean(0), rtol=1e-5, atol=1e-6)
  assert float(np.max(var)) > 0
  same = ensemble.Ensemble(model, [members[0]] * 2)
  np.testing.assert_allclose(same(tokens, True)[1], 0.0, atol=1e-10)
  with pytest.raises(ValueError, match="member 1 does not match member 0"):
    ensemble.Ensemble(model, [members[0], rm_params(tiny_config(n_layers=2), 0)])

