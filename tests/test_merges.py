"""Merge operators (`warm_jax.averaging.merges`): values computed by hand on small trees, bad
input refused naming the argument, sharded arrays on a 2x2x2 mesh of 8 fake devices, streamed
over checkpoints (`merge_checkpoints`) equal to in memory, the command and `load_averaged`."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_averaging import close, rm_params, save_run, tiny_config

from warm_jax import average as average_cli
from warm_jax import averaging, checkpoints, errors, scoring
from warm_jax.averaging import array_reader
from warm_jax.averaging import merges
from warm_jax.errors import InputError


def vec(*v):
  return {"w": np.asarray(v, np.float32)}


def value(tree):
  return np.asarray(tree["w"], np.float32)


# ------------------------------------------------------------------------------- by hand

def test_task_arithmetic_by_hand():
  # base [1, 2]; task vectors [1, 0] and [0, 3]; weights 1, 0.5; scale 2.
  out = averaging.task_arithmetic(vec(1, 2), [vec(2, 2), vec(1, 5)], [1, 0.5], scale=2)
  np.testing.assert_allclose(value(out), [3, 5])


def test_ties_trims_elects_signs_and_takes_the_disjoint_mean():
  base = vec(1, 1, 1, 1)
  taus = ([3, -1, 0.5, -2], [-1.5, -2, 1, 0.1], [2, 1, -0.2, -3])
  models = [vec(*np.add(1, t)) for t in taus]
  # density 0.5: each keeps its 2 largest magnitudes -> [3,0,0,-2], [-1.5,-2,0,0], [2,0,0,-3];
  # sums 3.5, -2, 0, -5 elect +, -, +, -; means of the agreeing entries: 2.5, -2, 0, -2.5.
  np.testing.assert_allclose(value(averaging.ties(base, models, 0.5)), [3.5, -1, 1, -1.5])
  # Weights 1, 1, 3: entry 0 (3 + 3 * 2) / 4, entry 3 (-2 - 3 * 3) / 4.
  np.testing.assert_allclose(value(averaging.ties(base, models, 0.5, [1, 1, 3])),
                             [1 + 2.25, -1, 1, 1 - 2.75])
  # density 1: no trim (sign election and disjoint mean alone); scale 2 doubles the task vector.
  np.testing.assert_allclose(value(averaging.ties(vec(0, 0), [vec(1, -1), vec(3, 2)], 1.0, scale=2)),
                             [4, 4])
  # Entries tied with the k-th largest magnitude are kept too (k = 1 here, two entries of 2).
  np.testing.assert_allclose(value(averaging.ties(vec(0, 0, 0), [vec(2, -2, 1)], 0.3)), [2, -2, 0])


@pytest.mark.parametrize("sort_max", [0, 1 << 16])  # the histograms; sorted (small arrays)
def test_kth_largest_is_exact(sort_max, monkeypatch):
  monkeypatch.setattr(merges, "SORT_MAX", sort_max)
  rng = np.random.default_rng(0)
  x = np.abs(rng.standard_normal(1000)).astype(np.float32)
  x[:300] = 0.0  # zeros and ties
  x[300:310] = 1.5
  for k in (1, 7, 10, 11, 500, 700, 701, 1000):
    assert float(merges.kth_largest(jnp.asarray(x), k)) == np.sort(x)[::-1][k - 1], k
  y = jnp.asarray(x[300:364], jnp.bfloat16)
  assert float(merges.kth_largest(y, 5)) == float(np.sort(np.asarray(y, np.float32))[::-1][4])
  with jax.enable_x64(True):  # float64: the bitwise search
    z = jnp.asarray(rng.standard_normal(64) ** 2, jnp.float64)
    assert z.dtype == jnp.float64 and float(merges.kth_largest(z, 5)) == np.sort(z)[::-1][4]


def test_dare_drops_rescales_and_is_seeded():
  base, tau = np.zeros(4000, np.float32), np.arange(1, 4001, dtype=np.float32)
  out = value(averaging.dare({"w": base}, [{"w": tau}], drop=0.75, seed=3))
  kept = out != 0
  np.testing.assert_allclose(out[kept], tau[kept] / 0.25)  # kept entries rescaled by 1 / (1 - p)
  assert abs(kept.mean() - 0.25) < 0.03
  # The mask is `dare_mask` under the documented key (seed, model index, tensor path).
  mask = np.asarray(merges.dare_mask(merges.dare_key(3, 0, "w"), (4000,), 0.75))
  np.testing.assert_array_equal(kept, mask)
  again = value(averaging.dare({"w": base}, [{"w": tau}], drop=0.75, seed=3))
  other = value(averaging.dare({"w": base}, [{"w": tau}], drop=0.75, seed=4))
  np.testing.assert_array_equal(out, again)
  assert (other != out).any()
  # drop 0: task arithmetic; two models get independent masks; combine='ties' elects signs.
  two = [{"w": tau}, {"w": -tau}]
  np.testing.assert_allclose(value(averaging.dare({"w": base}, two, drop=0.0)), 0)
  m0 = np.asarray(merges.dare_mask(merges.dare_key(1, 0, "w"), (4000,), 0.5))
  m1 = np.asarray(merges.dare_mask(merges.dare_key(1, 1, "w"), (4000,), 0.5))
  assert abs(m0.mean() - 0.5) < 0.03 and abs((m0 & m1).mean() - 0.25) < 0.03
  summed = value(averaging.dare({"w": base}, two, drop=0.5, seed=1, weights=[1, 0.5]))
  np.testing.assert_allclose(summed, 2 * tau * m0 - 0.5 * 2 * tau * m1)
  tied = value(averaging.dare({"w": base}, two, drop=0.5, seed=1, combine="ties"))
  # Where both survive, + (sum 2t - 2t = 0 elects +) keeps the positive one; else the survivor.
  np.testing.assert_allclose(tied, np.where(m0, 2 * tau, np.where(m1, -2 * tau, 0)))
  # A 2-D tensor's mask is that of its row-major entries (what a sharded tensor computes too).
  np.testing.assert_array_equal(
      np.asarray(merges.dare_mask(merges.dare_key(1, 0, "w"), (40, 100), 0.5)), m0.reshape(40, 100))


def test_slerp_of_two_models_and_of_two_task_vectors_by_hand():
  r = np.sqrt(0.5)
  np.testing.assert_allclose(value(averaging.slerp(vec(1, 0), vec(0, 1))), [r, r], rtol=1e-6)
  # Norms differ: the coefficients are the angle's (sin(pi/4) each), applied to the vectors.
  np.testing.assert_allclose(value(averaging.slerp(vec(2, 0), vec(0, 1))), [2 * r, r], rtol=1e-6)
  np.testing.assert_allclose(value(averaging.slerp(vec(1, 0), vec(0, 1), 0.0)), [1, 0])
  # Parallel and anti-parallel: linear interpolation.
  np.testing.assert_allclose(value(averaging.slerp(vec(1, 1), vec(2, 2), 0.25)), [1.25, 1.25])
  np.testing.assert_allclose(value(averaging.slerp(vec(1, 0), vec(-1, 0))), [0, 0], atol=1e-7)
  # Task vectors: base + SLERP(a - base, b - base).
  np.testing.assert_allclose(value(averaging.slerp(vec(2, 1), vec(1, 2), base=vec(1, 1))),
                             [1 + r, 1 + r], rtol=1e-6)
  # One angle per tensor (not per entry): [3, 4] vs [4, -3] are orthogonal as wholes.
  out = averaging.slerp({"a": np.float32([3, 4]), "b": np.float32([1])},
                        {"a": np.float32([4, -3]), "b": np.float32([3])}, 0.5)
  np.testing.assert_allclose(out["a"], r * np.float32([7, 1]), rtol=1e-6)
  np.testing.assert_allclose(out["b"], [2])  # parallel scalars: linear


def test_slerp_of_m_task_vectors_is_iterated_pairwise():
  # e1, e2 -> unit (e1 + e2) / sqrt 2; then with e3 at 1/3 (orthogonal): sin(pi/3), sin(pi/6).
  out = averaging.slerp_task_vectors(vec(0, 0, 0), [vec(1, 0, 0), vec(0, 1, 0), vec(0, 0, 1)])
  np.testing.assert_allclose(value(out), [np.sqrt(6) / 4, np.sqrt(6) / 4, 0.5], rtol=1e-6)
  # Nearly parallel task vectors: the uniform mean; M = 2: the two-vector SLERP at 1/2.
  np.testing.assert_allclose(value(averaging.slerp_task_vectors(
      vec(1, 1), [vec(2, 2), vec(3, 3), vec(7, 7)])), [1 + 3, 1 + 3], rtol=1e-6)
  two = averaging.slerp_task_vectors(vec(1, 1), [vec(2, 1), vec(1, 2)])
  close(two, averaging.slerp(vec(2, 1), vec(1, 2), base=vec(1, 1)))


def test_model_stock_by_hand():
  # cos(tau1, tau2) = 1/sqrt 2, M = 2: t = 2c / (1 + c); mean task vector [1, 0.5].
  c = 1 / np.sqrt(2)
  np.testing.assert_allclose(value(averaging.model_stock(vec(0, 0), [vec(1, 0), vec(1, 1)])),
                             2 * c / (1 + c) * np.float32([1, 0.5]), rtol=1e-6)
  # M = 3, pairwise cosines 0, c, c: mean sqrt(2) / 3; t = 3 m / (1 + 2 m); base [1, 1].
  m = np.sqrt(2) / 3
  out = averaging.model_stock(vec(1, 1), [vec(2, 1), vec(1, 2), vec(2, 2)])
  np.testing.assert_allclose(value(out), 1 + 3 * m / (1 + 2 * m) * np.float32([2 / 3, 2 / 3]),
                             rtol=1e-6)
  # Orthogonal task vectors: t = 0, the base.
  np.testing.assert_allclose(value(averaging.model_stock(vec(5, 5), [vec(6, 5), vec(5, 6)])), [5, 5])


def test_liti_and_ema_by_hand():
  np.testing.assert_allclose(value(averaging.liti(vec(0, 4), vec(8, 0), 0.25)), [2, 3])
  np.testing.assert_allclose(value(averaging.ema(vec(0, 4), vec(8, 0), 0.25)), [2, 3])
  np.testing.assert_allclose(value(averaging.ema(vec(0, 4), vec(8, 0), 1.0)), [8, 0])


def test_bfloat16_leaves_merge_in_float32_and_keep_their_dtype():
  base = {"w": jnp.zeros((3,), jnp.bfloat16)}
  out = averaging.ties(base, [{"w": jnp.asarray([1, 2, 3], jnp.bfloat16)}] * 2, 1.0)
  assert out["w"].dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(out["w"], np.float32), [1, 2, 3])


# ------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("call, match", [
    (lambda: averaging.ties(vec(0, 0), [vec(1, 1)], 0.0), r"density=0.0: .* \(0, 1\]"),
    (lambda: averaging.ties(vec(0, 0), [vec(1, 1)], 1.5), r"density=1.5"),
    (lambda: averaging.ties(vec(0, 0), [vec(1, 1)], float("nan")), r"density=nan"),
    (lambda: averaging.dare(vec(0, 0), [vec(1, 1)], 1.0), r"drop=1.0: .* \[0, 1\)"),
    (lambda: averaging.dare(vec(0, 0), [vec(1, 1)], -0.1), r"drop=-0.1"),
    (lambda: averaging.dare(vec(0, 0), [vec(1, 1)], 0.5, combine="mean"), r"combine='mean'"),
    (lambda: averaging.merge("slerp", [vec(1, 0), vec(0, 1), vec(1, 1)]),
     r"slerp without a base merges exactly 2 models, got 3"),
    (lambda: averaging.slerp(vec(1, 0), vec(0, 1), 1.5), r"t=1.5"),
    (lambda: averaging.merge("ties", [vec(1, 0)], density=0.5), r"base: method 'ties'"),
    (lambda: averaging.merge("linear", [vec(1, 0)], base=vec(0, 0)), r"base: .* takes no base"),
    (lambda: averaging.merge("ties", [vec(1, 0)], vec(0, 0), drop=0.5), r"drop=0.5: .* takes no drop"),
    (lambda: averaging.merge("mean", [vec(1, 0)]), r"method='mean'"),
    (lambda: averaging.model_stock(vec(0, 0), [vec(1, 0)]), r"at least 2 fine-tuned models"),
    (lambda: averaging.ties(vec(0, 0), [vec(1, 1), vec(1, 2)], 0.5, [1, -1]), r"non-negative"),
    (lambda: averaging.ties(vec(0, 0), [vec(1, 1), vec(1, 2)], 0.5, [1]), r"got 1 weights for 2"),
    (lambda: averaging.ties(vec(0, 0), [vec(1, 1), vec(1, 2, 3)], 0.5),
     r"different architectures: w: float32\[2\] in model 0 vs float32\[3\] in model 1"),
    (lambda: averaging.ties(vec(0, 0, 0), [vec(1, 1)], 0.5),
     r"base: the base does not match the models: w: float32\[2\] in model 0 vs float32\[3\] in the base"),
    (lambda: averaging.liti(vec(0), vec(1), 1.2), r"eta=1.2: .*\[0, 1\]"),
    (lambda: merges.check_rate(0.0), r"rate=0.0: .*\(0, 1\]"),
])
def test_bad_input_names_the_argument(call, match):
  with pytest.raises(InputError, match=match):
    call()


# ------------------------------------------------------------------------------- sharded

CASES = [("task_arithmetic", dict(scale=0.5)), ("ties", dict(density=0.3)),
         ("dare", dict(drop=0.5, seed=1)), ("dare", dict(drop=0.5, seed=1, combine="ties")),
         ("slerp", {}), ("model_stock", {})]
SHAPES = {"embed": (16, 8), "dense": {"kernel": (8, 12), "bias": (12,)}, "scale": (8,)}
SPECS = {"embed": ("data", "tensor"), "dense": {"kernel": ("fsdp", "tensor"), "bias": ("tensor",)},
         "scale": (None,)}


def small_tree(seed):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: rng.standard_normal(s).astype(np.float32), SHAPES,
                      is_leaf=lambda x: isinstance(x, tuple))


def shardings():
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:8]).reshape(2, 2, 2), ("data", "fsdp", "tensor"))
  return jax.tree.map(lambda spec: jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*spec)),
                      SPECS, is_leaf=lambda x: isinstance(x, tuple))


@pytest.mark.parametrize("method, params", CASES[:3] + CASES[4:])  # dare-ties: streamed below
def test_sharded_merges_equal_host_merges_and_keep_shardings(method, params):
  sh = shardings()
  host = [small_tree(s) for s in range(4)]  # base + 3 models
  trees = [jax.device_put(t, sh) for t in host]
  out = averaging.merge(method, trees[1:], trees[0], **params)
  jax.tree.map(lambda o, s: (o.sharding == s) or pytest.fail(f"{o.sharding} != {s}"), out, sh)
  assert out["embed"].addressable_shards[0].data.shape == (8, 4)
  close(out, averaging.merge(method, host[1:], host[0], **params), rtol=2e-5, atol=2e-6)


# ------------------------------------------------------------------------------- streamed

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("merge_runs")
  return [save_run(root / f"run{s}", tiny_config(dropout_rate=0.05 * s), small_tree(s))
          for s in range(4)]


@pytest.mark.parametrize("method, params", CASES + [("linear", {})])
def test_streamed_merges_equal_in_memory_on_a_sharded_target(method, params, runs, tmp_path):
  base, models = (None, runs) if method == "linear" else (runs[0], runs[1:])
  if method == "slerp":
    weights = [1.0, 2.0, 1.0]
  elif method in ("linear", "task_arithmetic", "dare"):
    weights = [1.0, 0.5, 0.25] + ([2.0] if method == "linear" else [])
  else:
    weights = None
  target = jax.tree.map(lambda s, h: jax.ShapeDtypeStruct(s, np.float32, sharding=h), SHAPES,
                        shardings(), is_leaf=lambda x: isinstance(x, tuple))
  out = str(tmp_path / "merged")
  params_out, meta = averaging.merge_checkpoints(method, models, weights, base=base, target=target,
                                                 out=out, group_bytes=600, **params)
  jax.tree.map(lambda p, t: (p.sharding == t.sharding) or pytest.fail(str(p.sharding)),
               params_out, target)
  restored = [checkpoints.restore_params(r) for r in runs]
  mem_base, mem_models = (None, restored) if method == "linear" else (restored[0], restored[1:])
  expect = averaging.merge(method, mem_models, mem_base, weights, **params)
  close(params_out, expect, rtol=2e-5, atol=2e-6)
  saved = checkpoints.read_meta(out)
  assert saved["method"] == method and saved["paths"] == [os.path.abspath(m) for m in models]
  assert (saved["base"] is None) == (base is None)
  close(checkpoints.restore_params(out, target=target), params_out)


@pytest.mark.parametrize("method, params", [("ties", dict(density=0.3)), ("model_stock", {}),
                                           ("slerp", {}), ("dare", dict(drop=0.5, seed=1))])
def test_streamed_merges_keep_a_one_device_mesh_sharding(method, params, tmp_path):
  # leaves on a one-device mesh (a layer-stacked kernel of rank 3 and a vector) are merged in
  # blocks, their statistics ([models, models], [models]) on the device whatever the rank of
  # the target's spec, and come back on the target's NamedSharding
  rng = np.random.default_rng(3)
  trees = [{"layers": rng.standard_normal((4, 6, 8)).astype(np.float32),
            "scale": rng.standard_normal(8).astype(np.float32)} for _ in range(4)]
  paths = [save_run(tmp_path / f"r{i}", tiny_config(), t) for i, t in enumerate(trees)]
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1, 1),
                           ("data", "fsdp", "tensor"))
  specs = {"layers": (None, "fsdp", "tensor"), "scale": ("tensor",)}
  target = jax.tree.map(lambda t, spec: jax.ShapeDtypeStruct(t.shape, np.float32, sharding=(
      jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*spec)))), trees[0], specs,
                        is_leaf=lambda x: isinstance(x, tuple))
  merged, _ = averaging.merge_checkpoints(method, paths[1:], base=paths[0], target=target,
                                          group_bytes=400, **params)
  jax.tree.map(lambda p, t: (p.sharding == t.sharding) or pytest.fail(str(p.sharding)),
               merged, target)
  close(merged, averaging.merge(method, trees[1:], trees[0], **params), rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("method, params", [("ties", dict(density=0.3)), ("slerp", {}),
                                           ("dare", dict(drop=0.5, seed=1))])
def test_small_leaves_merge_in_packs_of_one_read(method, params, runs, monkeypatch):
  # the 4 small leaves fit one block: one pack, read from the base and the 3 models in one read,
  # the statistics and the merge from the same values (no second read)
  starts = []
  orig = array_reader.ArrayReader.start
  monkeypatch.setattr(array_reader.ArrayReader, "start",
                      lambda self, d, keys, *a, **k: starts.append(len(keys)) or orig(
                          self, d, keys, *a, **k))
  merged, _ = averaging.merge_checkpoints(method, runs[1:], base=runs[0], **params)
  restored = [checkpoints.restore_params(r) for r in runs]
  close(merged, averaging.merge(method, restored[1:], restored[0], **params), rtol=2e-5,
        atol=2e-6)
  assert starts == [4 * 4]
  # packs: consecutive leaves up to the budget (float32 bytes), at least one leaf each
  shapes = [jax.ShapeDtypeStruct((n,), np.float32) for n in (12, 8, 16, 8, 40)]
  assert averaging.merge_stream._packs(range(5), shapes, 100) == [[0, 1], [2, 3], [4]]


def test_streamed_slerp_of_two_models_without_a_base(runs):
  a, b = (checkpoints.restore_params(r) for r in runs[:2])
  merged, meta = averaging.merge_checkpoints("slerp", runs[:2], [0.7, 0.3])
  close(merged, averaging.slerp(a, b, 0.3), rtol=2e-5, atol=2e-6)
  assert meta["base"] is None and meta["weights"] == pytest.approx([0.7, 0.3])


@pytest.mark.parametrize("method, params", CASES[1:] + [("ties", dict(density=1.0))])
def test_streamed_merges_in_row_blocks_equal_in_memory(method, params, runs, monkeypatch):
  # group_bytes 100: every 2-D leaf on one device is merged a few rows at a time (statistics
  # passes, then the merge pass) and must give the in-memory merge of whole tensors.
  blocks = []
  orig = averaging.merge_stream.row_blocks
  monkeypatch.setattr(averaging.merge_stream, "row_blocks",
                      lambda *a: blocks.append(orig(*a)) or blocks[-1])
  weights = [1.0, 2.0, 1.0] if method == "slerp" else None
  merged, _ = averaging.merge_checkpoints(method, runs[1:], weights, base=runs[0],
                                          group_bytes=100, **params)
  restored = [checkpoints.restore_params(r) for r in runs]
  close(merged, averaging.merge(method, restored[1:], restored[0], weights, **params),
        rtol=2e-5, atol=2e-6)
  (rows,) = blocks
  # dense/kernel and embed in blocks of a few rows; dense/bias and scale one block each (a pack)
  assert rows[0] == 12 and rows[1] < 8 and rows[2] < 8 and rows[3] == 8
  if method == "ties" and params["density"] < 1:  # thresholds exact: the same entries merged
    expect = averaging.merge(method, restored[1:], restored[0], **params)
    base = restored[0]["embed"]
    np.testing.assert_array_equal(np.asarray(merged["embed"]) != base, expect["embed"] != base)


@pytest.mark.parametrize("growth, passes, count_every", [(1.0, 1, None), (1.0, 1, 100),
                                                        (2.0, 3, None)])
def test_row_blocked_ties_histogram_passes(growth, passes, count_every, tmp_path, monkeypatch):
  # Rows of like magnitudes: block 0's k-th largest magnitude predicts the tensor's, its window
  # holds it, one histogram pass. Rows growing 2x each: the window misses, and the two exact
  # histogram passes run. Either way the in-memory TIES. count_every: the window's patterns
  # counted in a histogram after every few blocks, not partially sorted at the end.
  rng = np.random.default_rng(0)
  scale = (growth ** (np.arange(128) // 2))[:, None].astype(np.float32)
  trees = [{"w": (rng.standard_normal((128, 256)) * scale).astype(np.float32)} for _ in range(3)]
  paths = [save_run(tmp_path / f"r{i}", tiny_config(), t) for i, t in enumerate(trees)]
  calls = []
  lows = averaging.merge_stream._lows
  monkeypatch.setattr(averaging.merge_stream, "_lows", lambda *a: calls.append(1) or lows(*a))
  if count_every:
    monkeypatch.setattr(averaging.merge_stream, "COUNT_EVERY", count_every)
  starts = []
  orig = array_reader.ArrayReader.start
  monkeypatch.setattr(array_reader.ArrayReader, "start",
                      lambda self, *a, **k: starts.append(1) or orig(self, *a, **k))
  merged, _ = averaging.merge_checkpoints("ties", paths[1:], base=paths[0], density=0.3,
                                          group_bytes=120000)
  np.testing.assert_allclose(merged["w"], averaging.ties(trees[0], trees[1:], 0.3)["w"],
                             rtol=2e-5, atol=2e-6)
  assert (3 if calls else 1) == passes
  blocks = len(range(0, 128, averaging.merge_stream.row_blocks(
      [jax.ShapeDtypeStruct((128, 256), np.float32, sharding=jax.sharding.SingleDeviceSharding(
          jax.devices()[0]))], 120000, 2)[0]))
  assert blocks > 1 and len(starts) == (passes + 1) * blocks  # histogram passes: only if missed


def test_interleave_puts_later_passes_between_first_pass_reads_and_drops_unneeded_ones():
  Read = averaging.stream.Read
  r = lambda name, needed=None: Read(name, None, None, None, needed)  # noqa: E731
  skip = lambda: False  # noqa: E731
  leaf0 = [[r("w0"), r("w1")], [r("h0", skip), r("h1", skip)], [r("m0"), r("m1")]]
  leaf1 = [[r("W0"), r("W1"), r("W2")], [r("H0", lambda: True)], [r("M0")]]
  pack = [[r("p")]]
  order = [x.start for x in averaging.merge_stream._interleave([leaf0, leaf1, pack])]
  assert order[:9] == ["w0", "w1", "W0", "m0", "W1", "m1", "W2", "p", "H0"]
  assert order[9]() is None and order[10:] == ["M0"]  # a read of nothing before the rest


def test_streamed_ties_leaves_of_one_block(runs, monkeypatch):
  # leaves too large to sort (merges.SORT_MAX) but within a block: one block each, their
  # thresholds from the window pass, the same entries trimmed as in memory
  monkeypatch.setattr(merges, "SORT_MAX", 8)
  blocks = []
  orig = averaging.merge_stream.row_blocks
  monkeypatch.setattr(averaging.merge_stream, "row_blocks",
                      lambda *a: blocks.append(orig(*a)) or blocks[-1])
  merged, _ = averaging.merge_checkpoints("ties", runs[1:], base=runs[0], density=0.3)
  restored = [checkpoints.restore_params(r) for r in runs]
  expect = averaging.ties(restored[0], restored[1:], 0.3)
  close(merged, expect, rtol=2e-5, atol=2e-6)
  base = restored[0]["embed"]
  np.testing.assert_array_equal(np.asarray(merged["embed"]) != base, expect["embed"] != base)
  assert blocks == [{0: 12, 1: 8, 2: 16, 3: 8}]  # every leaf one block


def test_row_blocked_ties_with_tied_and_zero_magnitudes(tmp_path, monkeypatch):
  # Every magnitude of a task vector tied (a constant shift), or zero (an unchanged model): all
  # entries fall in the window; counted in several flushes, they still give the in-memory TIES.
  rng = np.random.default_rng(2)
  base = rng.standard_normal((64, 32)).astype(np.float32)
  trees = [{"w": base}, {"w": base + np.float32(0.5)}, {"w": base.copy()},
           {"w": base - (np.float32(0.25) * (np.arange(64)[:, None] % 2)).astype(np.float32)}]
  paths = [save_run(tmp_path / f"r{i}", tiny_config(), t) for i, t in enumerate(trees)]
  monkeypatch.setattr(averaging.merge_stream, "COUNT_EVERY", 300)
  calls = []
  lows = averaging.merge_stream._lows
  monkeypatch.setattr(averaging.merge_stream, "_lows", lambda *a: calls.append(1) or lows(*a))
  merged, _ = averaging.merge_checkpoints("ties", paths[1:], base=paths[0], density=0.3,
                                          group_bytes=3000)
  np.testing.assert_allclose(merged["w"], averaging.ties(trees[0], trees[1:], 0.3)["w"],
                             rtol=2e-5, atol=2e-6)
  assert not calls  # the window held every model's k-th largest


@pytest.mark.parametrize("method, params", [("ties", dict(density=0.3)), ("model_stock", {})])
def test_row_blocked_bfloat16_leaves_merge_in_float32(method, params, tmp_path):
  rng = np.random.default_rng(1)
  trees = [{"w": jnp.asarray(rng.standard_normal((32, 16)), jnp.bfloat16)} for _ in range(3)]
  paths = [save_run(tmp_path / f"r{i}", tiny_config(), t) for i, t in enumerate(trees)]
  merged, _ = averaging.merge_checkpoints(method, paths[1:], base=paths[0], group_bytes=200,
                                          **params)
  assert merged["w"].dtype == jnp.bfloat16
  close(merged, averaging.merge(method, trees[1:], trees[0], **params), rtol=1e-2, atol=1e-2)


def test_streamed_slerp_of_two_models_in_row_blocks(runs):
  a, b = (checkpoints.restore_params(r) for r in runs[:2])
  merged, _ = averaging.merge_checkpoints("slerp", runs[:2], [0.7, 0.3], group_bytes=200)
  close(merged, averaging.slerp(a, b, 0.3), rtol=2e-5, atol=2e-6)


def test_row_block_reads_check_the_recorded_digest(tmp_path):
  # A damaged array is found when its last block is read (the digest adds up over blocks).
  path = save_run(tmp_path / "run", tiny_config(), {"w": np.arange(64, dtype=np.float32)
                                                    .reshape(16, 4)})
  base = save_run(tmp_path / "base", tiny_config(), {"w": np.zeros((16, 4), np.float32)})
  src = averaging.sources.Source(path, None)
  meta = checkpoints.read_meta(path)
  meta["digests"]["params"]["w"] = "0.0"
  monkey = {"digests": meta["digests"]}
  with array_reader.ArrayReader() as reader:
    a = jax.ShapeDtypeStruct((16, 4), np.float32, sharding=jax.sharding.SingleDeviceSharding(
        jax.devices()[0]))
    for lo in range(0, 12, 4):
      (x,) = reader.finish(reader.start(src.item_dir, [("w",)], [a], expect=monkey["digests"]
                                        ["params"], rows=[(lo, lo + 4)]))
      np.testing.assert_array_equal(np.asarray(x), np.arange(64).reshape(16, 4)[lo:lo + 4])
    with pytest.raises(errors.DamagedInput, match=r"params/w does not match the checksum"):
      reader.finish(reader.start(src.item_dir, [("w",)], [a], expect=monkey["digests"]["params"],
                                 rows=[(12, 16)]))
    # the true digest: every block in order passes
    for lo in range(0, 16, 4):
      reader.finish(reader.start(src.item_dir, [("w",)], [a], rows=[(lo, lo + 4)],
                                 expect=checkpoints.read_meta(path)["digests"]["params"]))
  del base


def test_streamed_bad_input_fails_before_anything_is_read_or_written(runs, tmp_path, monkeypatch):
  other = save_run(tmp_path / "other", tiny_config(d_model=64), small_tree(0))

  def no_read(*a, **k):
    raise AssertionError("a checkpoint was read before validation finished")
  monkeypatch.setattr(averaging.stream, "_restore_item", no_read)
  monkeypatch.setattr(averaging.merge_stream.array_reader.ArrayReader, "start", no_read)
  cases = [
      (dict(method="ties", paths=runs[1:], base=runs[0], density=1.2), InputError, r"density=1.2"),
      (dict(method="dare", paths=runs[1:], base=runs[0], drop=1.0), InputError, r"drop=1.0"),
      (dict(method="slerp", paths=runs[:3]), InputError, r"exactly 2 models, got 3"),
      (dict(method="ties", paths=runs[1:], base=other, density=0.5), InputError,
       r"base: the base does not match the checkpoints: config.model.d_model"),
      (dict(method="ties", paths=[runs[1], other], base=runs[0], density=0.5), ValueError,
       r"different architectures: config.model.d_model"),
      (dict(method="ties", paths=runs[1:], density=0.5), InputError, r"base: method 'ties'"),
      (dict(method="ties", paths=runs[1:], base=str(tmp_path / "nope"), density=0.5),
       FileNotFoundError, r"base: checkpoint path .*nope does not exist"),
      (dict(method="model_stock", paths=runs[1:], base=runs[0], weights=[1, 1, 1]), InputError,
       r"weights: model_stock takes no weights"),
  ]
  for i, (kw, exc, msg) in enumerate(cases):
    out = str(tmp_path / f"out{i}")
    with pytest.raises(exc, match=msg):
      averaging.merge_checkpoints(kw.pop("method"), kw.pop("paths"), kw.pop("weights", None),
                                  out=out, **kw)
    assert not os.path.exists(out), f"case {i} wrote {out}"


def test_cli_merges_and_refuses_bad_input(runs, tmp_path, capsys):
  out = str(tmp_path / "ties")
  rc = average_cli.main(["--method", "ties", "--base", runs[0] + "@0", "--ckpt", runs[1],
                         "--ckpt", runs[2], "--density", "0.2", "--out", out])
  assert rc == 0
  meta = checkpoints.read_meta(out)
  assert meta["method"] == "ties" and meta["method_params"]["density"] == 0.2
  restored = [checkpoints.restore_params(r) for r in runs[:3]]
  close(checkpoints.restore_params(out), averaging.ties(restored[0], restored[1:], 0.2),
        rtol=2e-5, atol=2e-6)
  for argv, msg in ((["--method", "ties", "--base", runs[0], "--density", "0"], "density=0.0"),
                    (["--method", "ties", "--density", "0.5"], "base: method 'ties'"),
                    (["--method", "dare", "--base", runs[0], "--drop", "1"], "drop=1.0"),
                    (["--method", "slerp", "--ckpt", runs[3]], "exactly 2 models, got 3"),
                    (["--density", "0.5"], "density=0.5: method 'linear' takes no density"),
                    (["--method", "ties", "--base", runs[0], "--no-normalize"], "--no-normalize")):
    bad = str(tmp_path / "bad")
    rc = average_cli.main([*argv, "--ckpt", runs[1], "--ckpt", runs[2], "--out", bad])
    assert rc == 2 and msg in capsys.readouterr().err, argv
    assert not os.path.exists(bad)



def test_load_averaged_takes_a_method(tmp_path):
  config = tiny_config()
  rms = [save_run(tmp_path / f"rm{s}", config, rm_params(config, s)) for s in range(3)]
  restored = [checkpoints.restore_params(r) for r in rms]
  scorer = scoring.load_averaged(rms[1:], method="model_stock", base=rms[0], tokenizer=_Tok())
  close(scorer.params, averaging.model_stock(restored[0], restored[1:]), rtol=2e-5, atol=2e-6)
  assert scorer.meta["method"] == "model_stock"
  with pytest.raises(InputError, match="drop=2"):
    scoring.load_averaged(rms[1:], method="dare", base=rms[0], drop=2, tokenizer=_Tok())


class _Tok:
  pad_id, bos_id, eos_id = 0, 1, 2

  def encode(self, text):
    return [3]
