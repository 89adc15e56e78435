"""RLP: the UML train step (BT + lambda * MIB on views) and SPG's pair selection rule."""

import jax
import numpy as np
import pytest
from conftest import experiment

from warm_jax import sharding as shd
from warm_jax.data import pipeline
from warm_jax.train import reward_model as rm
from warm_jax.train import rlp
from warm_jax.train import state as state_lib


# ---------------------------------------------------------------- SPG

def test_select_pair_takes_the_best_of_the_largest_cluster_against_another_cluster():
  clusters = np.array([0, 1, 0, 2, 0])
  scores = np.array([0.1, 5.0, 0.7, 3.0, 0.2])  # the top score overall (index 1) is a minority
  rejected = set()
  for seed in range(40):
    chosen, rej, conf = rlp.select_pair(clusters, scores, 0.5, np.random.default_rng(seed))
    assert chosen == 2 and conf == pytest.approx(0.6)
    rejected.add(rej)
  assert rejected == {1, 3}  # uniformly drawn from the other clusters
  rng = np.random.default_rng(0)
  assert rlp.select_pair(clusters, scores, 0.7, rng) is None  # not confident enough
  assert rlp.select_pair(np.zeros(4, int), np.arange(4.0), 0.5, rng) is None  # no other meaning
  # A tie for the largest cluster goes to the one seen first; gamma is inclusive.
  assert rlp.select_pair(np.array([1, 0, 0, 1]), np.array([9.0, 1.0, 2.0, 0.0]), 0.5, rng)[:1] == (2,)
  with pytest.raises(ValueError, match="one non-empty"):
    rlp.select_pair(np.array([0, 1]), np.array([1.0]), 0.5, rng)


def test_cluster_and_synthetic_pairs():
  meaning = lambda text: frozenset(w for w in text.split() if w in {"tom", "oslo", "cat"})  # noqa: E731
  samples = [["tom oslo .", "oslo tom !", "tom cat .", "tom oslo oslo ."],  # 3 of 4 agree
             ["tom .", "cat .", "oslo .", "tom cat ."]]  # no majority
  np.testing.assert_array_equal(rlp.cluster(samples[0], meaning), [0, 0, 1, 0])
  scores = np.array([[0.0, 2.0, 9.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
  pairs, stats = rlp.synthetic_pairs(["p0", "p1"], samples, scores, meaning, gamma=0.5, seed=1)
  assert pairs == [{"prompt": "p0", "chosen": "oslo tom !", "rejected": "tom cat .",
                    "confidence": 0.75, "synthetic": True}]
  assert stats["kept"] == 1 and stats["mean_confidence"] == pytest.approx((0.75 + 0.25) / 2)
  with pytest.raises(ValueError, match="do not match"):
    rlp.synthetic_pairs(["p0"], samples, scores, meaning, gamma=0.5)


# ---------------------------------------------------------------- UML

def uml_config(weight: float):
  c = experiment("reward_model").get_config("tiny")
  c.model.vocab_size = 64  # the toy tokenizer's vocabulary
  c.model.dropout_rate = 0.0
  c.mesh.shape = (-1, 1, 1)
  c.uml = rlp.default_uml_config()
  c.uml.update(weight=weight, z_dim=4, hidden=16)
  c.optim.warmup_steps = 0  # the first step updates (a warm-up starts at lr 0)
  return c


def _batch(toy_data, n=8):
  encode = rlp.ViewPairEncoder(toy_data["tokenizer"], 64)
  train = toy_data["sources"]["train"]
  views = [{"prompt": train[i]["prompt"], "view_1": train[i]["chosen"],
            "view_2": train[i + 1]["rejected"]} for i in range(n)]
  return next(pipeline.Batches(rlp.ViewPairs(train, views), encode, n, seed=0))


def _uml_step(config, batch, devices):
  setup = rlp.build_uml(config, devices)
  state = state_lib.create_state(setup.init_params, setup.tx, jax.random.key(0), setup.shardings)
  start = jax.tree.map(np.array, state)  # the step donates its input state
  step = state_lib.jit_step(
      rlp.make_uml_train_step(setup.model, rlp.bottleneck(config.uml), setup.tx, setup.schedule,
                              config.uml, 0.0, 1, config.train.num_steps),
      setup.shardings, setup.batch_sharding, setup.mesh, setup.rules)
  return start, step(state, shd.to_global(batch, setup.batch_sharding))


def test_uml_step_is_bradley_terry_plus_weighted_mib(toy_data):
  batch = _batch(toy_data)
  devices = jax.devices()[:1]
  start, (after0, m0) = _uml_step(uml_config(0.0), batch, devices)
  _, (after1, m1) = _uml_step(uml_config(0.5), batch, devices)
  # weight 0: exactly the Bradley-Terry step on the same params (the bottleneck is inert).
  c = uml_config(0.0)
  setup = rm.build(c, devices)
  bt_state = state_lib.TrainState(step=start.step, params=rlp.reward_model_params(start.params),
                                  opt_state=setup.tx.init(rlp.reward_model_params(start.params)))
  bt_step = state_lib.jit_step(rm.make_train_step(setup.model, setup.tx, setup.schedule, 0.0, 1),
                               setup.shardings, setup.batch_sharding, setup.mesh, setup.rules)
  pair_batch = {k: batch[k] for k in ("chosen", "rejected")}
  bt_after, bt_m = bt_step(bt_state, shd.to_global(pair_batch, setup.batch_sharding))
  np.testing.assert_allclose(float(m0["loss"]), float(bt_m["loss"]), rtol=1e-6)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-7),
               rlp.reward_model_params(after0.params), bt_after.params)
  # weight 0.5: loss = BT + 0.5 * MIB, and the MIB gradient reaches the backbone.
  assert float(m1["loss"]) == pytest.approx(float(m1["bt_loss"]) + 0.5 * float(m1["mib_loss"]),
                                            rel=1e-5)
  assert float(m1["bt_loss"]) == pytest.approx(float(m0["bt_loss"]), rel=1e-6)
  q = lambda s: np.asarray(s.params["decoder"]["block_0"]["attn"]["query"])  # noqa: E731
  assert not np.allclose(q(after0), q(after1), atol=1e-7)
  assert set(after1.params) == {"decoder", "reward_head", rlp.MIB}
  assert set(rlp.reward_model_params(after1.params)) == {"decoder", "reward_head"}


def test_uml_sharded_step_matches_single_device(toy_data):
  batch = _batch(toy_data)
  _, (s1, m1) = _uml_step(uml_config(0.5), batch, jax.devices()[:1])
  c = uml_config(0.5)
  c.mesh.shape = (2, 2, 2)
  _, (s8, m8) = _uml_step(c, batch, jax.devices())
  np.testing.assert_allclose(float(m1["loss"]), float(m8["loss"]), rtol=1e-5)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4,
                                                       atol=1e-5), s1.params, s8.params)


def test_bad_uml_settings_are_named(toy_data):
  for field, value, match in (("weight", -1.0, "uml.weight"), ("z_dim", 0, "uml.z_dim"),
                              ("beta", -0.1, "uml.beta"), ("beta_start", 0.0, "uml.beta_start"),
                              ("hold_fraction", 1.0, "uml.hold_fraction")):
    c = uml_config(0.5)
    c.uml[field] = value
    with pytest.raises(ValueError, match=match):
      rlp.build_uml(c, jax.devices()[:1])
  views = rlp.views_from_samples(["p"], [["a", "b", "c"]])
  assert views == [{"prompt": "p", "view_1": "a", "view_2": "b"}]
  with pytest.raises(ValueError, match=">= 2 samples"):
    rlp.views_from_samples(["p"], [["a"]])
  with pytest.raises(ValueError, match="both must be non-empty"):
    rlp.ViewPairs(toy_data["sources"]["train"], [])


def test_bottleneck_learns_what_two_views_share():
  """On synthetic views sharing a 4-d latent, training MultiViewBottleneck on mib_loss (beta 1)
  lifts the JSD mutual-information estimate well above its no-information value -2 log 2, while
  the codes of the two views agree (small symmetrised KL)."""
  import flax.linen as nn
  import jax.numpy as jnp
  import optax

  from warm_jax import losses
  from warm_jax.models import MultiViewBottleneck
  mib = MultiViewBottleneck(z_dim=8, hidden=64)
  w = jax.random.normal(jax.random.key(9), (4, 32))

  def views(k):
    k1, k2, k3 = jax.random.split(k, 3)
    s = jax.random.normal(k1, (64, 4)) @ w
    return s + 0.5 * jax.random.normal(k2, s.shape), s + 0.5 * jax.random.normal(k3, s.shape)

  key = jax.random.key(0)
  params = nn.unbox(mib.init(key, *views(key), key))["params"]
  tx = optax.adam(1e-3)

  @jax.jit
  def step(params, opt, k):
    def f(p):
      out = mib.apply({"params": p}, *views(k), jax.random.fold_in(k, 1))
      return jnp.mean(losses.mib_loss(**out, beta=1.0)), out
    (_, out), g = jax.value_and_grad(f, has_aux=True)(params)
    u, opt = tx.update(g, opt, params)
    mi = jnp.mean(losses.jsd_mutual_information(out["t_pos"], out["t_neg"]))
    skl = jnp.mean(losses.symmetric_gaussian_kl(out["mu_1"], out["sigma_1"], out["mu_2"], out["sigma_2"]))
    return optax.apply_updates(params, u), opt, mi, skl

  opt = tx.init(params)
  for i in range(600):
    params, opt, mi, skl = step(params, opt, jax.random.fold_in(key, i))
  assert float(mi) > -1.0 > -2 * np.log(2) and float(skl) < 1.0


def test_beta_is_annealed_exponentially_from_its_start():
  from warm_jax import losses
  np.testing.assert_allclose(float(losses.annealed_beta(0, 1e-3, 1.0, 100)), 1e-3, rtol=1e-6)
  np.testing.assert_allclose(float(losses.annealed_beta(50, 1e-3, 1.0, 100)), 10 ** -1.5, rtol=1e-5)
  assert float(losses.annealed_beta(100, 1e-3, 1.0, 100)) == pytest.approx(1.0)
  assert float(losses.annealed_beta(500, 1e-3, 1.0, 100)) == pytest.approx(1.0)  # then constant
  assert float(losses.annealed_beta(0, 1.0, 1.0, 100)) == 1.0  # the paper's constant beta
  # Held at its start for `hold` steps, then annealed over the next `steps`.
  assert float(losses.annealed_beta(30, 1e-3, 1.0, 100, hold=30)) == pytest.approx(1e-3)
  np.testing.assert_allclose(float(losses.annealed_beta(80, 1e-3, 1.0, 100, hold=30)),
                             10 ** -1.5, rtol=1e-5)
  assert float(losses.annealed_beta(130, 1e-3, 1.0, 100, hold=30)) == pytest.approx(1.0)
  # A config saved before the schedule existed keeps its constant beta.
  import ml_collections
  old = ml_collections.ConfigDict(dict(weight=0.5, beta=1.0, z_dim=4, hidden=8))
  assert float(rlp.uml_beta(old, 100)(0)) == 1.0
  # hold_fraction of a run at beta_start (Federici et al.'s beta_start_iteration), then the rest
  # of the run to beta.
  held = ml_collections.ConfigDict(dict(beta=1.0, beta_start=1e-3, hold_fraction=0.25,
                                        anneal_steps=0))
  beta = rlp.uml_beta(held, 200)
  assert float(beta(50)) == pytest.approx(1e-3) and float(beta(49)) == pytest.approx(1e-3)
  np.testing.assert_allclose(float(beta(125)), 10 ** -1.5, rtol=1e-5)
  assert float(beta(200)) == pytest.approx(1.0)
  assert rlp.default_uml_config().hold_fraction == pytest.approx(rlp.HOLD)


def test_features_are_standardised_over_both_views_and_the_batch():
  from warm_jax.models import bottleneck
  rng = np.random.default_rng(0)
  common = 5.0 * rng.normal(size=(1, 6))  # what every post's state shares
  h1, h2 = common + 0.1 * rng.normal(size=(8, 6)), common + 0.1 * rng.normal(size=(8, 6))
  s1, s2 = bottleneck.standardized(h1, h2)
  both = np.concatenate([s1, s2])
  np.testing.assert_allclose(both.mean(0), 0.0, atol=1e-5)
  np.testing.assert_allclose(both.std(0), 1.0, atol=1e-4)


def test_uml_step_uses_the_annealed_beta_and_the_bottlenecks_own_learning_rate(toy_data):
  batch = _batch(toy_data)
  c = uml_config(0.5)
  c.optim.warmup_steps = 0
  c.uml.update(beta_start=1e-2, beta=1.0, lr_multiplier=10.0)
  start, (after, m) = _uml_step(c, batch, jax.devices()[:1])
  assert float(m["beta"]) == pytest.approx(1e-2)  # step 0 of the schedule
  moved = lambda tree: max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))  # noqa: E731
                           for a, b in zip(jax.tree.leaves(tree(after)), jax.tree.leaves(tree(start))))
  mib_step = moved(lambda s: s.params[rlp.MIB])
  model_step = moved(lambda s: s.params["decoder"])
  lr = c.optim.lr
  # Adam's first step moves each parameter by about the learning rate (sign of its gradient).
  assert mib_step == pytest.approx(10 * lr, rel=0.05) and model_step == pytest.approx(lr, rel=0.05)


@pytest.mark.parametrize("tail, learnt", [(-1.38, False), (-1.30, True)])
def test_uml_counts_as_learnt_only_clearly_above_no_information(tmp_path, tail, learnt):
  import json

  from warm_jax.studies import rlp as rlp_study
  # Ten logs: at no information (a peak of noise at -1.37) and then, for the last two, `tail`.
  mi = [-1.39, -1.38, -1.37, -1.39, -1.386, -1.39, -1.385, -1.388, tail, tail]
  with open(tmp_path / "metrics.jsonl", "w") as f:
    for k, m in enumerate(mi):
      f.write(json.dumps({"step": 10 * (k + 1), "split": "train", "mi_jsd": m, "skl": 1.0,
                          "beta": 1e-3}) + "\n")
  u = rlp_study.uml_trajectory(str(tmp_path))
  assert u["mi_end_mean"] == pytest.approx(tail) and u["mi_max_step"] == (30 if not learnt else 90)
  assert u["learnt"] is learnt  # the noise peak above -2 ln 2 alone does not count
