"""KL-regularised RL: objective pieces on hand-computed cases, and each algorithm raising a toy
reward with a bounded KL."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from warm_jax import configs, losses
from warm_jax.models import LanguageModel
from warm_jax.train import policy


def test_rloo_baseline_is_mean_of_the_others():
  r = jnp.array([1.0, 2.0, 6.0, 0.0, 0.0, 3.0])  # two prompts, k = 3
  adv = losses.rloo_advantages(r, 3)
  np.testing.assert_allclose(adv, [1 - 4, 2 - 3.5, 6 - 1.5, 0 - 1.5, 0 - 1.5, 3 - 0])


def test_reinforce_baseline_and_sequence_kl():
  np.testing.assert_allclose(losses.reinforce_advantages(jnp.array([1.0, 3.0])), [-1, 1])
  kl = losses.sequence_kl(jnp.array([[-1.0, -2.0, -3.0]]), jnp.array([[-1.5, -1.0, 0.0]]),
                          jnp.array([[1.0, 1.0, 0.0]]))
  np.testing.assert_allclose(kl, [0.5 - 1.0])


def test_gae_hand_computed():
  rewards = jnp.array([[0.0, 1.0, 5.0]])
  values = jnp.array([[0.5, 0.5, 9.0]])
  mask = jnp.array([[1.0, 1.0, 0.0]])  # the third slot is padding
  adv, ret = losses.gae(rewards, values, mask, gamma=1.0, lam=0.5)
  d1 = 1.0 - 0.5            # last real token: no bootstrap from padding
  d0 = 0.0 + 0.5 - 0.5
  np.testing.assert_allclose(adv, [[d0 + 0.5 * d1, d1, 0.0]], atol=1e-6)
  np.testing.assert_allclose(ret, [[d0 + 0.5 * d1 + 0.5, d1 + 0.5, 0.0]], atol=1e-6)


def test_ppo_losses_clip():
  m = jnp.ones((1, 2))
  pg, vf, frac = losses.ppo_losses(jnp.log(jnp.array([[2.0, 1.0]])), jnp.zeros((1, 2)),
                                   jnp.array([[1.0, -1.0]]), jnp.array([[1.0, 0.0]]),
                                   jnp.zeros((1, 2)), jnp.array([[0.0, 0.0]]), m, 0.2, 0.5)
  # token 0: ratio 2 clipped to 1.2 (positive advantage) -> -1.2; token 1: ratio 1 -> +1.
  np.testing.assert_allclose(pg, (-1.2 + 1.0) / 2, rtol=1e-6)
  # value 1.0 clipped to 0.5 around old 0: max(1, 0.25) / 2 on token 0, 0 on token 1.
  np.testing.assert_allclose(vf, 0.5 * 1.0 / 2, rtol=1e-6)
  np.testing.assert_allclose(frac, 0.5)


def test_grpo_group_advantages_k3_and_loss_hand_computed():
  r = jnp.array([1.0, 3.0, 2.0, 2.0, 0.0, 4.0])  # three prompts, k = 2
  np.testing.assert_allclose(losses.group_advantages(r, 2, normalize_std=False),
                             [-1, 1, 0, 0, -2, 2])
  s1, s3 = np.sqrt(2.0), np.sqrt(8.0)  # sample standard deviations (n - 1) of the groups
  np.testing.assert_allclose(losses.group_advantages(r, 2),
                             [-1 / (s1 + 1e-4), 1 / (s1 + 1e-4), 0, 0, -2 / (s3 + 1e-4),
                              2 / (s3 + 1e-4)], rtol=1e-6)
  # k3: pi_ref / pi - log(pi_ref / pi) - 1 at pi = 0.5, pi_ref = 0.25; 0 where they agree.
  np.testing.assert_allclose(losses.k3_kl(jnp.log(jnp.array([0.5, 0.3])),
                                          jnp.log(jnp.array([0.25, 0.3]))),
                             [0.5 - np.log(0.5) - 1, 0], atol=1e-6)
  # Row 0: ratios [2, 1], A = 1, clip 0.2 -> -1.2 and -1 (mean -1.1); row 1: one real token,
  # A = -1, ratio 1 -> +1 (its padded token ignored). KL: ref = logp + log 0.5 on every token.
  logp = jnp.array([[np.log(2.0), 0.0], [0.0, 5.0]])
  old, mask = jnp.zeros((2, 2)), jnp.array([[1.0, 1.0], [1.0, 0.0]])
  adv = jnp.array([1.0, -1.0])
  loss, (pg, kl, frac) = losses.grpo_loss(logp, old, logp + np.log(0.5), adv, mask, 0.2, 0.5)
  k3 = 0.5 - np.log(0.5) - 1
  np.testing.assert_allclose(pg, (-1.1 + 1.0) / 2, rtol=1e-6)
  np.testing.assert_allclose(kl, k3, rtol=1e-5)
  np.testing.assert_allclose(loss, (-1.1 + 1.0) / 2 + 0.5 * k3, rtol=1e-5)
  np.testing.assert_allclose(frac, 1 / 3)  # one of three real tokens clipped


def rl_config(algorithm):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.mesh = configs.mesh_config(shape=(-1, 1, 1))
  c.sharding = ml_collections.ConfigDict({"rules": configs.DEFAULT_RULES})
  c.data = ml_collections.ConfigDict(dict(seed=0, max_len=6, batch_size=8, eval_batch_size=8))
  c.model = configs.model_config("tiny", vocab_size=64, max_len=16)
  c.optim = configs.optim_config(lr=1e-2, warmup_steps=0)
  c.train = ml_collections.ConfigDict(dict(num_steps=25, log_every=5, eval_every=25, eval_batches=1,
                                           ckpt_every=25, keep=1, eval_splits=("validation",)))
  c.rl = configs.rl_config(algorithm, kl_coef=0.01, samples_per_prompt=2, max_new_tokens=6)
  return c


def _count_a(prompts, responses):
  """A dense toy reward: the fraction of response characters with an even code (about 1/2 for a
  random policy, 1 at best; an empty response scores 0)."""
  return np.array([sum(ord(ch) % 2 == 0 for ch in r) / 6.0 for r in responses], np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["reinforce", "rloo", "ppo", "grpo"])
def test_rl_raises_a_toy_reward_with_bounded_kl(algorithm, toy_data, tmp_path):
  tok = toy_data["tokenizer"]
  c = rl_config(algorithm)
  model = LanguageModel(c.model)
  ref = nn.unbox(model.init(jax.random.key(0), jnp.ones((1, 4), jnp.int32))["params"])
  prompts = {"train": [{"prompt": "xyz"[i % 3] * 3} for i in range(32)],
             "validation": [{"prompt": "zyx"[i % 3] * 3} for i in range(8)]}
  c.train.num_steps = 1
  before = policy.train(c, str(tmp_path / "a"), prompts, tok, _count_a, _count_a, ref)
  c.train.num_steps = 25
  after = policy.train(c, str(tmp_path / "b"), prompts, tok, _count_a, _count_a, ref)
  assert after["validation/reward/gold"] > before["validation/reward/gold"] + 0.2
  assert after["validation/kl"] < 10.0


def test_bad_rl_config_names_the_field(toy_data, tmp_path):
  c = rl_config("rloo")
  c.rl.samples_per_prompt = 1
  with pytest.raises(ValueError, match="config.rl.samples_per_prompt=1"):
    policy.build(c)
  c = rl_config("a2c")
  with pytest.raises(ValueError, match="config.rl.algorithm='a2c'"):
    policy.build(c)
  for algorithm in ("ppo", "grpo"):
    c = rl_config(algorithm)
    c.rl.ppo_minibatches = 3
    with pytest.raises(ValueError, match="config.rl.ppo_minibatches=3"):
      policy.build(c)
  c = rl_config("grpo")
  c.rl.samples_per_prompt = 1
  with pytest.raises(ValueError, match="config.rl.samples_per_prompt=1"):
    policy.build(c)


def _one_rollout(algorithm, temperature, toy_data):
  """A tempered rollout of a policy that still equals its reference, and the step's setup."""
  from warm_jax import sharding as shd
  from warm_jax.data import pipeline
  from warm_jax.train import rollout as rollout_lib
  from warm_jax.train import state as state_lib
  tok = toy_data["tokenizer"]
  c = rl_config(algorithm)
  c.rl.temperature = temperature
  c.rl.ppo_epochs, c.rl.ppo_minibatches = 1, 1
  setup = policy.build(c)
  params = nn.unbox(setup.init_params(jax.random.key(0)))
  ref = {k: v for k, v in params.items() if k != "value_head"}
  roll = rollout_lib.Rollout(setup.model, c.rl, tok, _count_a, _count_a, ref,
                             setup.batch_sharding, seed=0)
  encode = pipeline.PromptEncoder(tok, c.data.max_len)
  batch = next(iter(pipeline.epoch_batches([{"prompt": "xyz"}] * 8, encode, 8)))
  batch.pop("weight")
  state = state_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                               opt_state=setup.tx.init(params))
  return c, setup, state, roll(state, shd.to_global(batch, setup.batch_sharding))


@pytest.mark.parametrize("algorithm", ["rloo", "ppo"])
def test_kl_and_ratio_use_one_tempered_distribution(algorithm, toy_data):
  """At temperature 0.5 the sampled log-probs, the reference's and the policy's in the update are
  all of softmax(logits / 0.5): a policy equal to its reference has zero KL, and PPO's first
  update sees a ratio of exactly 1 (nothing clipped)."""
  from warm_jax.train import rollout as rollout_lib
  c, setup, state, r = _one_rollout(algorithm, 0.5, toy_data)
  m = np.asarray(r["mask"], np.float32)
  assert m.sum() > 0
  np.testing.assert_allclose(np.asarray(r["sample_logp"]) * m, np.asarray(r["ref_logp"]) * m,
                             atol=1e-4)
  untempered = rollout_lib.response_logps(setup.model, state.params, r["prompt"], r["response"],
                                          r["mask"])[0]
  assert np.max(np.abs((np.asarray(untempered) - np.asarray(r["ref_logp"])) * m)) > 0.1
  step = policy.make_train_step(setup.model, setup.tx, setup.schedule, c.rl)
  _, metrics = step(state, r)
  assert abs(float(metrics["kl"])) < 1e-3
  if algorithm == "ppo":
    assert float(metrics["clip_fraction"]) == 0.0
