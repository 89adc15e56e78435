import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from warm_jax import configs
from warm_jax.models import LanguageModel, RewardModel, init_from_lm, last_token_index
from warm_jax.models.transformer import (attention_mask, causal_attention, rope_frequencies,
                                         rotary)


def _cfg(**kw):
  c = configs.model_config("tiny", vocab_size=64, max_len=32)
  c.update(kw)
  return c


def _tokens(b=3, t=12, seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(1, 64, (b, t)), jnp.int32)


def test_every_parameter_has_logical_axis_names():
  for model in (RewardModel(_cfg()), LanguageModel(_cfg(tie_embeddings=False))):
    boxed = jax.eval_shape(lambda r: model.init(r, _tokens())["params"], jax.random.key(0))
    leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))
    assert leaves and all(isinstance(x, nn.Partitioned) for x in leaves)
    for x in leaves:
      assert len(x.names) == x.value.ndim


def test_reward_is_read_at_last_non_pad_token():
  model = RewardModel(_cfg())
  tok = _tokens()
  params = nn.unbox(model.init(jax.random.key(0), tok)["params"])
  # A non-zero head so the reward depends on the hidden state.
  params["reward_head"]["kernel"] = jnp.ones_like(params["reward_head"]["kernel"])
  short = tok.at[:, 8:].set(0)  # right padding after 8 tokens
  r_short = model.apply({"params": params}, short)
  r_prefix = model.apply({"params": params}, tok[:, :8])
  np.testing.assert_allclose(r_short, r_prefix, rtol=1e-5, atol=1e-5)
  # Changing a token inside the sequence changes the reward; changing padding does not exist.
  assert not np.allclose(model.apply({"params": params}, short.at[:, 3].set(5)), r_short)
  np.testing.assert_array_equal(last_token_index(short != 0), [7, 7, 7])


def test_language_model_is_causal_and_untied_head_exists():
  for tie in (True, False):
    model = LanguageModel(_cfg(tie_embeddings=tie))
    tok = _tokens()
    params = nn.unbox(model.init(jax.random.key(0), tok)["params"])
    assert ("lm_head" in params) == (not tie)
    logits = model.apply({"params": params}, tok)
    assert logits.shape == (3, 12, 64)
    changed = model.apply({"params": params}, tok.at[:, 9].set(1))
    np.testing.assert_allclose(logits[:, :9], changed[:, :9], rtol=1e-5, atol=1e-5)
    assert not np.allclose(logits[:, 9:], changed[:, 9:])


def test_left_padding_with_explicit_positions_matches_unpadded():
  model = LanguageModel(_cfg())
  tok = _tokens(1, 6)
  params = nn.unbox(model.init(jax.random.key(0), tok)["params"])
  plain = model.apply({"params": params}, tok)
  left = jnp.concatenate([jnp.zeros((1, 3), jnp.int32), tok], axis=1)
  padded = model.apply({"params": params}, left)  # default positions skip the left padding
  np.testing.assert_allclose(padded[:, 3:], plain, rtol=1e-4, atol=1e-4)


def test_reward_model_initialised_from_language_model_backbone():
  lm, rm = LanguageModel(_cfg()), RewardModel(_cfg())
  lm_params = nn.unbox(lm.init(jax.random.key(1), _tokens())["params"])
  rm_params = nn.unbox(rm.init(jax.random.key(2), _tokens())["params"])
  merged = init_from_lm(rm_params, lm_params)
  assert merged["decoder"] is lm_params["decoder"]
  assert merged["reward_head"] is rm_params["reward_head"]
  other = nn.unbox(LanguageModel(_cfg(n_layers=1)).init(jax.random.key(1), _tokens())["params"])
  with pytest.raises(ValueError, match="does not match"):
    init_from_lm(rm_params, other)


def test_dropout_is_active_only_when_not_deterministic():
  model = RewardModel(_cfg(dropout_rate=0.5))
  tok = _tokens()
  params = nn.unbox(model.init(jax.random.key(0), tok)["params"])
  params["reward_head"]["kernel"] = jnp.ones_like(params["reward_head"]["kernel"])
  a = model.apply({"params": params}, tok)
  b = model.apply({"params": params}, tok)
  np.testing.assert_array_equal(a, b)
  c = model.apply({"params": params}, tok, deterministic=False, rngs={"dropout": jax.random.key(1)})
  assert not np.allclose(a, c)


def test_kv_cache_decoding_matches_full_forward_with_left_padding():
  model = LanguageModel(_cfg(max_len=16))
  prompts = jnp.array([[0, 0, 5, 6, 7], [8, 9, 10, 11, 12]], jnp.int32)  # row 0 left-padded
  params = nn.unbox(model.init(jax.random.key(0), prompts)["params"])
  cont = jnp.array([[20, 21, 22], [23, 24, 25]], jnp.int32)
  full_tokens = jnp.concatenate([prompts, cont], axis=1)
  full = model.apply({"params": params}, full_tokens)  # default positions skip left padding
  cache = model.init(jax.random.key(0), jnp.zeros((2, 16), jnp.int32), decode=True)["cache"]
  mask = prompts != 0
  pos = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0)
  logits, vars_ = model.apply({"params": params, "cache": cache}, prompts, mask, pos, decode=True,
                              mutable=["cache"])
  np.testing.assert_allclose(logits[:, -1], full[:, 4], rtol=1e-4, atol=1e-4)
  next_pos = mask.sum(axis=1)
  for i in range(3):
    tok = cont[:, i:i + 1]
    logits, vars_ = model.apply({"params": params, "cache": vars_["cache"]}, tok,
                                jnp.ones_like(tok, bool), (next_pos + i)[:, None], decode=True,
                                mutable=["cache"])
    np.testing.assert_allclose(logits[:, 0], full[:, 5 + i], rtol=1e-4, atol=1e-4)


def _reference_attention(q, k, v, key_mask):
  # The plain computation: every query against every key, causal and padding mask.
  return jax.nn.dot_product_attention(q, k, v, mask=attention_mask(key_mask))


@pytest.mark.parametrize("blocks,n_kv", [(1, 4), (4, 4), (13, 4), (3, 2), (4, 1)])
def test_blocked_causal_attention_matches_full_attention(blocks, n_kv):
  b, t, n, h = 3, 13, 4, 8
  ks = jax.random.split(jax.random.key(blocks * 10 + n_kv), 3)
  q = jax.random.normal(ks[0], (b, t, n, h))
  k = jax.random.normal(ks[1], (b, t, n_kv, h))
  v = jax.random.normal(ks[2], (b, t, n_kv, h))
  # row 0 full, row 1 right-padded, row 2 left-padded
  key_mask = jnp.array([[True] * t, [True] * 9 + [False] * 4, [False] * 3 + [True] * 10])
  out = jax.jit(causal_attention, static_argnums=4)(q, k, v, key_mask, blocks)
  assert out.shape == q.shape and out.dtype == q.dtype
  ref = _reference_attention(q, k, v, key_mask)
  # Every query that sees at least one real key (the fully masked ones are padding).
  seen = np.asarray(jnp.cumsum(key_mask, axis=1) > 0)
  np.testing.assert_allclose(np.asarray(out)[seen], np.asarray(ref)[seen], rtol=2e-5, atol=2e-5)
  assert np.isfinite(np.asarray(out)).all()


def test_blocked_causal_attention_gradients_match_full_attention():
  b, t, n, h = 2, 16, 2, 8
  ks = jax.random.split(jax.random.key(1), 4)
  q, k, v = (jax.random.normal(kk, (b, t, n, h)) for kk in ks[:3])
  w = jax.random.normal(ks[3], (b, t, n, h))
  key_mask = jnp.array([[True] * t, [True] * 11 + [False] * 5])
  loss = lambda f: lambda q, k, v: jnp.sum(w * f(q, k, v) * key_mask[:, :, None, None])
  grad = lambda f: jax.jit(jax.grad(loss(f), (0, 1, 2)))(q, k, v)
  got = grad(lambda q, k, v: causal_attention(q, k, v, key_mask, 4))
  want = grad(lambda q, k, v: _reference_attention(q, k, v, key_mask))
  for g, r in zip(got, want):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)


def test_blocked_causal_attention_bfloat16_keeps_dtype_and_accuracy():
  ks = jax.random.split(jax.random.key(2), 3)
  q, k, v = (jax.random.normal(kk, (2, 16, 2, 8)) for kk in ks)
  key_mask = jnp.ones((2, 16), bool)
  out = causal_attention(*(x.astype(jnp.bfloat16) for x in (q, k, v)), key_mask, 4)
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(out, np.float32),
                             np.asarray(_reference_attention(q, k, v, key_mask)), atol=3e-2)


@pytest.mark.parametrize("freq", [None, "llama3"])
def test_rotary_from_the_table_matches_the_computed_angles(freq):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((2, 7, 3, 8)), jnp.float32)
  positions = jnp.asarray(rng.integers(0, 7, (2, 7)), jnp.int32)
  freq = None if freq is None else rope_frequencies(4, 500.0, "llama3", 8.0, 1.0, 4.0, 16)
  computed = rotary(x, positions, 500.0, freq)
  np.testing.assert_allclose(rotary(x, positions, 500.0, freq, table_len=7), computed,
                             rtol=2e-6, atol=2e-6)
  assert not np.allclose(rotary(x, positions, 50.0, freq=None, table_len=7),
                         rotary(x, positions, 500.0, freq=None, table_len=7))  # theta is used


def test_rotary_outside_its_table_gives_nan_not_a_wrong_angle():
  x = jnp.ones((1, 3, 1, 4), jnp.float32)
  out = rotary(x, jnp.asarray([[0, 1, 3]]), 10_000.0, table_len=3)
  assert np.isfinite(out[0, :2]).all() and np.isnan(out[0, 2]).all()


def test_the_forward_pass_evaluates_no_sine_or_cosine():
  # Outside decoding the rotary angles come from a table built at trace time; computed in the
  # program, XLA:CPU evaluates cos and sin for every element of q and k (several times the cost
  # of the rotation itself).
  model = RewardModel(_cfg())
  tok = _tokens()
  params = nn.unbox(model.init(jax.random.key(0), tok)["params"])
  hlo = jax.jit(model.apply).lower({"params": params}, tok).compile().as_text()
  assert "cosine(" not in hlo and "sine(" not in hlo
  assert "cosine(" in jax.jit(lambda p: jnp.cos(p)).lower(jnp.ones(3)).compile().as_text()


def test_attention_blocks_do_not_change_the_model():
  tokens = _tokens(b=2, t=12).at[1, 8:].set(0)
  outs = []
  for blocks in (0, 1, 4):  # 0: jax.nn.dot_product_attention
    model = RewardModel(_cfg(attention_blocks=blocks))
    params = nn.unbox(model.init(jax.random.key(0), tokens)["params"])
    outs.append(model.apply({"params": params}, tokens))
  for out in outs[1:]:
    np.testing.assert_allclose(out, outs[0], rtol=1e-5, atol=1e-5)


def test_profiles_can_tell_attention_core_kv_cache_and_optimizer_apart():
  """The named scopes benchmarks/step_profile.py reads: the attention core and the KV cache in the
  model's HLO, the optimizer's update in its own."""
  from warm_jax.train import state as state_lib
  model = RewardModel(_cfg(attention_blocks=2))
  tok = _tokens(t=8)
  params = nn.unbox(model.init(jax.random.key(0), tok)["params"])
  text = jax.jit(lambda p: model.apply({"params": p}, tok)).lower(params).as_text(debug_info=True)
  assert "/attention_core/" in text and "/optimizer/" not in text
  lm = LanguageModel(_cfg())
  lm_params = nn.unbox(lm.init(jax.random.key(0), tok)["params"])
  cache = lm.init(jax.random.key(0), tok, decode=True)["cache"]
  one = tok[:, :1]
  step = jax.jit(lambda p, c: lm.apply({"params": p, "cache": c}, one, jnp.ones_like(one, bool),
                                       jnp.zeros_like(one), decode=True, mutable=["cache"]))
  assert "/kv_cache/" in step.lower(lm_params, cache).as_text(debug_info=True)
  tx = state_lib.make_optimizer(configs.optim_config(), 10)
  opt_state = tx.init(params)
  text = jax.jit(tx.update).lower(params, opt_state, params).as_text(debug_info=True)
  assert "/optimizer/" in text and "/attention_core/" not in text


def test_a_decode_step_writes_its_slot_without_copying_the_cache():
  """The KV cache is stored slots-last, the layout the attention's matmuls read: the compiled
  one-token step holds no transpose or copy of a whole cache (stored tokens-first, XLA transposed
  every layer's keys and values at every token)."""
  import re
  lm = LanguageModel(_cfg(max_len=32))
  params = nn.unbox(lm.init(jax.random.key(0), _tokens(b=2, t=4))["params"])
  cache = lm.init(jax.random.key(0), jnp.zeros((2, 32), jnp.int32), decode=True)["cache"]
  key_shape = cache["decoder"]["block_0"]["attn"]["key"].shape
  size = int(np.prod(key_shape))
  one = jnp.ones((2, 1), jnp.int32)
  step = jax.jit(lambda p, c: lm.apply({"params": p, "cache": c}, one, one > 0, jnp.zeros_like(one),
                                       decode=True, mutable=["cache"]),
                 donate_argnums=(1,))  # as the decode loop carries it: updated in place
  text = step.lower(params, cache).compile().as_text()
  copies = []
  for m in re.finditer(r"%((?:[\w.-]*(?:transpose|copy)[\w.-]*)) = \w+\[([\d,]*)\]", text):
    dims = [int(d) for d in m.group(2).split(",") if d]
    if dims and int(np.prod(dims)) == size:
      copies.append(m.group(1))
  assert not copies, copies



def test_bfloat16_decoding_runs_on_the_cpu():
  """A bfloat16 model decodes under the XLA defaults a bfloat16 experiment runs with (none of
  warm_jax's: `xla_flags`); XLA:CPU's plain dot has no bfloat16 x bfloat16 -> float32 kernel,
  which a slots-last bfloat16 cache would need. In a fresh process: the flags are per process."""
  import os
  import subprocess
  import sys
  code = ("import jax, jax.numpy as jnp, flax.linen as nn\n"
          "from warm_jax import configs, sampling\n"
          "from warm_jax.models import LanguageModel\n"
          "c = configs.model_config('tiny', vocab_size=64, max_len=24); c.dtype = 'bfloat16'\n"
          "lm = LanguageModel(c)\n"
          "params = nn.unbox(lm.init(jax.random.key(0), jnp.ones((2, 4), jnp.int32))['params'])\n"
          "out = sampling.make_generate(lm, max_new_tokens=4, temperature=1.0, eos_id=-1)(\n"
          "    params, jnp.ones((2, 8), jnp.int32), jax.random.key(1))\n"
          "print(bool(jnp.all(jnp.isfinite(out['logprobs']))))\n")
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["JAX_PLATFORMS"] = "cpu"
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
  assert out.returncode == 0 and out.stdout.strip().endswith("True"), out.stderr[-2000:]
