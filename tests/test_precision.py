"""Mixed precision (`warm_jax.models.precision`): every matmul of a bfloat16 model takes bfloat16
operands and accumulates in float32, in the forward pass and both backward matmuls; float32 master
weights; rewards, losses and log-probs within stated tolerances of float32 on the embedded task."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from warm_jax import configs, losses
from warm_jax.data import embedded as E
from warm_jax.data import pipeline
from warm_jax.data import tokenizer as tokenizer_lib
from warm_jax.models import LanguageModel, RewardModel, precision


def _eqns(jaxpr):
  """Every equation of a jaxpr and of the jaxprs nested in it (pjit, custom_vjp, scan, remat)."""
  for eqn in jaxpr.eqns:
    yield eqn
    for v in eqn.params.values():
      for sub in (v if isinstance(v, (list, tuple)) else [v]):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          yield from _eqns(inner)


def _dots(fn, *args):
  return [e for e in _eqns(jax.make_jaxpr(fn)(*args).jaxpr) if e.primitive.name == "dot_general"]


def _model_config(dtype, tie=True, blocks=0, vocab=1024, max_len=48):
  cfg = configs.model_config("tiny", vocab_size=vocab, max_len=max_len)
  cfg.dtype, cfg.tie_embeddings, cfg.attention_blocks = dtype, tie, blocks
  return cfg


def _tokens(b=4, t=16, vocab=1024, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.integers(3, vocab, (b, t)).astype(np.int32)
  x[:, -3:] = 0  # right padding
  return jnp.asarray(x)


@pytest.mark.parametrize("tie,blocks", [(True, 0), (False, 2)])
def test_every_matmul_of_a_bfloat16_step_accumulates_in_float32(tie, blocks):
  x = _tokens()
  lm = LanguageModel(_model_config("bfloat16", tie, blocks))
  rm = RewardModel(_model_config("bfloat16", tie, blocks))
  lm_params = nn.unbox(lm.init(jax.random.key(0), x)["params"])
  rm_params = nn.unbox(rm.init(jax.random.key(0), x)["params"])
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves((lm_params, rm_params)))

  def lm_loss(p):
    logp = jax.nn.log_softmax(lm.apply({"params": p}, x)[:, :-1], -1)
    return -jnp.mean(jnp.take_along_axis(logp, x[:, 1:, None], -1))

  def rm_loss(p):
    r = rm.apply({"params": p}, x)
    return jnp.mean(losses.bradley_terry_loss(r[:2], r[2:]))

  for loss, params in ((lm_loss, lm_params), (rm_loss, rm_params)):
    dots = _dots(jax.grad(loss), params)
    # 4 projections + 2 attention products + 3 MLP matmuls per layer, each forward and twice back
    assert len(dots) >= 2 * 9 * 3
    big = [e for e in dots if e.invars[0].aval.size * e.invars[1].aval.size > 64 * 64]
    for e in big:  # the reward head's [B, d] x [d, 1] stays float32
      dtypes = tuple(v.aval.dtype for v in e.invars)
      assert dtypes == (jnp.bfloat16, jnp.bfloat16), (dtypes, e)
      assert e.params["preferred_element_type"] == jnp.float32, e
    grads = jax.grad(loss)(params)
    assert all(g.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(g)))
               for g in jax.tree.leaves(grads))


def test_a_float32_model_has_no_bfloat16_matmul():
  x = _tokens()
  lm = LanguageModel(_model_config("float32"))
  params = nn.unbox(lm.init(jax.random.key(0), x)["params"])
  dots = _dots(jax.grad(lambda p: jnp.sum(lm.apply({"params": p}, x))), params)
  assert dots and all(v.aval.dtype == jnp.float32 for e in dots for v in e.invars)


@pytest.mark.parametrize("spec,sa,sb", [("btd,dnh->btnh", (2, 5, 8), (8, 2, 4)),
                                        ("btnh,nhd->btd", (2, 5, 2, 4), (2, 4, 8)),
                                        ("btkgh,bskh->bkgts", (2, 5, 1, 2, 4), (2, 5, 1, 4))])
def test_mixed_einsum_and_its_gradients_match_float32(spec, sa, sb):
  a = jax.random.normal(jax.random.key(1), sa)
  b = jax.random.normal(jax.random.key(2), sb)
  w = jax.random.normal(jax.random.key(3), jnp.einsum(spec, a, b).shape)

  def f32(a, b):
    return jnp.sum(w * jnp.einsum(spec, a, b))

  def bf16(a, b):
    out = precision.einsum(spec, a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), jnp.float32)
    return jnp.sum(w * out)

  np.testing.assert_allclose(bf16(a, b), f32(a, b), rtol=2e-2, atol=0.2)
  for g16, g32 in zip(jax.grad(bf16, (0, 1))(a, b), jax.grad(f32, (0, 1))(a, b)):
    assert g16.dtype == jnp.float32
    np.testing.assert_allclose(g16, g32, rtol=3e-2, atol=3e-2 * float(jnp.max(jnp.abs(g32))))


@pytest.mark.parametrize("spec,sa,sb", [("btd,df->btf", (2, 5, 8), (8, 6)),
                                        ("btd,dnh->btnh", (2, 5, 8), (8, 2, 4)),
                                        ("btnh,nhd->btd", (2, 5, 2, 4), (2, 4, 8))])
def test_float32_gradients_are_one_einsum_each_with_no_transpose(spec, sa, sb):
  """jax's own rule gives a weight gradient as a dot plus a transpose (on XLA:CPU a plain dot and a
  transposed copy); precision.einsum's is one dot_general per operand, in that operand's layout."""
  a = jax.random.normal(jax.random.key(1), sa)
  b = jax.random.normal(jax.random.key(2), sb)
  w = jax.random.normal(jax.random.key(3), jnp.einsum(spec, a, b).shape)

  def loss(einsum):
    return lambda a, b: jnp.sum(w * einsum(spec, a, b))

  grads = jax.grad(loss(precision.einsum), (0, 1))
  eqns = list(_eqns(jax.make_jaxpr(grads)(a, b).jaxpr))
  assert not [e for e in eqns if e.primitive.name == "transpose"]
  dots = [e for e in eqns if e.primitive.name == "dot_general"]
  assert sorted(tuple(e.outvars[0].aval.shape) for e in dots) == sorted([w.shape, sa, sb])
  for got, want in zip(grads(a, b), jax.grad(loss(jnp.einsum), (0, 1))(a, b)):
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_mixed_einsum_rejects_what_it_cannot_differentiate():
  a = jnp.ones((2, 3), jnp.bfloat16)
  with pytest.raises(ValueError, match="different dtypes"):
    precision.einsum("ij,jk->ik", a, jnp.ones((3, 4)))
  with pytest.raises(ValueError, match="summed away alone"):
    precision.einsum("ij,kl->ik", a, jnp.ones((3, 4), jnp.bfloat16))


# --------------------------------------------------------------------- numerics on the embedded task
def _embedded_batches(n_batches=4, batch=16, max_len=96):
  tok = tokenizer_lib.load()
  cfg = E.default_config()
  for k in cfg.sizes:
    cfg.sizes[k] = n_batches * batch
  records = E.preference_records(cfg, "train")
  enc = pipeline.PairEncoder(tok, max_len)
  rows = [enc(r) for r in records]
  return [{k: jnp.asarray(np.stack([r[k] for r in rows[i:i + batch]])) for k in rows[0]}
          for i in range(0, len(rows), batch)]


def _rm_loss(model, params, batch):
  r = model.apply({"params": params}, jnp.concatenate([batch["chosen"], batch["rejected"]]))
  n = batch["chosen"].shape[0]
  return jnp.mean(losses.bradley_terry_loss(r[:n], r[n:])), r


def test_bfloat16_rewards_and_losses_track_float32_on_the_embedded_task():
  """Stated tolerances: rewards within 5% of their spread, the Bradley-Terry loss within 0.01
  nats; over 24 Adam steps (lr 1e-3, each precision from the same init and batches) every loss
  within 0.015 nats and the final parameters apart by under 10% of the float32 update's norm; LM
  log-probs within 0.05 nats. (Measured: 1.4% of the spread, 0.003, 0.0035, 2.8%, 0.03.)"""
  batches = _embedded_batches()
  f32, b16 = (RewardModel(_model_config(d, max_len=96)) for d in ("float32", "bfloat16"))
  init = nn.unbox(f32.init(jax.random.key(0), batches[0]["chosen"])["params"])
  # a reward head that is not zero, so that rewards differ between responses
  init["reward_head"]["kernel"] = jax.random.normal(
      jax.random.key(1), init["reward_head"]["kernel"].shape) * 0.5
  l32, r32 = _rm_loss(f32, init, batches[0])
  l16, r16 = _rm_loss(b16, init, batches[0])
  assert float(jnp.std(r32)) > 0.05
  assert float(jnp.max(jnp.abs(r16 - r32))) < 0.05 * float(jnp.max(r32) - jnp.min(r32))
  assert abs(float(l16) - float(l32)) < 0.01

  tx = optax.adam(1e-3)

  def train(model):
    @jax.jit
    def step(p, s, b):
      (loss, _), g = jax.value_and_grad(lambda p: _rm_loss(model, p, b), has_aux=True)(p)
      u, s = tx.update(g, s, p)
      return optax.apply_updates(p, u), s, loss
    p, s, out = init, tx.init(init), []
    for i in range(24):
      p, s, loss = step(p, s, batches[i % len(batches)])
      out.append(float(loss))
    return p, np.array(out)

  (p32, c32), (p16, c16) = train(f32), train(b16)
  assert c32[-1] < c32[0] - 0.02 and c16[-1] < c16[0] - 0.02  # both learn
  assert np.max(np.abs(c16 - c32)) < 0.015, (c16, c32)
  moved = sum(float(jnp.sum((a - b) ** 2)) for a, b in zip(jax.tree.leaves(p32),
                                                          jax.tree.leaves(init)))
  apart = sum(float(jnp.sum((a - b) ** 2)) for a, b in zip(jax.tree.leaves(p16),
                                                          jax.tree.leaves(p32)))
  assert apart ** 0.5 < 0.1 * moved ** 0.5, (apart, moved)

  lm32, lm16 = (LanguageModel(_model_config(d, max_len=96)) for d in ("float32", "bfloat16"))
  lm_params = nn.unbox(lm32.init(jax.random.key(2), batches[0]["chosen"])["params"])
  x = batches[0]["chosen"]

  def logp(model):
    lp = jax.nn.log_softmax(model.apply({"params": lm_params}, x)[:, :-1], -1)
    return jnp.take_along_axis(lp, x[:, 1:, None], -1)[..., 0]
  assert float(jnp.max(jnp.abs(logp(lm16) - logp(lm32)))) < 0.05
