"""DPO / IPO: the pure losses, the sequence log-probs, the step at init, training, config errors."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from warm_jax import configs, losses
from warm_jax import sharding as shd
from warm_jax.data import pipeline
from warm_jax.train import dpo
from warm_jax.train import state as state_lib

from conftest import ToyTokenizer, toy_pairs


def dpo_test_config(loss_type="sigmoid", beta=0.1):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.mesh = configs.mesh_config(shape=(2, 2, 2))
  c.sharding = ml_collections.ConfigDict({"rules": configs.DEFAULT_RULES})
  c.data = ml_collections.ConfigDict(dict(seed=0, max_len=24, batch_size=8, eval_batch_size=16))
  c.model = configs.model_config("tiny", vocab_size=64, max_len=24)
  c.optim = configs.optim_config(lr=3e-3, warmup_steps=2)
  c.train = ml_collections.ConfigDict(dict(
      num_steps=10, log_every=5, eval_every=10, eval_batches=0, ckpt_every=10, keep=1,
      eval_splits=("train",)))
  c.dpo = dpo.dpo_config(beta=beta, loss_type=loss_type)
  return c


def _sig(x):
  return 1.0 / (1.0 + math.exp(-x))


# ---------------------------------------------------------------- pure losses

def test_dpo_loss_hand_computed():
  pc, pr = jnp.array([-1.0, -2.0]), jnp.array([-3.0, -1.0])
  rc, rr = jnp.array([-2.0, -2.0]), jnp.array([-2.0, -2.0])
  # h = (pc - rc) - (pr - rr) = [2, -1]; beta = 0.5 -> beta h = [1, -0.5]
  expected = [-math.log(_sig(1.0)), -math.log(_sig(-0.5))]
  np.testing.assert_allclose(losses.dpo_loss(pc, pr, rc, rr, 0.5), expected, rtol=1e-6)
  eps = 0.2  # conservative DPO: mixes in the flipped label
  expected = [-(1 - eps) * math.log(_sig(1.0)) - eps * math.log(_sig(-1.0)),
              -(1 - eps) * math.log(_sig(-0.5)) - eps * math.log(_sig(0.5))]
  np.testing.assert_allclose(losses.dpo_loss(pc, pr, rc, rr, 0.5, eps), expected, rtol=1e-6)


def test_ipo_loss_hand_computed():
  pc, pr = jnp.array([-1.0, -2.0]), jnp.array([-3.0, -1.0])
  rc, rr = jnp.array([-2.0, -2.0]), jnp.array([-2.0, -2.0])
  # h = [2, -1]; target 1 / (2 beta)
  np.testing.assert_allclose(losses.ipo_loss(pc, pr, rc, rr, 0.5), [1.0, 4.0], rtol=1e-6)
  np.testing.assert_allclose(losses.ipo_loss(pc, pr, rc, rr, 0.25), [0.0, 9.0], rtol=1e-6)


def test_implicit_rewards_and_policy_equal_reference():
  p, r = jnp.array([-1.0, -4.0]), jnp.array([-2.0, -3.0])
  np.testing.assert_allclose(losses.implicit_rewards(p, r, 0.1), [0.1, -0.1], rtol=1e-6)
  x, y = jnp.array([-5.0, -7.0]), jnp.array([-6.0, -1.0])
  np.testing.assert_allclose(losses.dpo_loss(x, y, x, y, 0.1), [math.log(2)] * 2, rtol=1e-6)
  np.testing.assert_allclose(losses.ipo_loss(x, y, x, y, 0.1), [25.0] * 2, rtol=1e-6)


# ---------------------------------------------------------------- encoder and log-probs

def test_preference_encoder_weights_mark_the_response_and_eos():
  tok = ToyTokenizer()
  row = pipeline.PreferenceLMEncoder(tok, 12)({"prompt": "xy", "chosen": "aab", "rejected": "b"})
  enc = lambda s: tok.encode(s)
  np.testing.assert_array_equal(row["chosen"][:7], [1, *enc("xy"), *enc("aab"), 2])
  np.testing.assert_array_equal(row["chosen_weights"], [0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(row["rejected"][:5], [1, *enc("xy"), *enc("b"), 2])
  np.testing.assert_array_equal(row["rejected_weights"], [0, 0, 0, 1, 1] + [0] * 7)


def _setup_and_batch(c, n=8):
  setup = dpo.build(c)
  encode = pipeline.PreferenceLMEncoder(ToyTokenizer(), c.data.max_len)
  rows = [encode(r) for r in toy_pairs(n, 0)]
  host = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
  return setup, host


def _at_reference(setup, loss_type, **kw):
  """(the reference log-prob hook, a state whose policy is the reference, the jitted step)."""
  ref = nn.unbox(setup.init_params(jax.random.key(1)))
  prepare = dpo.ReferenceLogps(setup.model, jax.device_put(ref, setup.shardings.params), setup.mesh,
                               setup.rules, setup.shardings.params, setup.batch_sharding)
  state = state_lib.create_state(setup.init_params, setup.tx, jax.random.key(0), setup.shardings,
                                 params=ref)
  step = state_lib.jit_step(
      dpo.make_train_step(setup.model, setup.tx, setup.schedule, 0.1, loss_type, 0.0, 1, **kw),
      setup.shardings, setup.batch_sharding, setup.mesh, setup.rules)
  return prepare, state, step


def test_sequence_logps_sums_response_token_logprobs():
  c = dpo_test_config()
  setup, host = _setup_and_batch(c, 2)
  params = nn.unbox(setup.init_params(jax.random.key(1)))
  tokens, weights = host["chosen"], host["chosen_weights"]
  got = dpo.sequence_logps(setup.model, params, tokens, weights)
  logits = setup.model.apply({"params": params}, tokens)
  logp = np.asarray(jax.nn.log_softmax(logits, -1))
  for b in range(2):
    want = sum(logp[b, t - 1, tokens[b, t]] for t in range(1, tokens.shape[1]) if weights[b, t])
    np.testing.assert_allclose(got[b], want, rtol=1e-5)
  avg = dpo.sequence_logps(setup.model, params, tokens, weights, average=True)
  np.testing.assert_allclose(avg, np.asarray(got) / weights[:, 1:].sum(1), rtol=1e-5)


def test_first_step_at_reference_gives_log2_and_zero_rewards():
  c = dpo_test_config()
  setup, host = _setup_and_batch(c)
  prepare, state, step = _at_reference(setup, "sigmoid")
  batch = prepare(state, shd.to_global(host, setup.batch_sharding))
  assert batch["ref_chosen_logp"].sharding == setup.batch_sharding
  _, m = step(state, batch)
  np.testing.assert_allclose(float(m["loss"]), math.log(2), rtol=1e-5)
  for k in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
    assert abs(float(m[k])) < 1e-5, k
  np.testing.assert_allclose(float(m["logps/chosen"]), float(jnp.mean(batch["ref_chosen_logp"])),
                             rtol=1e-5)
  assert float(m["grad_norm"]) > 0


def test_reference_params_are_a_jit_argument():
  c = dpo_test_config()
  setup, host = _setup_and_batch(c)
  a, b = (nn.unbox(setup.init_params(jax.random.key(s))) for s in (1, 2))
  prepare = dpo.ReferenceLogps(setup.model, a, setup.mesh, setup.rules, setup.shardings.params,
                               setup.batch_sharding)
  batch = shd.to_global(host, setup.batch_sharding)
  la, lb = prepare.logps(a, batch)[0], prepare.logps(b, batch)[0]
  assert not np.allclose(la, lb)
  assert prepare._forward._cache_size() == 1


# ---------------------------------------------------------------- training

@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_dpo_raises_implicit_reward_accuracy_and_margin(tmp_path, loss_type):
  c = dpo_test_config(loss_type, beta=0.1 if loss_type == "sigmoid" else 0.5)
  setup = dpo.build(c)
  ref = nn.unbox(setup.init_params(jax.random.key(3)))
  sources = {"train": toy_pairs(32, 0)}
  out = dpo.train(c, str(tmp_path), sources, ToyTokenizer(), ref)
  # At the reference every implicit reward is 0: accuracy 0 (ties), margin 0, loss log 2.
  assert out["train/rewards/accuracies"] > 0.9
  assert out["train/rewards/margins"] > 0.1
  if loss_type == "sigmoid":
    assert out["train/loss"] < math.log(2) - 0.05
  assert out["state"].step == c.train.num_steps


# ---------------------------------------------------------------- config errors

@pytest.mark.parametrize("field,value,match", [
    ("beta", 0.0, "config.dpo.beta=0.0"),
    ("beta", -1.0, "config.dpo.beta=-1.0"),
    ("loss_type", "hinge", "config.dpo.loss_type='hinge'"),
    ("label_smoothing", 0.5, "config.dpo.label_smoothing=0.5"),
])
def test_config_errors_name_the_field(field, value, match):
  c = dpo_test_config()
  c.dpo[field] = value
  with pytest.raises(ValueError, match=match):
    dpo.build(c)


def test_ipo_rejects_label_smoothing_and_unknown_optimizer():
  c = dpo_test_config("ipo")
  c.dpo.label_smoothing = 0.1
  with pytest.raises(ValueError, match="config.dpo.label_smoothing=0.1"):
    dpo.build(c)
  c = dpo_test_config()
  c.optim.name = "sgd"
  with pytest.raises(ValueError, match="config.optim.name='sgd'"):
    dpo.build(c)


def test_rmsprop_optimizer_builds():
  c = dpo_test_config()
  c.optim.name, c.optim.rmsprop_decay, c.optim.weight_decay = "rmsprop", 0.99, 0.0
  setup = dpo.build(c)
  params = nn.unbox(setup.init_params(jax.random.key(0)))
  opt = setup.tx.init(params)
  assert jax.tree.structure(setup.shardings.opt_state) == jax.tree.structure(opt)


# ---------------------------------------------------------------- MODPO

def test_modpo_loss_hand_computed():
  pc, pr = jnp.array([-1.0, -2.0]), jnp.array([-3.0, -1.0])
  rc, rr = jnp.array([-2.0, -2.0]), jnp.array([-2.0, -2.0])  # h = [2, -1]
  margin = jnp.array([0.3, -0.2])
  got = losses.modpo_loss(pc, pr, rc, rr, 0.5, 0.25, margin)
  want = [-math.log(_sig((0.5 * 2 - 0.3) / 0.25)), -math.log(_sig((0.5 * -1 + 0.2) / 0.25))]
  np.testing.assert_allclose(got, want, rtol=1e-6)
  # Weight 1, no margin: DPO.
  np.testing.assert_allclose(losses.modpo_loss(pc, pr, rc, rr, 0.5, 1.0, jnp.zeros(2)),
                             losses.dpo_loss(pc, pr, rc, rr, 0.5), rtol=1e-6)


def test_modpo_step_reads_each_records_margin():
  c = dpo_test_config("modpo")
  c.dpo.modpo_weight = 0.5
  setup = dpo.build(c)
  encode = pipeline.PreferenceLMEncoder(ToyTokenizer(), c.data.max_len)
  margins = np.linspace(-1.0, 1.0, 8).astype(np.float32)
  rows = [encode({**r, "margin": m}) for r, m in zip(toy_pairs(8, 0), margins)]
  host = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
  assert host["margin"].dtype == np.float32 and host["margin"].shape == (8,)
  prepare, state, step = _at_reference(setup, "modpo", modpo_weight=0.5)
  _, m = step(state, prepare(state, shd.to_global(host, setup.batch_sharding)))
  # At the reference h = 0, so each pair's loss is -log sigmoid(-margin / w).
  want = np.mean([-math.log(_sig(-x / 0.5)) for x in margins])
  np.testing.assert_allclose(float(m["loss"]), want, rtol=1e-5)
  del host["margin"]
  with pytest.raises(ValueError, match="'margin'"):
    step(state, prepare(state, shd.to_global(host, setup.batch_sharding)))


def test_modpo_weight_must_be_in_unit_interval():
  c = dpo_test_config("modpo")
  c.dpo.modpo_weight = 0.0
  with pytest.raises(ValueError, match="config.dpo.modpo_weight=0.0"):
    dpo.build(c)
