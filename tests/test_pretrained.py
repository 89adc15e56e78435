"""Hugging Face import / export (warm_jax.pretrained) against transformers' own outputs and files.

Why fixtures and not transformers in CI: torch and transformers are not dependencies of warm_jax
(they live only in the bench venv, as peers), they are large, and their numbers and file layouts
change between versions. So `benchmarks/make_hf_fixtures.py`, run in the bench venv, saved tiny
random models of every family with transformers' own `save_pretrained` (causal LM and sequence
classifier) together with what transformers computed for fixed batches (float32 and bfloat16,
right and left padding) into tests/fixtures/hf/ (its manifest.json records the versions). These
tests read those files with warm_jax alone: logits and scores must match transformers' to 1e-4 in
float32 and stay within a KL bound in bfloat16; exports must reproduce transformers' files
(tensor names, shapes, dtypes, bytes, config.json) and import back bit for bit.
`benchmarks/check_hf_export.py` does the live check with transformers in the bench venv.
"""

import functools
import json
import os
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from warm_jax import averaging, configs
from warm_jax import sharding as shd
from warm_jax.models import LanguageModel, RewardModel
from warm_jax.pretrained import (CheckpointError, ConfigError, export_hf, families, load_hf,
                                 read_spec)
from warm_jax.pretrained import convert
from warm_jax.pretrained import safetensors_io as st

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "hf")
CASES = sorted(d for d in os.listdir(FIXTURES)
               if os.path.exists(os.path.join(FIXTURES, d, "expected.npz")))
F32_TOL = 1e-4
BF16_MAX_KL, BF16_MEAN_KL = 3e-2, 3e-3  # nats, per next-token distribution (observed <= 7e-3)


def _dir(case, sub):
  return os.path.join(FIXTURES, case, sub)


@functools.lru_cache(maxsize=None)
def _expected(case):
  with np.load(os.path.join(FIXTURES, case, "expected.npz")) as f:
    return dict(f)


@functools.lru_cache(maxsize=None)
def _load(case, sub, dtype="float32"):
  return load_hf(_dir(case, sub), dtype=dtype)


def _run(pre, tokens, mask):
  """The imported model on tokens and mask (jitted once per imported checkpoint)."""
  if not hasattr(pre, "_apply"):
    model = pre.model()
    pre._apply = jax.jit(lambda p, t, m: model.apply({"params": p}, t, m))
  return np.asarray(pre._apply(pre.params, jnp.asarray(tokens), jnp.asarray(mask)))


def _bf16(bits):
  return bits.view(ml_dtypes.bfloat16).astype(np.float32)


def test_fixtures_cover_every_family_and_record_versions():
  with open(os.path.join(FIXTURES, "manifest.json")) as f:
    manifest = json.load(f)
  assert manifest["transformers"] and manifest["torch"]
  assert {c["model_type"] for c in manifest["cases"].values()} == set(families.FAMILIES)
  assert set(manifest["cases"]) == set(CASES)
  total = sum(os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(FIXTURES) for n in ns)
  assert total < 3e6


@pytest.mark.parametrize("case", CASES)
def test_float32_logits_and_scores_match_transformers(case):
  e = _expected(case)
  lm, rm = _load(case, "causal_lm"), _load(case, "seq_cls")
  assert (lm.kind, rm.kind) == ("lm", "rm") and lm.family == rm.family
  assert "bias" not in rm.params["reward_head"]
  for side in ("right", "left"):
    tokens, mask = e[f"tokens_{side}"], e[f"mask_{side}"]
    logits = _run(lm, tokens, mask)
    err = np.abs(logits - e[f"logits_f32_{side}"])[mask].max()
    assert err < F32_TOL, (side, err)
    scores = _run(rm, tokens, mask)
    assert np.abs(scores - e[f"scores_f32_{side}"]).max() < F32_TOL, side
  # The comparison can fail: the logits are far from trivial.
  assert np.abs(e["logits_f32_right"]).max() > 1.0


@pytest.mark.parametrize("case", CASES)
def test_bfloat16_next_token_distributions_are_close_to_transformers(case):
  e = _expected(case)
  lm, rm = _load(case, "causal_lm", "bfloat16"), _load(case, "seq_cls", "bfloat16")
  assert lm.params["decoder"]["embed"]["embedding"].dtype == jnp.bfloat16
  for side in ("right", "left"):
    mask = e[f"mask_{side}"]
    ours = jax.nn.log_softmax(_run(lm, e[f"tokens_{side}"], mask))
    theirs = jax.nn.log_softmax(_bf16(e[f"logits_bf16_{side}"]))
    kl = np.asarray(jnp.sum(jnp.exp(theirs) * (theirs - ours), axis=-1))[mask]
    assert kl.max() < BF16_MAX_KL and kl.mean() < BF16_MEAN_KL, (side, kl.max(), kl.mean())
    scores = _run(rm, e[f"tokens_{side}"], mask)
    np.testing.assert_allclose(scores, _bf16(e[f"scores_bf16_{side}"]), atol=0.1)


@pytest.mark.parametrize("case,field", [("mistral", "sliding_window"),
                                        ("gemma2", "attn_logit_softcap"),
                                        ("gemma2", "final_logit_softcap"),
                                        ("gemma3_text", "rope_local_theta"),
                                        ("llama3_rope", "rope_scaling")])
def test_parity_would_catch_a_missing_feature(case, field):
  """The fixtures exercise each family feature: dropping one breaks parity by far more than
  the tolerance."""
  e, lm = _expected(case), _load(case, "causal_lm")
  cfg = configs.full_model_config(lm.model_cfg)
  cfg[field] = configs.DECODER_DEFAULTS[field]
  model = LanguageModel(cfg)
  logits = np.asarray(jax.jit(lambda p, t, m: model.apply({"params": p}, t, m))(
      lm.params, e["tokens_left"], e["mask_left"]))
  assert np.abs(logits - e["logits_f32_left"])[e["mask_left"]].max() > 100 * F32_TOL


def _hf_tensors(directory):
  ckpt = st.open_checkpoint(directory)
  return {n: (ckpt.info(n).shape, ckpt.info(n).dtype, ckpt.array(n)) for n in ckpt.names()}


def _read(path):
  with open(path) as f:
    return json.load(f)


@pytest.mark.parametrize("case", CASES)
def test_export_reproduces_transformers_files_and_reimports_bit_exactly(case, tmp_path):
  for sub in ("causal_lm", "seq_cls"):
    pre = _load(case, sub)
    out = export_hf(pre.params, pre.model_cfg, str(tmp_path / sub), hf_config=pre.hf_config)
    theirs, ours = _hf_tensors(_dir(case, sub)), _hf_tensors(out)
    assert sorted(ours) == sorted(theirs)
    for name, (shape, dtype, data) in theirs.items():
      assert ours[name][:2] == (shape, dtype), name
      assert ours[name][2].tobytes() == data.tobytes(), name  # the very same bytes
    assert _read(os.path.join(out, "config.json")) == _read(os.path.join(_dir(case, sub),
                                                                          "config.json"))
    again = load_hf(out)
    assert again.model_cfg.to_dict() == pre.model_cfg.to_dict()
    flat = lambda t: {jax.tree_util.keystr(p): np.asarray(x)
                      for p, x in jax.tree_util.tree_flatten_with_path(t)[0]}
    a, b = flat(pre.params), flat(again.params)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
  assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


def test_max_position_embeddings_survives_a_smaller_decode_cache(tmp_path):
  pre = load_hf(_dir("llama3_rope", "causal_lm"), max_len=16)
  assert pre.model_cfg.max_len == 16
  out = export_hf(pre.params, pre.model_cfg, str(tmp_path / "small_cache"), hf_config=pre.hf_config)
  assert _read(os.path.join(out, "config.json"))["max_position_embeddings"] == 256


def test_export_without_the_imported_config_keeps_transformers_keys(tmp_path):
  for case in ("llama32_tied", "gemma3_text", "qwen2"):
    pre = _load(case, "seq_cls")
    out = export_hf(pre.params, pre.model_cfg, str(tmp_path / case))
    assert set(_read(os.path.join(out, "config.json"))) == set(
        _read(os.path.join(_dir(case, "seq_cls"), "config.json")))


def test_legacy_keys_add_transformers_4_rope_keys_meaning_the_same_model(tmp_path):
  for case in CASES:
    pre = _load(case, "causal_lm")
    out = export_hf(pre.params, pre.model_cfg, str(tmp_path / case), hf_config=pre.hf_config,
                    legacy_keys=True)
    hf = _read(os.path.join(out, "config.json"))
    theirs = _read(os.path.join(_dir(case, "causal_lm"), "config.json"))
    assert set(hf) - set(theirs) >= {"rope_theta", "rope_scaling"}
    assert {k: v for k, v in hf.items() if k in theirs} == theirs
    assert read_spec(out).model_cfg.to_dict() == pre.model_cfg.to_dict(), case
    # A reader that knows only the legacy keys sees the same model too.
    legacy_only = {k: v for k, v in hf.items() if k not in ("rope_parameters", "layer_types",
                                                             "_sliding_window_pattern")}
    with open(os.path.join(out, "config.json"), "w") as f:
      json.dump(legacy_only, f)
    assert read_spec(out).model_cfg.to_dict() == pre.model_cfg.to_dict(), case


def test_bfloat16_export_stores_bfloat16(tmp_path):
  pre = _load("qwen3", "causal_lm")
  out = export_hf(pre.params, pre.model_cfg, str(tmp_path / "bf16"), dtype="bfloat16",
                  hf_config=pre.hf_config)
  assert _read(os.path.join(out, "config.json"))["dtype"] == "bfloat16"
  assert {t[1] for t in _hf_tensors(out).values()} == {np.dtype(ml_dtypes.bfloat16)}
  again = load_hf(out)
  want = pre.params["decoder"]["block_1"]["mlp"]["up"]["kernel"]
  np.testing.assert_array_equal(again.params["decoder"]["block_1"]["mlp"]["up"]["kernel"],
                                np.asarray(want).astype(ml_dtypes.bfloat16).astype(np.float32))


def test_sharded_files_round_trip(tmp_path):
  pre = _load("gemma2", "seq_cls")
  out = export_hf(pre.params, pre.model_cfg, str(tmp_path / "sharded"), max_shard_bytes=20_000,
                  hf_config=pre.hf_config)
  files = sorted(os.listdir(out))
  assert st.INDEX_FILE in files and st.SINGLE_FILE not in files
  assert len([f for f in files if f.endswith(".safetensors")]) > 3
  again = load_hf(out)
  for a, b in zip(jax.tree.leaves(pre.params), jax.tree.leaves(again.params)):
    np.testing.assert_array_equal(a, b)


def test_import_onto_a_2x2x2_mesh_is_sharded_and_equal():
  mesh = shd.make_mesh(("data", "fsdp", "tensor"), (2, 2, 2))
  plain = _load("qwen3", "causal_lm")
  sharded = load_hf(_dir("qwen3", "causal_lm"), mesh=mesh, rules=configs.DEFAULT_RULES)
  q = sharded.params["decoder"]["block_0"]["attn"]["query"]  # [embed, heads, head_dim]
  assert q.sharding.spec == P("fsdp", "tensor", None)
  assert {s.data.shape for s in q.addressable_shards} == {(16, 2, 16)}
  emb = sharded.params["decoder"]["embed"]["embedding"]  # [vocab, embed]
  assert emb.sharding.spec == P("tensor", "fsdp") and len(emb.sharding.device_set) == 8
  for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(sharded.params)):
    assert a.shape == b.shape
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  e = _expected("qwen3")
  logits = _run(sharded, e["tokens_left"], e["mask_left"])
  assert np.abs(logits - e["logits_f32_left"])[e["mask_left"]].max() < F32_TOL


def test_multimodal_gemma3_checkpoint_imports_its_text_model(tmp_path):
  src = _dir("gemma3_text", "causal_lm")
  text = _read(os.path.join(src, "config.json"))
  for key in ("architectures", "dtype", "transformers_version"):
    text.pop(key)
  config = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
            "text_config": text, "vision_config": {"model_type": "siglip_vision_model"},
            "mm_tokens_per_image": 256, "image_token_index": 262144}
  ckpt = st.open_checkpoint(src)
  entries = [st.TensorEntry(n.replace("model.", "model.language_model.", 1), ckpt.info(n).shape,
                            ckpt.info(n).dtype, lambda n=n: ckpt.array(n)) for n in ckpt.names()]
  entries.append(st.TensorEntry("model.vision_tower.patch.weight", (2, 2), np.dtype("float32"),
                                lambda: np.ones((2, 2), np.float32)))
  out = tmp_path / "mm"
  out.mkdir()
  st.write_checkpoint(str(out), entries, 10 ** 9)
  (out / "config.json").write_text(json.dumps(config))
  mm = load_hf(str(out))
  assert (mm.kind, mm.family) == ("lm", "gemma3_text")
  assert mm.model_cfg.to_dict() == _load("gemma3_text", "causal_lm").model_cfg.to_dict()
  for a, b in zip(jax.tree.leaves(mm.params), jax.tree.leaves(_load("gemma3_text", "causal_lm").params)):
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------------------------
# Older config keys (transformers 4.x) mean the same model as the keys transformers 5 writes.


def _spec_of(tmp_path, case, sub, edit):
  src = _dir(case, sub)
  hf = _read(os.path.join(src, "config.json"))
  edit(hf)
  d = tmp_path / f"{case}_{sub}_{edit.__name__}"
  shutil.copytree(src, d)
  (d / "config.json").write_text(json.dumps(hf))
  return str(d)


def test_older_config_keys_give_the_same_model(tmp_path):
  def llama_old(hf):
    rope = hf.pop("rope_parameters")
    hf["rope_theta"] = rope.pop("rope_theta")
    hf["rope_scaling"] = {"type" if "factor" in rope else "rope_type": rope.pop("rope_type"), **rope}

  def gemma2_old(hf):
    hf.pop("layer_types")  # 4.x Gemma 2 configs: alternating from layer 0, implicit
    hf["rope_theta"] = hf.pop("rope_parameters")["rope_theta"]
    hf["cache_implementation"] = "hybrid"

  def gemma3_old(hf):
    hf.pop("layer_types"), hf.pop("_sliding_window_pattern")
    rope = hf.pop("rope_parameters")
    hf.update(rope_theta=rope["full_attention"]["rope_theta"],
              rope_local_base_freq=rope["sliding_attention"]["rope_theta"],
              rope_scaling={"rope_type": "linear", "factor": rope["full_attention"]["factor"]},
              sliding_window_pattern=6)

  def defaults_left_out(hf):  # keys equal to the class defaults, as 4.x sometimes omitted them
    hf.pop("tie_word_embeddings"), hf.pop("hidden_activation"), hf.pop("final_logit_softcapping")

  for case, edit in (("llama3_rope", llama_old), ("gemma2", gemma2_old),
                     ("gemma3_text", gemma3_old), ("gemma3_text", defaults_left_out)):
    for sub in ("causal_lm", "seq_cls"):
      got = read_spec(_spec_of(tmp_path, case, sub, edit)).model_cfg.to_dict()
      assert got == _load(case, sub).model_cfg.to_dict(), (case, sub)


# ----------------------------------------------------------------------------------------------
# Bad input: each error names the file and the tensor or field, before any array is made.


def _copy(tmp_path, case="llama", sub="seq_cls"):
  d = tmp_path / f"{case}_{sub}"
  shutil.copytree(_dir(case, sub), d)
  return d


def _edit_config(d, **changes):
  hf = _read(d / "config.json")
  for k, v in changes.items():
    if v is _DROP:
      hf.pop(k)
    else:
      hf[k] = v
  (d / "config.json").write_text(json.dumps(hf))


_DROP = object()


def _rewrite(d, transform):
  """Rewrites model.safetensors with transform(list of entries) -> entries."""
  ckpt = st.open_checkpoint(str(d))
  data = {n: np.array(ckpt.array(n)) for n in ckpt.names()}
  ckpt.close()
  entries = transform([st.TensorEntry(n, x.shape, x.dtype, lambda x=x: x) for n, x in data.items()])
  os.remove(d / st.SINGLE_FILE)
  st.write_checkpoint(str(d), entries, 10 ** 9)


def _no_array(*args, **kwargs):
  raise AssertionError("an array was made before the error")


@pytest.fixture
def no_arrays(monkeypatch):
  """Fails the test if any parameter array is made (errors must come first)."""
  monkeypatch.setattr(convert, "_load_one", _no_array)


@pytest.mark.parametrize("setup,match", [
    (lambda d: os.remove(d / "config.json"), r"llama_seq_cls: no config\.json"),
    (lambda d: os.remove(d / "model.safetensors"), r"llama_seq_cls: no weights"),
    (lambda d: _edit_config(d, model_type="gpt2"), r"config\.json: model_type='gpt2'"),
    (lambda d: _edit_config(d, rope_parameters={"rope_type": "yarn", "rope_theta": 1e4,
                                                "factor": 2.0}),
     r"config\.json: rope_parameters\.rope_type='yarn'"),
    (lambda d: _edit_config(d, rope_parameters={"rope_type": "dynamic", "rope_theta": 1e4,
                                                "factor": 2.0}),
     r"rope_parameters\.rope_type='dynamic'"),
    (lambda d: _edit_config(d, mlp_bias=True), r"config\.json: mlp_bias=True"),
    (lambda d: _edit_config(d, attention_bias=True), r"config\.json: attention_bias=True"),
    (lambda d: _edit_config(d, hidden_act="gelu"), r"config\.json: hidden_act='gelu'"),
    (lambda d: _edit_config(d, quantization_config={"bits": 4}),
     r"config\.json: quantization_config=.*not a field warm_jax knows"),
    (lambda d: _edit_config(d, partial_rotary_factor=0.5), r"partial_rotary_factor=0\.5"),
    (lambda d: _edit_config(d, id2label={"0": "a", "1": "b"}), r"2 labels"),
    (lambda d: _edit_config(d, architectures=["LlamaForTokenClassification"]),
     r"architectures=\['LlamaForTokenClassification'\]"),
    (lambda d: _edit_config(d, num_key_value_heads=3), r"num_key_value_heads=3"),
    (lambda d: _edit_config(d, hidden_size=48),
     r"model\.safetensors: tensor 'model\.embed_tokens\.weight' has shape \[128, 32\] but .*"
     r"config\.json implies \[128, 48\]"),
    (lambda d: _rewrite(d, lambda es: [e for e in es if e.name != "model.layers.1.mlp.up_proj.weight"]),
     r"config\.json: tensor 'model\.layers\.1\.mlp\.up_proj\.weight' .* is missing"),
    (lambda d: _rewrite(d, lambda es: es + [st.TensorEntry("model.layers.9.extra.weight", (2,),
                                                           np.dtype("float32"),
                                                           lambda: np.zeros(2, np.float32))]),
     r"model\.safetensors: tensor 'model\.layers\.9\.extra\.weight' is not part of the model"),
    (lambda d: _rewrite(d, lambda es: [st.TensorEntry(e.name, e.shape, np.dtype("int8"),
                                                      lambda e=e: e.produce().astype(np.int8))
                                       if e.name == "model.norm.weight" else e for e in es]),
     r"tensor 'model\.norm\.weight' is int8, not floating point"),
])
def test_bad_directories_fail_naming_file_and_tensor_or_field(tmp_path, no_arrays, setup, match):
  d = _copy(tmp_path)
  setup(d)
  with pytest.raises((CheckpointError, ConfigError), match=match):
    load_hf(str(d))


def test_truncated_and_corrupt_safetensors_name_file_and_tensor(tmp_path, no_arrays):
  d = _copy(tmp_path)
  path = d / st.SINGLE_FILE
  data = path.read_bytes()
  last = max(st.read_header(str(path)).values(), key=lambda t: t.end)
  path.write_bytes(data[:-1])
  with pytest.raises(CheckpointError, match=rf"model\.safetensors: tensor '{last.name}': its data "
                     r"ends at byte \d+ but the file has \d+ bytes: the file is truncated"):
    load_hf(str(d))
  path.write_bytes(data[:5])
  with pytest.raises(CheckpointError, match=r"model\.safetensors: 5 bytes, too short"):
    load_hf(str(d))
  path.write_bytes(data[:8] + b"{not json" + data[17:])
  with pytest.raises(CheckpointError, match=r"model\.safetensors: the header is not valid JSON"):
    load_hf(str(d))
  header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
  name = sorted(k for k in header if k != "__metadata__")[0]
  header[name]["data_offsets"][1] += 4
  raw = json.dumps(header).encode()
  raw += b" " * (-len(raw) % 8)
  path.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + int.from_bytes(data[:8], "little"):])
  with pytest.raises(CheckpointError, match=rf"tensor '{name}': data_offsets .* span \d+ bytes "
                     r"but shape"):
    load_hf(str(d))


def test_sharded_index_problems_name_index_shard_and_tensor(tmp_path, monkeypatch):
  pre = _load("mistral", "causal_lm")
  d = export_hf(pre.params, pre.model_cfg, str(tmp_path / "sharded"), max_shard_bytes=30_000,
                hf_config=pre.hf_config)
  monkeypatch.setattr(convert, "_load_one", _no_array)  # from here on, errors come first
  index_path = os.path.join(d, st.INDEX_FILE)
  index = _read(index_path)
  shard = sorted(set(index["weight_map"].values()))[1]
  os.rename(os.path.join(d, shard), os.path.join(d, shard + ".gone"))
  with pytest.raises(CheckpointError, match=rf"index\.json puts \d+ tensors .* in shard {shard}, "
                     "which does not exist"):
    load_hf(d)
  os.rename(os.path.join(d, shard + ".gone"), os.path.join(d, shard))
  name = next(n for n, s in index["weight_map"].items() if s == shard)
  other = next(s for s in index["weight_map"].values() if s != shard)
  broken = dict(index, weight_map=dict(index["weight_map"], **{name: other}))
  with open(index_path, "w") as f:
    json.dump(broken, f)
  with pytest.raises(CheckpointError, match=rf"puts tensor '{name}' in {other}, whose header does "
                     "not hold it"):
    load_hf(d)
  with open(index_path, "w") as f:
    json.dump(dict(index, weight_map=dict(index["weight_map"], **{name: "../elsewhere.safetensors"})), f)
  with pytest.raises(CheckpointError, match=rf"tensor '{name}' maps to '\.\./elsewhere\.safetensors', "
                     "not a file name"):
    load_hf(d)


@pytest.mark.parametrize("case,changes,match", [
    ("gemma2", {"use_bidirectional_attention": True}, r"use_bidirectional_attention=True"),
    ("gemma3_text", {"rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1e3},
                                         "sliding_attention": {"rope_type": "linear", "factor": 2.0,
                                                               "rope_theta": 10.0}}},
     r"rope_parameters\.sliding_attention\.rope_type='linear'"),
    ("gemma3_text", {"layer_types": ["sliding_attention", "full_attention", "full_attention",
                                     "sliding_attention", "sliding_attention", "full_attention"]},
     r"layer_types=\['sliding', 'full', 'full', 'sliding', 'sliding', 'full'\]: .*has none"),
    ("qwen2", {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 1,
               "layer_types": _DROP}, r"layer_types=\['full', 'sliding'\]"),
    ("mistral", {"layer_types": ["full_attention", "sliding_attention"]},
     r"layer_types=.*MistralModel applies sliding_window to every layer"),
    ("gemma", {"hidden_act": "relu"}, r"hidden_act='relu'"),
])
def test_unsupported_family_settings_fail_naming_the_field(tmp_path, no_arrays, case, changes, match):
  d = _copy(tmp_path, case, "causal_lm")
  _edit_config(d, **changes)
  with pytest.raises(ConfigError, match=match):
    load_hf(str(d))


def test_kind_must_match_and_export_refuses_an_existing_directory(tmp_path):
  with pytest.raises(CheckpointError, match=r"holds a language model .* not kind='rm'"):
    load_hf(_dir("llama", "causal_lm"), kind="rm")
  pre = _load("llama", "causal_lm")
  (tmp_path / "taken").mkdir()
  with pytest.raises(FileExistsError, match="taken exists"):
    export_hf(pre.params, pre.model_cfg, str(tmp_path / "taken"))
  with pytest.raises(ValueError, match=r"config\.model\.qkv_bias=False: Qwen2ForCausalLM needs True"):
    export_hf(pre.params, pre.model_cfg, str(tmp_path / "q"), family="qwen2")


# ----------------------------------------------------------------------------------------------
# Export of models trained here, of WARM averages, and interrupted exports.


def _native(kind, **kw):
  """A model as trained here (tied head scaled by 1/sqrt(d), a reward head with a bias) with
  random params drawn in numpy (no init to compile), its jitted apply and padded tokens."""
  cfg = configs.model_config("tiny", vocab_size=64, max_len=32)
  cfg.update(n_heads=4, n_kv_heads=2, **kw)  # d_model 32: sqrt(32) is not a power of two
  model = (RewardModel if kind == "rm" else LanguageModel)(cfg)
  tokens = jnp.asarray(np.random.default_rng(0).integers(3, 64, (2, 10)), jnp.int32)
  shapes = nn.unbox(jax.eval_shape(lambda: model.init(jax.random.key(0), tokens)["params"]))
  rng = np.random.default_rng(1)
  params = jax.tree_util.tree_map_with_path(
      lambda path, x: jnp.asarray((path[-1].key == "scale") + rng.standard_normal(x.shape)
                                  * (0.3 if len(x.shape) > 1 else 0.1), jnp.float32), shapes)
  apply = jax.jit(lambda p, t, m: model.apply({"params": p}, t, m))
  return apply, cfg, params, tokens.at[1, 7:].set(0)


def test_native_policy_exports_as_llama_with_its_scaled_tied_head_untied(tmp_path):
  apply, cfg, params, tokens = _native("lm")
  assert cfg.tie_embeddings and configs.model_field(cfg, "scale_tied_logits")
  out = export_hf(params, cfg, str(tmp_path / "policy"))
  hf = _read(os.path.join(out, "config.json"))
  assert hf["architectures"] == ["LlamaForCausalLM"] and hf["tie_word_embeddings"] is False
  assert (hf["pad_token_id"], hf["bos_token_id"], hf["eos_token_id"]) == (0, 1, 2)
  assert set(hf) == set(_read(os.path.join(_dir("llama", "causal_lm"), "config.json")))
  lm_head = _hf_tensors(out)["lm_head.weight"][2]
  np.testing.assert_allclose(lm_head, np.asarray(params["decoder"]["embed"]["embedding"])
                             / np.sqrt(32), rtol=1e-6)
  again = load_hf(out)
  mask = tokens != 0
  np.testing.assert_allclose(_run(again, tokens, mask)[np.asarray(mask)],
                             np.asarray(apply(params, tokens, mask))[np.asarray(mask)],
                             atol=1e-5)


def test_native_reward_model_bias_is_refused_unless_dropped(tmp_path):
  apply, cfg, params, tokens = _native("rm")
  bias = float(params["reward_head"]["bias"][0])
  assert bias != 0.0
  with pytest.raises(ValueError, match=r"reward_head/bias=.*LlamaForSequenceClassification's "
                     r"score layer has no bias.*drop_reward_bias=True"):
    export_hf(params, cfg, str(tmp_path / "rm"))
  assert not os.path.exists(tmp_path / "rm")
  out = export_hf(params, cfg, str(tmp_path / "rm"), drop_reward_bias=True)
  again = load_hf(out)
  mask = tokens != 0
  want = np.asarray(apply(params, tokens, mask))
  np.testing.assert_allclose(_run(again, tokens, mask), want - bias, atol=1e-5)
  zero = {**params, "reward_head": {**params["reward_head"],
                                    "bias": jnp.zeros_like(params["reward_head"]["bias"])}}
  export_hf(zero, cfg, str(tmp_path / "rm0"))  # a zero bias is exact: no flag needed


def test_warm_average_of_imported_reward_models_exports_exactly(tmp_path):
  a = _load("gemma2", "seq_cls")
  b_params = jax.tree.map(lambda x: x * 1.5 + 0.01, a.params)
  avg = averaging.average([a.params, b_params], [0.25, 0.75])
  out = export_hf(avg, a.model_cfg, str(tmp_path / "warm"), hf_config=a.hf_config)
  again = load_hf(out)
  for x, y in zip(jax.tree.leaves(avg), jax.tree.leaves(again.params)):
    np.testing.assert_array_equal(x, y)
  assert averaging.model_fingerprint({"model": again.model_cfg.to_dict()}) == \
      averaging.model_fingerprint({"model": a.model_cfg.to_dict()})


def test_interrupted_export_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
  pre = _load("llama", "seq_cls")
  real = st.write_safetensors

  def dies_halfway(path, entries, metadata=None):
    real(path, entries[: len(entries) // 2], metadata)
    raise KeyboardInterrupt("killed")
  monkeypatch.setattr(st, "write_safetensors", dies_halfway)
  with pytest.raises(KeyboardInterrupt):
    export_hf(pre.params, pre.model_cfg, str(tmp_path / "out"))
  assert os.listdir(tmp_path) == []
  monkeypatch.setattr(st, "write_safetensors", real)
  first = export_hf(pre.params, pre.model_cfg, str(tmp_path / "out"))
  doubled = jax.tree.map(lambda x: 2 * x, pre.params)
  monkeypatch.setattr(st, "write_safetensors", dies_halfway)
  with pytest.raises(KeyboardInterrupt):  # overwrite interrupted: the old export stays whole
    export_hf(doubled, pre.model_cfg, first, overwrite=True)
  monkeypatch.setattr(st, "write_safetensors", real)
  assert sorted(os.listdir(tmp_path)) == ["out"]
  kept = load_hf(first)
  np.testing.assert_array_equal(kept.params["reward_head"]["kernel"],
                                pre.params["reward_head"]["kernel"])
