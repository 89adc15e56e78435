"""The scoring API (load_reward_model / load_averaged / load_ensemble: strings in, rewards out).
The notebook built on it, notebooks/warm.ipynb, runs in tests/test_warm.py on a tiny main job."""

import os

import jax
import numpy as np
import pytest
from test_averaging import close, rm_params, save_run, tiny_config
from warm_jax import averaging, checkpoints, scoring
from warm_jax.data import pipeline
from warm_jax.models import RewardModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def two_runs(tmp_path):
  c = tiny_config(n_layers=1)
  return c, [save_run(tmp_path / f"rm{s}", c, rm_params(c, s)) for s in range(2)]


def _reference(config, params, tok, prompts, responses):
  rows = np.stack([pipeline.pad_to(pipeline.join_prompt_response(
      tok.encode(p), tok.encode(r), config.data.max_len, tok.bos_id, tok.eos_id), config.data.max_len)
      for p, r in zip(prompts, responses)])
  model = RewardModel(config.model)
  return np.asarray(jax.jit(lambda p, t: model.apply({"params": p}, t))(params, rows))


def test_load_reward_model_scores_strings_in_batches(two_runs, toy_data):
  config, runs = two_runs
  tok = toy_data["tokenizer"]
  rm = scoring.load_reward_model(runs[0], tokenizer=tok, batch_size=4)
  prompts = ["xyz", "zz", "x", "yyx", "zy"]
  responses = ["aaab", "ab", "aaaaab", "abb", "b"]
  scores = rm.score(prompts, responses)  # 5 pairs: a full batch of 4 and a padded one
  assert scores.shape == (5,) and scores.dtype == np.float32
  want = _reference(config, checkpoints.restore_params(runs[0]), tok, prompts, responses)
  np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-6)
  assert np.ptp(scores) > 0
  one_prompt = _reference(config, rm.params, tok, ["xyz", "xyz"], ["aaab", "ab"])
  np.testing.assert_allclose(rm.score("xyz", ["aaab", "ab"]), one_prompt, rtol=1e-5, atol=1e-6)
  assert rm.score([], []).shape == (0,)
  with pytest.raises(ValueError, match="2 prompts and 3 responses"):
    rm.score(["a", "b"], ["a", "b", "c"])


def test_each_batch_is_scored_without_its_padding_columns(two_runs, toy_data):
  """A batch of short rows runs at its own width (a multiple of 16), not the run's max_len, with
  the rewards of full-width rows."""
  config, runs = two_runs
  tok = toy_data["tokenizer"]
  rm = scoring.load_reward_model(runs[0], tokenizer=tok, batch_size=2)
  widths, fn = [], rm._fn
  rm._fn = lambda p, t, m: (widths.append(t.shape[1]), fn(p, t, m))[1]
  prompts, responses = ["x", "zy", "xyz" * 6, "z"], ["ab", "b", "aab" * 6, "abb"]
  tokens, mask = rm.encode(prompts, responses)
  used = [int(np.flatnonzero(m)[-1]) + 1 for m in mask]
  assert max(used[:2]) <= 16 < max(used[2:]) and tokens.shape[1] > 32
  want = _reference(config, rm.params, tok, prompts, responses)
  np.testing.assert_allclose(rm.score(prompts, responses), want, rtol=1e-5, atol=1e-6)
  assert widths == [16, -(-max(used[2:]) // 16) * 16]


def test_load_averaged_is_the_weight_average_and_ensemble_averages_predictions(two_runs, toy_data,
                                                                                tmp_path):
  config, runs = two_runs
  tok = toy_data["tokenizer"]
  prompts, responses = ["xy", "zzz", "x"], ["aab", "abb", "aaaab"]
  warm = scoring.load_averaged(runs, [0.25, 0.75], tokenizer=tok, batch_size=4)
  params = averaging.average([checkpoints.restore_params(r) for r in runs], [0.25, 0.75])
  np.testing.assert_allclose(warm.score(prompts, responses),
                             _reference(config, params, tok, prompts, responses), rtol=1e-5, atol=1e-6)
  assert warm.meta["weights"] == [0.25, 0.75]
  assert sorted(os.listdir(tmp_path)) == ["rm0", "rm1"]  # load_averaged writes nothing
  # A written average loads like any other checkpoint.
  averaging.average_checkpoints(runs, [0.25, 0.75], out=str(tmp_path / "warm"))
  again = scoring.load_reward_model(str(tmp_path / "warm"), tokenizer=tok, batch_size=4)
  close(again.params, warm.params)
  # ENS: mean and variance of the members' rewards.
  ens = scoring.load_ensemble(runs, tokenizer=tok, batch_size=4)
  each = np.stack([_reference(config, checkpoints.restore_params(r), tok, prompts, responses)
                   for r in runs])
  mean, var = ens.score(prompts, responses, return_variance=True)
  np.testing.assert_allclose(mean, each.mean(0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(var, each.var(0), rtol=1e-4, atol=1e-7)
  assert len(ens) == 2


def test_load_onto_a_sharded_mesh(two_runs, toy_data):
  _, runs = two_runs
  rm = scoring.load_reward_model(runs[0], tokenizer=toy_data["tokenizer"], batch_size=8,
                                      devices=jax.devices(), mesh_shape=(2, 2, 2))
  q = rm.params["decoder"]["block_0"]["attn"]["query"]
  assert len({s.device for s in q.addressable_shards}) == 8
  single = scoring.load_reward_model(runs[0], tokenizer=toy_data["tokenizer"], batch_size=8)
  np.testing.assert_allclose(rm.score(["xy", "z"], ["ab", "aab"]),
                             single.score(["xy", "z"], ["ab", "aab"]), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_load_reward_models_share_one_scorer_and_trimming_changes_no_reward(two_runs, toy_data):
  config, runs = two_runs
  tok = toy_data["tokenizer"]
  rms = scoring.load_reward_models(runs, tokenizer=tok, batch_size=4)
  prompts, responses = ["xy", "zzz", "x"], ["aab", "abb", "aaaab"]
  for rm, run in zip(rms, runs):
    np.testing.assert_allclose(rm.score(prompts, responses),
                               _reference(config, checkpoints.restore_params(run), tok, prompts,
                                          responses), rtol=1e-5, atol=1e-6)
  assert rms[0]._fn is rms[1]._fn  # one compiled function for every member
  # with_params swaps only the parameters.
  swapped = rms[0].with_params(rms[1].params)
  np.testing.assert_allclose(swapped.score(prompts, responses), rms[1].score(prompts, responses))
  # Dropping the all-padding columns (right-padded rows) leaves every reward unchanged.
  tokens, mask = rms[0].encode(prompts, responses)
  trimmed = pipeline.trim_padding(tokens, mask, multiple=4)
  assert trimmed[0].shape[1] < tokens.shape[1]
  np.testing.assert_allclose(rms[0].score_tokens(*trimmed), rms[0].score_tokens(tokens, mask),
                             rtol=1e-5, atol=1e-6)
