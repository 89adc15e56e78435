"""Layers under nn.scan (config.model.scan_layers) and remat policies (config.model.remat_policy):
both layer layouts compute the same function (forward, gradients, KV-cache decoding), the layout
conversion is exact both ways, checkpoints of either layout restore into the other, the stacked
'layers' axis is replicated while the rest shards as before, and a config without the fields is
the decoder of before (same parameter tree, bit-identical outputs)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from warm_jax import checkpoints, configs, sampling
from warm_jax import sharding as shd
from warm_jax.errors import InputError
from warm_jax.models import LanguageModel, RewardModel
from warm_jax.models import transformer
from warm_jax.train import init

TOKENS = jnp.asarray(np.random.default_rng(0).integers(1, 64, (2, 12)), jnp.int32).at[1, :3].set(0)
# A Gemma-2-like pattern (local, global, ...) on 5 layers: 2 scanned groups of 2, 1 layer after;
# on 3 layers (what the compiled tests run, for speed): 1 group of 2, 1 layer after.
PATTERN = dict(n_layers=5, sliding_window=3, sliding_window_pattern=2)
SMALL_PATTERN = dict(PATTERN, n_layers=3)


def _cfg(scan: bool, **kw):
  c = configs.model_config("tiny", vocab_size=64, max_len=24)
  c.update(kw)
  if scan:
    c.scan_layers = True
  return c


def _params(model, seed=0):
  return nn.unbox(model.init(jax.random.key(seed), TOKENS)["params"])


def test_both_layouts_compute_the_same_function_and_gradients():
  kw = dict(SMALL_PATTERN, remat=True, remat_policy="dots_saveable")
  flat, scanned = LanguageModel(_cfg(False, **kw)), LanguageModel(_cfg(True, **kw))
  p = _params(flat)
  q = transformer.convert_layers(p, scanned.cfg)
  assert transformer.is_scanned(q["decoder"]) and not transformer.is_scanned(p["decoder"])
  assert jax.tree.structure(q) == jax.tree.structure(_params(scanned))
  f = lambda m: jax.jit(jax.value_and_grad(  # noqa: E731
      lambda p: jnp.sum(jnp.tanh(m.apply({"params": p}, TOKENS)))))
  (la, ga), (lb, gb) = f(flat)(p), f(scanned)(q)
  np.testing.assert_allclose(lb, la, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(transformer.convert_layers(ga, scanned.cfg)), jax.tree.leaves(gb)):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


def test_reward_model_scores_alike_in_both_layouts():
  flat, scanned = RewardModel(_cfg(False, n_layers=3)), RewardModel(_cfg(True, n_layers=3))
  p = _params(flat)
  p["reward_head"]["kernel"] = jnp.ones_like(p["reward_head"]["kernel"])  # zero-initialised
  run = lambda m, p: jax.jit(m.apply)({"params": p}, TOKENS)  # noqa: E731
  want, got = run(flat, p), run(scanned, transformer.convert_layers(p, scanned.cfg))
  assert float(jnp.abs(want).min()) > 1e-3
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_layout_conversion_is_exact_both_ways():
  cfg = _cfg(True, **PATTERN)
  p = _params(LanguageModel(_cfg(False, **PATTERN)))
  groups, period = transformer.scan_groups(cfg)
  assert (groups, period) == (2, 2)
  q = transformer.convert_layers(p, cfg)
  assert sorted(q["decoder"]) == ["block_4", "embed", "final_norm", "layers"]
  np.testing.assert_array_equal(q["decoder"]["layers"]["sub_1"]["mlp"]["up"]["kernel"][1],
                                p["decoder"]["block_3"]["mlp"]["up"]["kernel"])
  back = transformer.convert_layers(q, _cfg(False, **PATTERN))
  assert jax.tree.structure(back) == jax.tree.structure(p)
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(p)))


def test_layer_period_follows_the_local_global_pattern():
  period = lambda **kw: transformer.layer_period(_cfg(False, **kw))  # noqa: E731
  assert period(n_layers=6) == 1
  assert period(n_layers=6, sliding_window=4) == 1  # every layer local (Mistral)
  assert period(n_layers=6, sliding_window=4, sliding_window_pattern=2) == 2  # Gemma 2
  assert period(n_layers=8, sliding_window=4, sliding_window_pattern=6) == 6  # Gemma 3: 1 group
  assert period(n_layers=4, sliding_window=4, sliding_window_pattern=6) == 1  # all local


def test_kv_cache_decoding_under_scan_matches_the_unscanned_decoder():
  flat = LanguageModel(_cfg(False, **SMALL_PATTERN))
  scanned = LanguageModel(_cfg(True, **SMALL_PATTERN))
  p = _params(flat, seed=1)
  prompts = jnp.array([[0, 0, 5, 6, 7, 9], [8, 9, 10, 11, 12, 13]], jnp.int32)
  outs = [sampling.generate(m, params, prompts, jax.random.key(3), max_new_tokens=10, eos_id=2)
          for m, params in ((flat, p), (scanned, transformer.convert_layers(p, scanned.cfg)))]
  np.testing.assert_array_equal(outs[1]["tokens"], outs[0]["tokens"])
  np.testing.assert_allclose(outs[1]["logprobs"], outs[0]["logprobs"], atol=1e-4)


@pytest.mark.parametrize("saved_scanned", [False, True])
def test_checkpoints_of_either_layout_restore_into_the_other(tmp_path, saved_scanned):
  saved_cfg = _cfg(saved_scanned, **SMALL_PATTERN)
  want_cfg = _cfg(not saved_scanned, **SMALL_PATTERN)
  params = _params(LanguageModel(saved_cfg))
  checkpoints.save_params(str(tmp_path / "ckpt"), params, {"config": {"model": saved_cfg.to_dict()}})
  mesh = shd.make_mesh(("data", "fsdp", "tensor"), (1, -1, 1))
  got = init.load_lm_params(str(tmp_path / "ckpt"), want_cfg, mesh, configs.DEFAULT_RULES)
  want = transformer.convert_layers(params, want_cfg)
  assert jax.tree.structure(got) == jax.tree.structure(want)
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)))
  target = init.abstract_params(LanguageModel(want_cfg), mesh, configs.DEFAULT_RULES)
  assert all(a.sharding == b.sharding for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(target)))


def test_stacked_layers_axis_is_replicated_and_the_rest_sharded_as_before():
  mesh = shd.make_mesh(("data", "fsdp", "tensor"), (1, 4, 2))
  flat = init.abstract_params(LanguageModel(_cfg(False, n_layers=2)), mesh, configs.DEFAULT_RULES)
  scanned = init.abstract_params(LanguageModel(_cfg(True, n_layers=2)), mesh, configs.DEFAULT_RULES)
  q_flat = flat["decoder"]["block_0"]["attn"]["query"]
  q_scan = scanned["decoder"]["layers"]["sub_0"]["attn"]["query"]
  assert q_scan.shape == (2, *q_flat.shape)
  assert tuple(q_scan.sharding.spec) == (None, *q_flat.sharding.spec) == (None, "fsdp", "tensor", None)


def test_fields_absent_or_at_their_default_give_the_decoder_of_before():
  plain = _cfg(False, n_layers=3, remat=True, dropout_rate=0.1)
  explicit = _cfg(False, n_layers=3, remat=True, dropout_rate=0.1, scan_layers=False,
                  remat_policy="nothing_saveable")
  assert "scan_layers" not in plain and "remat_policy" not in plain
  pa, pb = _params(LanguageModel(plain)), _params(LanguageModel(explicit))
  assert [k for k in pa["decoder"] if k.startswith("block_")] == ["block_0", "block_1", "block_2"]
  assert jax.tree.structure(pa) == jax.tree.structure(pb)
  run = lambda m, p: m.apply({"params": p}, TOKENS, deterministic=False,  # noqa: E731
                             rngs={"dropout": jax.random.key(1)})
  np.testing.assert_array_equal(run(LanguageModel(plain), pa), run(LanguageModel(explicit), pb))


@pytest.mark.parametrize("field,value,remat", [
    ("remat_policy", "save_everything", True), ("remat_policy", "dots_saveable", False),
    ("scan_layers", "yes", False)])
def test_bad_scan_and_remat_fields_fail_naming_the_field(field, value, remat):
  with pytest.raises(InputError, match=rf"config\.model\.{field}="):
    configs.validate_model(_cfg(False, remat=remat, **{field: value}))
