"""Averaging Hugging Face directories (`python -m warm_jax.average`, `load_averaged`): the float32
weighted mean in the stored dtype, tensor by tensor; bad input refused before anything is written,
naming the file and the tensor; and end to end: a tiny Hugging Face model, two reward models
trained from it, WARM, export, load the export, the same scores."""

import json
import os
import shutil

import jax
import numpy as np
import pytest
from conftest import experiment, toy_pairs, write_tiny_hf

from warm_jax import average, checkpoints, pretrained, scoring
from warm_jax.averaging import hf
from warm_jax.pretrained import safetensors_io as st


def _tensors(directory):
  ckpt = st.open_checkpoint(directory)
  out = {n: np.array(ckpt.array(n)) for n in ckpt.names()}
  ckpt.close()
  return out


@pytest.fixture(scope="module")
def members(tmp_path_factory):
  root = tmp_path_factory.mktemp("members")
  return [write_tiny_hf(root / f"rm{i}", "rm", seed=i, dtype="bfloat16") for i in range(3)]


def test_average_is_the_float32_weighted_mean_in_the_stored_dtype(members, tmp_path, capsys):
  out = str(tmp_path / "warm")
  assert average.main(["--ckpt", members[0], "--ckpt", "hf:" + members[1], "--ckpt", members[2],
                       "--weights", "1", "2", "1", "--out", out]) == 0
  assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["format"] == "hf"
  got, inputs = _tensors(out), [_tensors(d) for d in members]
  w = [np.float32(0.25), np.float32(0.5), np.float32(0.25)]
  assert set(got) == set(inputs[0])
  for name, x in got.items():
    want = w[0] * inputs[0][name].astype(np.float32)
    for wi, t in zip(w[1:], inputs[1:]):
      want = want + wi * t[name].astype(np.float32)
    assert x.dtype == inputs[0][name].dtype  # bfloat16, as stored
    np.testing.assert_array_equal(x, want.astype(x.dtype))
  with open(os.path.join(out, "config.json"), "rb") as a, open(
      os.path.join(members[0], "config.json"), "rb") as b:
    assert a.read() == b.read()
  assert os.path.exists(os.path.join(out, "tokenizer.json"))
  assert hf.read_meta(out)["weights"] == [0.25, 0.5, 0.25]
  # In memory (load_averaged) it is the same model as the written directory, bit for bit.
  mem = hf.load_averaged_hf(members, [1, 2, 1])
  disk = pretrained.load_hf(out)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               mem.params, disk.params)
  prompts, responses = ["tldr : a", "tldr : b c"], ["x y", "z"]
  np.testing.assert_array_equal(scoring.load_averaged(members, weights=[1, 2, 1]).score(
      prompts, responses), scoring.load_reward_model(out).score(prompts, responses))


def _without_tensor(src, dst, name):
  shutil.copytree(src, dst)
  ckpt = st.open_checkpoint(src)
  entries = [st.TensorEntry(n, ckpt.info(n).shape, ckpt.info(n).dtype,
                            lambda n=n: np.array(ckpt.array(n))) for n in ckpt.names() if n != name]
  st.write_safetensors(os.path.join(dst, st.SINGLE_FILE), entries)
  ckpt.close()
  return str(dst)


def test_bad_inputs_fail_naming_file_and_tensor_before_anything_is_written(members, tmp_path,
                                                                           capsys):
  out = tmp_path / "out"
  other_vocab = write_tiny_hf(tmp_path / "v256", "rm", vocab_size=256, dtype="bfloat16")
  missing = _without_tensor(members[1], tmp_path / "missing", "model.norm.weight")
  truncated = str(tmp_path / "truncated")
  shutil.copytree(members[1], truncated)
  weights = os.path.join(truncated, st.SINGLE_FILE)
  os.truncate(weights, os.path.getsize(weights) - 64)
  cases = [
      ([str(tmp_path / "a_run")], "a warm_jax checkpoint"),
      ([other_vocab], "vocab_size: 320 in .*rm0/config.json vs 256"),
      ([missing], "'model.norm.weight' is missing"),
      ([truncated], f"{weights}: tensor '.*': its data ends at byte .* the file is truncated"),
  ]
  for extra, match in cases:
    args = ["--ckpt", members[0], *sum((["--ckpt", e] for e in extra), []), "--out", str(out)]
    assert average.main(args) == 2
    assert __import__("re").search(match, capsys.readouterr().err), match
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if ".tmp-" in p]
  with pytest.raises(st.CheckpointError, match="'model.norm.weight' is missing"):
    scoring.load_averaged([members[0], missing])
  assert average.main(["--ckpt", members[0], "--ckpt", members[1] + "@3", "--out", str(out)]) == 2
  assert average.main(["--ckpt", members[0], "--ckpt", members[1], "--out", str(out),
                       "--out_format", "warm_jax"]) == 2
  os.makedirs(out)
  assert average.main(["--ckpt", members[0], "--ckpt", members[1], "--out", str(out)]) == 2
  assert "exists" in capsys.readouterr().err


@pytest.mark.slow
def test_hf_model_to_two_rms_to_warm_to_hf_export_scores_the_same(tiny_hf, tmp_path):
  from warm_jax.studies import reward_model as rm_study
  c = experiment("reward_model").get_config("tiny")
  c.init_from = "hf:" + tiny_hf["lm"]
  c.train.update(num_steps=3, eval_every=3, ckpt_every=3, eval_batches=1)
  c.train.eval_splits = ("validation",)
  c.optim.lr = 1e-2
  sources = {"train": toy_pairs(32), "validation": toy_pairs(8, 1)}
  runs = []
  for seed in (0, 1):
    c.seed, c.data.seed = seed, seed
    runs.append(str(tmp_path / f"rm{seed}"))
    rm_study.main(c, runs[-1], sources)
  saved = checkpoints.read_meta(os.path.join(runs[0], "checkpoints"))["config"]
  assert saved["data"]["tokenizer"] == c.init_from and saved["model"]["vocab_size"] == 320
  out = str(tmp_path / "warm_hf")
  assert average.main(["--ckpt", runs[0], "--ckpt", runs[1], "--out", out, "--out_format", "hf",
                       "--quiet"]) == 0
  with open(os.path.join(out, "config.json")) as f:
    exported = json.load(f)
  assert exported["architectures"] == ["LlamaForSequenceClassification"]
  assert exported["pad_token_id"] == exported["eos_token_id"] == 2
  warm = scoring.load_averaged(runs)
  loaded = scoring.load_reward_model("hf:" + out, max_len=warm.max_len)
  recs = sources["validation"]
  prompts, responses = [r["prompt"] for r in recs], [r["chosen"] for r in recs]
  a, b = warm.score(prompts, responses), loaded.score(prompts, responses)
  assert np.ptp(a) > 0  # trained: not a constant
  np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)
