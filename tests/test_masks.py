"""Masks from real lengths: the pipeline's encoders emit them and every trainer, the sampler and the
scorers pass them to the model. With the embedded task's pad id 0 (never a real token) that
computes bit for bit what inferring `tokens != 0` computed; with a tokenizer whose pad id is its
eos id (Llama 3's), the reward is read at the eos, the last real token."""

import flax.linen as nn
import jax
import numpy as np
import pytest
from conftest import ToyTokenizer, experiment, toy_pairs

from warm_jax import scoring
from warm_jax import sharding as shd
from warm_jax.data import pipeline
from warm_jax.train import dpo, policy
from warm_jax.train import reward_model as rm
from warm_jax.train import state as state_lib
from warm_jax.train.rollout import Rollout


class EosPadTokenizer(ToyTokenizer):
  """The toy tokenizer, padding with its eos id (as Llama 3's tokenizer does)."""
  pad_id = ToyTokenizer.eos_id


def _tiny(name, **model):
  """The experiment's tiny config at its smallest (one layer, rows of 24 tokens), on one device:
  the equalities below hold at any size, and compiling is what these tests spend their time on."""
  c = experiment(name).get_config("tiny")
  c.model.update(vocab_size=64, n_layers=1, **model)
  c.data.max_len = 24
  c.mesh.shape = (1, 1, 1)
  return c


def _params(setup, seed, scale=1.0):
  """Fresh params of the setup's model (times `scale`) on its shardings."""
  return jax.jit(lambda r: jax.tree.map(lambda x: x * scale, nn.unbox(setup.init_params(r))),
                 out_shardings=setup.shardings.params)(jax.random.key(seed))


def _unmasked(batch):
  """The batch without the encoders' masks: the models infer them from pad id 0."""
  return {k: v for k, v in batch.items() if k != "mask" and not k.endswith("_mask")}


def _one_step(setup, step_fn, batch, params=None):
  """Host (params, metrics) after one jitted step from the run's initial state."""
  state = state_lib.create_state(setup.init_params, setup.tx, jax.random.key(0), setup.shardings,
                                 params=params)
  step = state_lib.jit_step(step_fn, setup.shardings, setup.batch_sharding, setup.mesh,
                            setup.rules, donate=False)
  state, metrics = step(state, batch)
  return jax.tree.map(np.asarray, (state.params, metrics))


def _assert_bitwise(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_encoders_pad_with_the_tokenizer_pad_id_and_mask_the_real_tokens():
  tok = EosPadTokenizer()
  pair = pipeline.PairEncoder(tok, 16)({"prompt": "xy", "chosen": "ab", "rejected": "b"})
  n = int(pair["chosen_mask"].sum())
  assert pair["chosen_mask"][:n].all() and not pair["chosen_mask"][n:].any()
  assert n == 6 and pair["chosen"][n - 1] == tok.eos_id and (pair["chosen"][n:] == tok.pad_id).all()
  lm_row = pipeline.LMEncoder(tok, 16, response_only=True)({"prompt": "xy", "response": "ab"})
  np.testing.assert_array_equal(lm_row["mask"], pair["chosen_mask"])
  prompt = pipeline.PromptEncoder(tok, 8)({"prompt": "xyz"})
  np.testing.assert_array_equal(prompt["prompt_mask"], [False] * 4 + [True] * 4)
  assert (prompt["prompt"][:4] == tok.eos_id).all() and prompt["prompt"][4] == tok.bos_id
  # The embedded task's pad id 0: the masks are exactly the non-zero tokens.
  row = pipeline.PairEncoder(ToyTokenizer(), 16)({"prompt": "xy", "chosen": "ab", "rejected": "b"})
  for side in ("chosen", "rejected"):
    np.testing.assert_array_equal(row[f"{side}_mask"], row[side] != 0)


def test_reward_model_step_with_masks_is_bitwise_the_step_without(toy_data):
  c = _tiny("reward_model", dropout_rate=0.1)
  setup = rm.build(c, jax.devices()[:1])
  batch = next(pipeline.Batches(toy_data["sources"]["train"],
                                pipeline.PairEncoder(toy_data["tokenizer"], c.data.max_len), 8, 0))
  step = rm.make_train_step(setup.model, setup.tx, setup.schedule, 0.0, 1)
  masked = _one_step(setup, step, shd.to_global(batch, setup.batch_sharding))
  inferred = _one_step(setup, step, shd.to_global(_unmasked(batch), setup.batch_sharding))
  _assert_bitwise(masked, inferred)


def test_dpo_step_and_reference_with_masks_are_bitwise_those_without(toy_data):
  c = _tiny("dpo")
  setup = dpo.build(c, jax.devices()[:1])
  batch = next(pipeline.Batches(toy_pairs(16), pipeline.PreferenceLMEncoder(
      toy_data["tokenizer"], c.data.max_len), c.data.batch_size, 0))
  ref = _params(setup, 3, 0.5)
  prepare = dpo.ReferenceLogps(setup.model, ref, setup.mesh, setup.rules, setup.shardings.params,
                               setup.batch_sharding)
  step = dpo.make_train_step(setup.model, setup.tx, setup.schedule, 0.1, "sigmoid", 0.0, 1)
  out = []
  for b in (batch, _unmasked(batch)):
    full = prepare(None, shd.to_global(b, setup.batch_sharding))
    out.append((np.asarray(full["ref_chosen_logp"]), _one_step(setup, step, full)))
  _assert_bitwise(*out)


def test_rl_rollout_and_step_with_prompt_masks_are_bitwise_those_without(toy_data):
  c = _tiny("rl")
  c.rl.max_new_tokens = 6
  setup = policy.build(c, jax.devices()[:1])
  tok = toy_data["tokenizer"]
  params = _params(setup, 1)
  reward = lambda p, r: np.array([len(x) for x in r], np.float32)  # noqa: E731
  rollout = Rollout(setup.model, c.rl, tok, reward, reward, params, setup.batch_sharding, 0)
  prompts = [{"prompt": "xyz"[i % 3] * (1 + i % 4)} for i in range(c.data.batch_size)]
  batch = next(pipeline.Batches(prompts, pipeline.PromptEncoder(tok, c.data.max_len),
                                c.data.batch_size, 0))
  state = state_lib.create_state(setup.init_params, setup.tx, jax.random.key(0), setup.shardings,
                                 params=params)
  step = policy.make_train_step(setup.model, setup.tx, setup.schedule, c.rl)
  out = []
  for b in (batch, _unmasked(batch)):
    r = rollout(state, shd.to_global(b, setup.batch_sharding))
    out.append((jax.tree.map(np.asarray, r), rollout.last_texts, _one_step(setup, step, r, params)))
  _assert_bitwise(out[0][0], out[1][0])
  assert out[0][1] == out[1][1]
  _assert_bitwise(out[0][2], out[1][2])


def test_with_pad_equal_to_eos_the_reward_is_read_at_the_eos():
  tok = EosPadTokenizer()
  c = _tiny("reward_model")
  setup = rm.build(c, jax.devices()[:1])
  params = _params(setup, 0)
  head = params["reward_head"]["kernel"]  # zero at init: make the reward depend on the features
  params["reward_head"]["kernel"] = jax.random.normal(jax.random.key(1), head.shape)
  model, recs = setup.model, toy_pairs(8, 1)
  apply = jax.jit(lambda t, m=None: model.apply({"params": params}, t, m))
  batch = next(pipeline.Batches(recs, pipeline.PairEncoder(tok, c.data.max_len), 8, 0,
                                shuffle=False))
  # The reward at the eos: the same rows padded with 0 instead, where `tokens != 0` is the mask.
  zero_padded = next(pipeline.Batches(recs, pipeline.PairEncoder(ToyTokenizer(), c.data.max_len),
                                      8, 0, shuffle=False))
  for side in ("chosen", "rejected"):
    n = batch[f"{side}_mask"].sum(1)
    assert (batch[side][np.arange(8), n - 1] == tok.eos_id).all()  # the last real token
    assert (batch[side][np.arange(8), n] == tok.pad_id).all()  # padding: the same id
  want_c, want_r = (np.asarray(apply(zero_padded[side])) for side in ("chosen", "rejected"))
  # The trainer's rewards, on a batch of the pipeline, are read at the eos ...
  rc, rr = jax.jit(lambda b: rm.pair_rewards(model, params, b))(batch)
  np.testing.assert_allclose(rc, want_c, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(rr, want_r, rtol=1e-5, atol=1e-6)
  # ... and so are those of its train step (dropout 0: its metrics are these rewards' means).
  _, metrics = _one_step(setup, rm.make_train_step(setup.model, setup.tx, setup.schedule, 0.0, 1),
                         shd.to_global(batch, setup.batch_sharding), params)
  np.testing.assert_allclose(metrics["rewards/chosen"], np.mean(want_c), rtol=1e-5, atol=1e-6)
  # The scorer's too; `tokens != pad_id` would have read the token before the eos.
  mesh = shd.make_mesh(("data", "fsdp", "tensor"), (1, 1, 1), jax.devices()[:1])
  scorer = scoring.RewardScorer(model, params, tok, c.data.max_len, mesh=mesh, batch_size=8)
  prompts, responses = [r["prompt"] for r in recs], [r["chosen"] for r in recs]
  got = scorer.score(prompts, responses)
  np.testing.assert_allclose(got, want_c, rtol=1e-5, atol=1e-6)
  tokens, mask = scorer.encode(prompts, responses)
  before_eos = np.asarray(apply(tokens, tokens != tok.pad_id))
  assert np.abs(before_eos - got).min() > 1e-4
  with pytest.raises(ValueError, match="pad id 2 is its eos id"):
    scorer.score_tokens(tokens)
