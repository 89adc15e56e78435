"""The decoder fields of configs.DECODER_DEFAULTS (what the Hugging Face families need): their
semantics against plain reference computations, the agreement of the three attention paths
(blocked, full, KV-cache decoding) under windows and soft-capping, validation, and the averaging
fingerprint of configs that lack them. Parity with transformers itself is tests/test_pretrained.py.
"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from warm_jax import averaging, configs
from warm_jax.models import LanguageModel, RewardModel
from warm_jax.models.transformer import (causal_attention, default_positions, dense_attention,
                                         rope_frequencies)


def _cfg(**kw):
  c = configs.model_config("tiny", vocab_size=64, max_len=24)
  c.update(kw)
  return c


# Every non-default field at once (a Gemma-3-like decoder with Qwen2's biases on top).
EVERYTHING = dict(
    n_heads=4, n_kv_heads=2, head_dim=12, qkv_bias=True, qk_norm=True, norm_plus_one=True,
    scale_embeddings=True, mlp_activation="gelu_tanh", attn_logit_softcap=2.0,
    final_logit_softcap=5.0, sliding_window=3, sliding_window_pattern=2, rope_local_theta=100.0,
    post_norms=True, query_pre_attn_scalar=20.0, rope_scaling="llama3", rope_scaling_factor=4.0,
    rope_low_freq_factor=1.0, rope_high_freq_factor=4.0, rope_original_max_len=16,
    scale_tied_logits=False, reward_head_bias=False)


def _perturbed_params(model, tokens, seed=0):
  """Params with every leaf random (norm scales and biases included, so a missed one shows),
  drawn in numpy from the abstract shapes (nothing to compile)."""
  shapes = nn.unbox(jax.eval_shape(lambda: model.init(jax.random.key(0), tokens)["params"]))
  rng = np.random.default_rng(seed)
  # matrices N(0, 0.3^2); vectors (norm scales, biases) 1 + N(0, 0.3^2)
  return jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape) * 0.3
                                            + (len(x.shape) == 1), jnp.float32), shapes)


def _apply(model, **kw):
  """model.apply jitted: (params, tokens[, mask, positions]) -> outputs."""
  return jax.jit(lambda p, *args: model.apply({"params": p}, *args, **kw))


def _naive_attention(q, k, v, key_mask, window=0, scale=None, softcap=0.0):
  """Loops over rows and queries: query i sees real keys j <= i (and j > i - window)."""
  b, t, n, h = q.shape
  g = n // k.shape[2]
  scale = h ** -0.5 if scale is None else scale
  out = np.zeros_like(q)
  for bi in range(b):
    for i in range(t):
      for hi in range(n):
        js = [j for j in range(t) if j <= i and key_mask[bi, j] and (not window or j > i - window)]
        if not js:
          continue
        logits = np.array([q[bi, i, hi] @ k[bi, j, hi // g] * scale for j in js])
        if softcap:
          logits = softcap * np.tanh(logits / softcap)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        out[bi, i, hi] = sum(pj * v[bi, j, hi // g] for pj, j in zip(p, js))
  return out


@pytest.mark.parametrize("blocks,window,softcap", [(1, 3, 0.0), (4, 3, 1.5), (3, 5, 0.0),
                                                   (13, 2, 1.0), (4, 0, 1.5)])
def test_blocked_attention_window_and_softcap_match_the_naive_loop(blocks, window, softcap):
  rng = np.random.default_rng(blocks + window)
  b, t, n, h = 2, 13, 4, 8
  q, k, v = (rng.standard_normal(s).astype(np.float32) for s in
             ((b, t, n, h), (b, t, 2, h), (b, t, 2, h)))
  key_mask = np.array([[True] * t, [False] * 4 + [True] * 9])  # row 1 left-padded
  want = _naive_attention(q, k, v, key_mask, window, 0.3, softcap)
  got = np.asarray(causal_attention(*map(jnp.asarray, (q, k, v, key_mask)), blocks, 0.3,
                                    softcap, window))
  seen = np.cumsum(key_mask, axis=1) > 0
  np.testing.assert_allclose(got[seen], want[seen], rtol=1e-5, atol=1e-5)
  mask = np.tril(np.ones((t, t), bool))
  if window:
    mask &= ~np.tril(np.ones((t, t), bool), -window)
  dense = np.asarray(dense_attention(*map(jnp.asarray, (q, k, v)),
                                     jnp.asarray(mask[None, None] & key_mask[:, None, None]),
                                     0.3, softcap))
  np.testing.assert_allclose(dense[seen], want[seen], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("blocks,window,softcap,n_kv", [(4, 3, 1.5, 2), (3, 0, 0.0, 1),
                                                        (13, 2, 1.0, 4), (1, 5, 0.0, 2)])
def test_attention_gradients_match_the_dense_attention(blocks, window, softcap, n_kv):
  # causal_attention has its own (flash-style) gradient; the dense attention's is jax's autodiff.
  rng = np.random.default_rng(blocks + window + n_kv)
  b, t, n, h = 2, 13, 4, 8
  q, k, v = (jnp.asarray(rng.standard_normal(s), jnp.float32) for s in
             ((b, t, n, h), (b, t, n_kv, h), (b, t, n_kv, h)))
  key_mask = np.array([[True] * t, [False] * 4 + [True] * 9])  # row 1 left-padded
  seen = jnp.asarray(np.cumsum(key_mask, axis=1) > 0)[:, :, None, None]
  w = jnp.asarray(rng.standard_normal((b, t, n, h)), jnp.float32)
  mask = np.tril(np.ones((t, t), bool))
  if window:
    mask &= ~np.tril(np.ones((t, t), bool), -window)
  mask = jnp.asarray(mask[None, None] & key_mask[:, None, None])
  loss = lambda f: lambda q, k, v: jnp.sum(jnp.where(seen, w * f(q, k, v), 0.0))
  grads = lambda f: jax.grad(loss(f), (0, 1, 2))(q, k, v)
  got = grads(lambda q, k, v: causal_attention(q, k, v, jnp.asarray(key_mask), blocks, 0.3,
                                               softcap, window))
  want = grads(lambda q, k, v: dense_attention(q, k, v, mask, 0.3, softcap))
  for name, g, r in zip("qkv", got, want):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5, err_msg=f"d{name}")
  # A query that sees no key (row 1's first four) passes nothing back, even when its output is
  # weighted: the gradient of its logits is zero, as the mask's is.
  dq = jax.grad(lambda q: jnp.sum(w * causal_attention(q, k, v, jnp.asarray(key_mask), blocks,
                                                       0.3, softcap, window)))(q)
  assert np.all(np.asarray(dq)[1, :4] == 0) and np.isfinite(np.asarray(dq)).all()


def test_layer_patterns():
  n = lambda **kw: [configs.is_local_layer(_cfg(n_layers=6, **kw), i) for i in range(6)]
  assert n() == [False] * 6  # no window: every layer global
  assert n(sliding_window=4) == [True] * 6  # Mistral: pattern 0, every layer local
  assert n(sliding_window=4, sliding_window_pattern=2) == [True, False] * 3  # Gemma 2
  assert n(sliding_window=4, sliding_window_pattern=6) == [True] * 5 + [False]  # Gemma 3


def test_rope_frequencies_linear_and_llama3_regimes():
  plain = rope_frequencies(8, 10_000.0, "linear", 1.0)
  np.testing.assert_allclose(plain, 10_000.0 ** (-np.arange(8) / 8), rtol=1e-6)
  np.testing.assert_allclose(rope_frequencies(8, 10_000.0, "linear", 4.0), plain / 4, rtol=1e-6)
  got = rope_frequencies(8, 10_000.0, "llama3", 8.0, 1.0, 4.0, 64)
  wavelen = 2 * math.pi / plain
  high, low = wavelen < 64 / 4, wavelen > 64 / 1
  assert high.any() and low.any() and (~high & ~low).any()  # all three regimes occur
  np.testing.assert_allclose(got[high], plain[high], rtol=1e-6)  # short wavelengths kept
  np.testing.assert_allclose(got[low], plain[low] / 8, rtol=1e-6)  # long ones divided
  mid = ~high & ~low
  smooth = (64 / wavelen[mid] - 1.0) / (4.0 - 1.0)
  np.testing.assert_allclose(got[mid], (1 - smooth) * plain[mid] / 8 + smooth * plain[mid],
                             rtol=1e-5)


_TOKENS = jnp.asarray(np.random.default_rng(0).integers(1, 64, (2, 14)), jnp.int32).at[1, :4].set(0)
_REAL = np.asarray(_TOKENS != 0)  # row 1 left-padded; padded queries' outputs are not compared


@functools.lru_cache(maxsize=None)
def _everything_logits(blocks: int = 4):
  """(params, logits) of the EVERYTHING decoder with `blocks` attention blocks (0: full)."""
  model = LanguageModel(_cfg(**EVERYTHING, attention_blocks=blocks))
  params = _perturbed_params(model, _TOKENS)
  return params, np.asarray(_apply(model)(params, _TOKENS))


@pytest.mark.parametrize("blocks", [0, 1, 5])
def test_attention_paths_agree_with_every_field_on(blocks):
  configs.validate_model(_cfg(**EVERYTHING))
  _, base = _everything_logits()
  np.testing.assert_allclose(_everything_logits(blocks)[1][_REAL], base[_REAL], atol=2e-5)


@pytest.mark.parametrize("name", [n for n in EVERYTHING if n not in (
    # these change the parameter tree (or only matter through another field)
    "n_heads", "n_kv_heads", "head_dim", "qkv_bias", "qk_norm", "post_norms", "reward_head_bias",
    "rope_low_freq_factor", "rope_high_freq_factor", "rope_original_max_len")])
def test_each_field_changes_the_function(name):
  params, base = _everything_logits()
  c = _cfg(**EVERYTHING)
  c[name] = configs.DECODER_DEFAULTS[name]
  changed = np.asarray(_apply(LanguageModel(c))(params, _TOKENS))
  assert np.abs(changed - base)[_REAL].max() > 1e-3


def test_kv_cache_decoding_honours_window_and_softcap():
  cfg = _cfg(**EVERYTHING, max_len=16)
  model = LanguageModel(cfg)
  prompts = jnp.array([[0, 0, 5, 6, 7, 9], [8, 9, 10, 11, 12, 13]], jnp.int32)
  params = _perturbed_params(model, prompts)
  cont = jnp.array([[20, 21, 22, 23], [23, 24, 25, 26]], jnp.int32)
  full = _apply(model)(params, jnp.concatenate([prompts, cont], axis=1))
  cache = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((2, 16), jnp.int32),
                                            decode=True)["cache"])
  cache = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), cache)
  step = jax.jit(lambda p, c, t, m, pos: model.apply({"params": p, "cache": c}, t, m, pos,
                                                     decode=True, mutable=["cache"]))
  mask = prompts != 0
  logits, vars_ = step(params, cache, prompts, mask, default_positions(mask))
  np.testing.assert_allclose(logits[:, -1], full[:, 5], atol=1e-4)
  for i in range(4):  # past the window of 3: early keys must drop out of local layers
    tok = cont[:, i:i + 1]
    logits, vars_ = step(params, vars_["cache"], tok, jnp.ones_like(tok, bool),
                         (mask.sum(1) + i)[:, None])
    np.testing.assert_allclose(logits[:, 0], full[:, 6 + i], atol=1e-4)


def test_reward_model_reads_the_last_real_token_when_pad_equals_eos():
  eos = 2  # Llama 3 style: pad id = eos id, and eos ends every real sequence
  model = RewardModel(_cfg(**EVERYTHING))
  seq = jnp.array([[7, 8, 9, 10, eos]], jnp.int32)
  padded = jnp.array([[7, 8, 9, 10, eos, eos, eos, eos]], jnp.int32)
  mask = jnp.array([[True] * 5 + [False] * 3])
  params = _perturbed_params(model, padded)
  assert "bias" not in params["reward_head"]
  run = _apply(model)
  want = run(params, seq, jnp.ones_like(seq, bool))
  got = run(params, padded, mask)
  np.testing.assert_allclose(got, want, atol=1e-5)
  # Read at the last eos instead (what a pad-id rule would pick): another reward.
  wrong = run(params, padded, jnp.ones_like(padded, bool))
  assert abs(float(wrong[0] - want[0])) > 1e-3
  # Left padding with pad = eos: the explicit mask again decides.
  left = jnp.array([[eos, eos, eos, 7, 8, 9, 10, eos]], jnp.int32)
  got_left = run(params, left, jnp.array([[False] * 3 + [True] * 5]))
  np.testing.assert_allclose(got_left, want, atol=1e-5)


@pytest.mark.parametrize("field,value", [
    ("head_dim", -1), ("head_dim", 7), ("qkv_bias", 1), ("qk_norm", "yes"),
    ("norm_plus_one", None), ("scale_embeddings", 0), ("mlp_activation", "relu"),
    ("attn_logit_softcap", -1.0), ("final_logit_softcap", float("nan")),
    ("sliding_window", -2), ("sliding_window", 2.5), ("sliding_window_pattern", -1),
    ("rope_local_theta", float("inf")), ("post_norms", "no"), ("query_pre_attn_scalar", -4.0),
    ("rope_scaling", "yarn"), ("rope_scaling_factor", 0.0), ("rope_low_freq_factor", -1.0),
    ("rope_original_max_len", 0), ("scale_tied_logits", None), ("reward_head_bias", "true")])
def test_bad_decoder_fields_fail_naming_the_field(field, value):
  with pytest.raises(ValueError, match=rf"config\.model\.{field}="):
    configs.validate_model(_cfg(**{field: value}))


def test_head_dim_frees_d_model_from_the_head_count_and_llama3_factors_are_ordered():
  configs.validate_model(_cfg(d_model=30, n_heads=4, head_dim=8))  # 30 % 4 != 0 is fine now
  with pytest.raises(ValueError, match=r"config\.model\.n_heads"):
    configs.validate_model(_cfg(d_model=30, n_heads=4))
  with pytest.raises(ValueError, match=r"config\.model\.rope_high_freq_factor"):
    configs.validate_model(_cfg(rope_scaling="llama3", rope_low_freq_factor=4.0,
                                rope_high_freq_factor=2.0))


def test_fingerprint_ignores_fields_at_their_default_and_sees_the_others():
  old = {"model": _cfg().to_dict()}  # a config saved before the fields existed
  explicit = {"model": configs.full_model_config(_cfg()).to_dict()}
  assert set(explicit["model"]) > set(old["model"])
  assert averaging.model_fingerprint(old) == averaging.model_fingerprint(explicit)
  assert averaging.sources._compare_model_configs(old, explicit, "a", "b") is None
  windowed = {"model": _cfg(sliding_window=4).to_dict()}
  assert averaging.model_fingerprint(windowed) != averaging.model_fingerprint(old)
  why = averaging.sources._compare_model_configs(old, windowed, "a", "b")
  assert why and "config.model.sliding_window" in why
  # A JSON round trip (lists for tuples, 0 for 0.0) keeps the fingerprint.
  import json
  again = json.loads(json.dumps(explicit))
  assert averaging.model_fingerprint(again) == averaging.model_fingerprint(old)


def test_model_config_holds_decoder_fields_only_when_asked():
  assert not set(configs.model_config("tiny")) & set(configs.DECODER_DEFAULTS)
  cfg = configs.model_config("tiny", sliding_window=4, reward_head_bias=False)
  assert (cfg.sliding_window, cfg.reward_head_bias) == (4, False)
  configs.validate_model(cfg)
  with pytest.raises(ValueError, match=r"\['window'\] are not decoder fields"):
    configs.model_config("tiny", window=4)
