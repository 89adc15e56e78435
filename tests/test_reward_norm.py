"""Reward statistics stored with the model (`warm_jax.reward_norm`): normalised scores, refusals of
missing and stale statistics, WARM and ENS, and their users (RL's weighted reward, the soups'
norm stage, best-of-N's ENS); the reward-model loss's centering term."""

import json
import os
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ToyTokenizer, experiment, make_rm, toy_pairs

from warm_jax import losses, multi_objective, reward_norm, scoring
from warm_jax.errors import InputError

PROMPTS = [f"post number {i} about cats" for i in range(12)]
RESPONSES = [("a short summary " * (1 + i % 4)).strip() for i in range(12)]


@pytest.fixture(scope="module")
def rms(tmp_path_factory):
  """Three tiny reward models without statistics (a, b = 3 a - 2, c) and copies of them with
  statistics stored on (PROMPTS, RESPONSES): a_s, b_s, c_s."""
  root = tmp_path_factory.mktemp("rms")
  out = {"a": make_rm(root / "a", seed=0)}
  out["b"] = make_rm(root / "b", base=out["a"], scale=3.0, shift=-2.0)
  out["c"] = make_rm(root / "c", seed=1)
  for k in ("a", "b", "c"):
    out[k + "_s"] = str(shutil.copytree(out[k], root / (k + "_s")))
  for rm in scoring.load_reward_models([out[k + "_s"] for k in ("a", "b", "c")]):
    reward_norm.store(rm, reward_norm.compute(rm, PROMPTS, RESPONSES, {"split": "test"}))
  return out


def test_affine_transform_of_the_rewards_gives_the_same_normalized_scores(rms):
  ra, rb = scoring.load_reward_models([rms["a_s"], rms["b_s"]])
  texts = ["another text " * n for n in range(1, 7)]
  raw_a, raw_b = ra.score(PROMPTS[:6], texts), rb.score(PROMPTS[:6], texts)
  np.testing.assert_allclose(raw_b, 3.0 * raw_a - 2.0, rtol=1e-4, atol=1e-4)
  assert not np.allclose(raw_a, raw_b)
  np.testing.assert_allclose(ra.score(PROMPTS[:6], texts, normalized=True),
                             rb.score(PROMPTS[:6], texts, normalized=True), atol=2e-5)
  assert rb.norm.std == pytest.approx(3.0 * ra.norm.std, rel=1e-5)
  # What was stored is what was read back, and normalising is (r - mean) / std.
  assert ra.norm.reference == {"split": "test", "rewards": 12}
  raw = ra.score(PROMPTS, RESPONSES)
  assert ra.norm.mean == pytest.approx(raw.mean()) and ra.norm.std == pytest.approx(raw.std())
  np.testing.assert_allclose(ra.score(PROMPTS, RESPONSES, normalized=True),
                             (raw - ra.norm.mean) / ra.norm.std, rtol=1e-5, atol=1e-6)


def test_missing_and_stale_statistics_are_refused(rms, tmp_path):
  with pytest.raises(InputError, match=r"has no stored reward statistics \(reward_norm.json\)"):
    scoring.load_reward_model(rms["a"]).score(PROMPTS, RESPONSES, normalized=True)
  # Another model's statistics copied over: they do not belong to these parameters.
  c = str(shutil.copytree(rms["c"], tmp_path / "c"))
  shutil.copy(os.path.join(rms["a_s"], reward_norm.FILE), os.path.join(c, reward_norm.FILE))
  rc = scoring.load_reward_model(c)
  with pytest.raises(InputError, match=rf"{c}/reward_norm.json: stale reward statistics"):
    rc.score(PROMPTS, RESPONSES, normalized=True)
  # with_params is another model: it does not inherit them.
  assert rc.norm is not None and rc.with_params(rc.params).norm is None


def test_a_warm_average_has_its_own_statistics_never_the_members(rms, tmp_path):
  from warm_jax import averaging
  warm = scoring.load_averaged([rms["a_s"], rms["c_s"]])
  assert warm.norm is None
  with pytest.raises(InputError, match="WARM.*never averaged from its members'"):
    warm.score(PROMPTS, RESPONSES, normalized=True)
  norm = reward_norm.compute(warm, PROMPTS, RESPONSES)  # recomputed on the average itself
  with pytest.raises(InputError, match="exists only in memory"):
    reward_norm.store(warm, norm)
  warm.norm = norm
  assert reward_norm.require(warm) is norm
  # A member's file copied onto a written average is refused.
  out = str(tmp_path / "warm")
  averaging.average_checkpoints([rms["a_s"], rms["c_s"]], out=out)
  assert reward_norm.read(out) is None  # the average writes none
  shutil.copy(os.path.join(rms["a_s"], reward_norm.FILE), os.path.join(out, reward_norm.FILE))
  with pytest.raises(InputError, match="stale reward statistics"):
    reward_norm.require(scoring.load_reward_model(out))


@pytest.mark.parametrize("content, match", [
    ("{not json", "not valid JSON"),
    (json.dumps([1]), "expected a JSON object, got list"),
    (json.dumps({"mean": 0.0, "std": 0.0, "digest": []}), "field 'std' must be positive"),
    (json.dumps({"mean": "0", "std": 1.0, "digest": []}), "field 'mean' must be a finite number"),
    (json.dumps({"mean": 0.0, "std": 1.0}), "field 'digest' must be a list"),
])
def test_a_malformed_statistics_file_names_the_file_and_field(tmp_path, content, match):
  (tmp_path / reward_norm.FILE).write_text(content)
  with pytest.raises(InputError, match=f"{tmp_path}/reward_norm.json: {match}"):
    reward_norm.read(str(tmp_path))


def test_best_of_n_ens_of_members_with_statistics_averages_their_standardised_rewards(rms):
  import ml_collections
  from warm_jax.studies import best_of_n
  cfg = lambda paths: ml_collections.ConfigDict(  # noqa: E731
      {"reward": {"paths": tuple(paths), "combine": "ensemble", "name": ""}})
  raw, _ = best_of_n.load_reward(cfg([rms["a"], rms["c"]]))
  assert isinstance(raw, scoring.EnsembleScorer)  # no statistics: today's ENS
  ens, _ = best_of_n.load_reward(cfg([rms["a_s"], rms["c_s"]]))
  members = [t[0] for t in ens.terms]
  assert [t[1] for t in ens.terms] == [0.5, 0.5]
  np.testing.assert_allclose(
      ens.score(PROMPTS, RESPONSES),
      np.mean([m.score(PROMPTS, RESPONSES, normalized=True) for m in members], axis=0),
      rtol=1e-5, atol=1e-6)
  with pytest.raises(InputError, match=f"{rms['c']}.*has no stored reward statistics"):
    best_of_n.load_reward(cfg([rms["a_s"], rms["c"]]))


def _rms_config(paths, offsets=(), scales=()):
  import ml_collections
  c = experiment("rl").get_config("tiny")
  c.reward = ml_collections.ConfigDict(dict(kind="rms", path="", paths=tuple(paths),
                                            weights=(0.3, 0.7), offsets=tuple(offsets),
                                            scales=tuple(scales)))
  return c


def test_rl_and_morl_use_stored_statistics_as_the_soups_recompute_them(rms):
  from warm_jax.studies import rewarded_soups, rl
  stored, plain = [rms["a_s"], rms["c_s"]], [rms["a"], rms["c"]]
  # Recomputed as the soups' norm stage does: standardisation of the scorers' rewards.
  recomputed = [multi_objective.standardisation(s.score(PROMPTS, RESPONSES))
                for s in scoring.load_reward_models(plain)]
  offsets_scales = lambda w: [t[2:] for t in w.terms]  # noqa: E731
  explicit = rl.weighted_reward(_rms_config(plain, *zip(*recomputed)))
  by_stored = rl.weighted_reward(_rms_config(stored))
  assert offsets_scales(by_stored) == offsets_scales(explicit) == recomputed  # bit for bit
  assert offsets_scales(rl.weighted_reward(_rms_config(plain))) == [(0.0, 1.0), (0.0, 1.0)]
  # Explicit offsets and scales win over stored ones; mixing with and without is refused.
  assert offsets_scales(rl.weighted_reward(_rms_config(stored, (0.0, 0.0), (1.0, 1.0)))) == \
      [(0.0, 1.0), (0.0, 1.0)]
  with pytest.raises(InputError, match=r"config.reward.paths\[1\]=.*: no stored reward statistics"):
    rl.weighted_reward(_rms_config([rms["a_s"], rms["c"]]))
  morl = multi_objective.WeightedReward.from_stored([t[0] for t in by_stored.terms], [0.3, 0.7])
  assert offsets_scales(morl) == recomputed
  # The soups' norm stage: stored statistics when present, else None (it recomputes).
  config = experiment("rewarded_soups").get_config("tiny")
  assert rewarded_soups.stored_statistics(config, plain) is None
  assert rewarded_soups.stored_statistics(config, stored) == {
      "offsets": [x[0] for x in recomputed], "scales": [x[1] for x in recomputed],
      "stored": [{"split": "test", "rewards": 12}] * 2}


@pytest.mark.slow
def test_rl_with_stored_statistics_equals_rl_with_recomputed_ones(rms, tmp_path):
  """Two tiny RL runs against the same weighted reward: statistics recomputed and passed in the
  config (the soups' norm stage), and statistics stored with the reward models."""
  from test_policy import rl_config
  from warm_jax.models import LanguageModel
  from warm_jax.studies import rl
  from warm_jax.train import policy
  plain = [rms["a"], rms["c"]]
  recomputed = [multi_objective.standardisation(s.score(PROMPTS, RESPONSES))
                for s in scoring.load_reward_models(plain)]
  by_config = rl.weighted_reward(_rms_config(plain, *zip(*recomputed))).score
  by_stored = rl.weighted_reward(_rms_config([rms["a_s"], rms["c_s"]])).score
  c = rl_config("reinforce")
  c.train.update(num_steps=2, eval_every=2, ckpt_every=2)
  model = LanguageModel(c.model)
  ref = nn.unbox(model.init(jax.random.key(0), jnp.ones((1, 4), jnp.int32))["params"])
  prompts = {"train": [{"prompt": "xyz"[i % 3] * 3} for i in range(32)],
             "validation": [{"prompt": "zyx"[i % 3] * 3} for i in range(8)]}
  runs = [policy.train(c, str(tmp_path / name), prompts, ToyTokenizer(), fn, fn, ref)
          for name, fn in (("config", by_config), ("stored", by_stored))]
  for x, y in zip(jax.tree.leaves(runs[0]["state"].params), jax.tree.leaves(runs[1]["state"].params)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  logs = [[json.loads(line) for line in open(tmp_path / name / "metrics.jsonl")]
          for name in ("config", "stored")]
  assert logs[0] == logs[1] and any("reward/proxy" in str(row) for row in logs[0])


# ---------------------------------------------------------------- the reward model's training
def test_center_rewards_adds_trl_centering_term_and_is_off_by_default():
  from warm_jax.data import pipeline
  from warm_jax.train import reward_model as rm_train
  from warm_jax.train import state as state_lib
  c = experiment("reward_model").get_config("tiny")
  c.model.vocab_size = 64
  setup = rm_train.build(c)
  model = setup.model
  p = nn.unbox(jax.jit(model.init)(jax.random.key(0), jnp.ones((1, 8), jnp.int32))["params"])
  p["reward_head"]["kernel"] = jax.random.normal(jax.random.key(1), p["reward_head"]["kernel"].shape)
  state = state_lib.TrainState(step=jnp.int32(0), params=p, opt_state=setup.tx.init(p))
  enc = pipeline.PairEncoder(ToyTokenizer(), 16)
  rows = [enc(r) for r in toy_pairs(4)]
  batch = {k: jnp.asarray(np.stack([r[k] for r in rows])) for k in ("chosen", "rejected")}
  rc, rr = jax.jit(lambda p, b: rm_train.pair_rewards(
      model, p, b, jax.random.fold_in(jax.random.key(7), 0)))(p, batch)
  bt = jnp.mean(losses.bradley_terry_loss(rc, rr))
  _, plain = jax.jit(rm_train.make_train_step(model, setup.tx, setup.schedule, 0.0, 7))(state, batch)
  _, half = jax.jit(rm_train.make_train_step(model, setup.tx, setup.schedule, 0.0, 7,
                                             center_rewards=0.5))(state, batch)
  assert float(plain["loss"]) == pytest.approx(float(bt), rel=1e-6)  # the default: no term
  assert float(half["loss"]) == pytest.approx(float(bt + 0.5 * jnp.mean((rc + rr) ** 2)), rel=1e-6)
  assert float(losses.center_rewards_penalty(jnp.array([1.0, -2.0]), jnp.array([1.0, 0.0]))) == 4.0


def test_center_rewards_and_store_norm_rules():
  from warm_jax import configs
  from warm_jax.train import reward_model as rm_train
  c = experiment("reward_model").get_config("tiny")
  rm_train.validate_config(c)  # absent: allowed (existing configs do not have them)
  c.train.center_rewards = -0.1
  with pytest.raises(InputError, match="config.train.center_rewards=-0.1: must be a finite number >= 0"):
    rm_train.validate_config(c)
  c.train.center_rewards = 0.01
  c.train.store_norm = 3
  with pytest.raises(InputError, match="config.train.store_norm=3: must be a split name"):
    configs.check(c, rm_train.RULES)


@pytest.mark.slow
def test_training_stores_statistics_that_go_stale_when_training_resumes(tmp_path):
  from warm_jax.studies import reward_model
  c = experiment("reward_model").get_config("tiny")
  c.model.vocab_size = 64
  c.train.update(num_steps=2, eval_every=2, ckpt_every=2, eval_batches=1, store_norm="validation")
  sources = {"train": toy_pairs(64, 0), "validation": toy_pairs(16, 1), "ood": toy_pairs(8, 2)}
  w = str(tmp_path / "rm")
  reward_model.main(c, w, sources, ToyTokenizer())
  rm = scoring.load_reward_model(w, tokenizer=ToyTokenizer())
  assert rm.norm is not None and rm.norm.reference["split"] == "validation"
  prompts, responses = reward_norm.reference_texts(sources["validation"])
  assert len(responses) == 32 and rm.norm.reference["rewards"] == 32
  raw = rm.score(prompts, responses)
  assert rm.norm.mean == pytest.approx(raw.mean(), abs=1e-6)
  np.testing.assert_allclose(rm.score(prompts, responses, normalized=True).std(), 1.0, rtol=1e-4)
  # Training on (resumed from its checkpoint, beside the statistics file) makes them stale.
  c.train.update(num_steps=4, store_norm="")
  reward_model.main(c, w, sources, ToyTokenizer())
  later = scoring.load_reward_model(w, tokenizer=ToyTokenizer())
  assert later.meta["step"] == c.train.num_steps
  with pytest.raises(InputError, match="stale reward statistics"):
    later.score(prompts, responses, normalized=True)
