import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from warm_jax import configs, sampling
from warm_jax.models import LanguageModel


@pytest.fixture(scope="module")
def lm():
  cfg = configs.model_config("tiny", vocab_size=64, max_len=24)
  model = LanguageModel(cfg)
  params = nn.unbox(model.init(jax.random.key(0), jnp.ones((1, 4), jnp.int32))["params"])
  return model, params


def test_cached_greedy_equals_uncached_greedy(lm):
  model, params = lm
  prompts, mask = sampling.left_pad([[5, 6, 7], [8, 9, 10, 11, 12], [13]])
  kw = dict(max_new_tokens=10, temperature=0.0, eos_id=2)
  a = sampling.generate(model, params, prompts, jax.random.key(1), mask, use_cache=True, **kw)
  b = sampling.generate(model, params, prompts, jax.random.key(1), mask, use_cache=False, **kw)
  np.testing.assert_array_equal(a["tokens"], b["tokens"])
  np.testing.assert_array_equal(a["mask"], b["mask"])
  np.testing.assert_allclose(a["logprobs"], 0.0)  # greedy: probability one


def test_cached_sampling_equals_uncached_sampling_and_stops_at_eos(lm):
  model, params = lm
  prompts, mask = sampling.left_pad([[5, 6, 7], [8, 9]])
  kw = dict(max_new_tokens=12, temperature=1.0, top_k=20, eos_id=3)
  a = sampling.generate(model, params, prompts, jax.random.key(7), mask, use_cache=True, **kw)
  b = sampling.generate(model, params, prompts, jax.random.key(7), mask, use_cache=False, **kw)
  np.testing.assert_array_equal(a["tokens"], b["tokens"])
  np.testing.assert_allclose(a["logprobs"], b["logprobs"], rtol=1e-4, atol=1e-4)
  for row, m in zip(np.asarray(a["tokens"]), np.asarray(a["mask"])):
    if 3 in row:
      first = list(row).index(3)
      assert m[:first + 1].all() and not m[first + 1:].any()
      assert (row[first + 1:] == 0).all()


def test_process_logits_filters():
  logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
  top2 = np.exp(np.asarray(sampling.process_logits(logits, 1.0, 2, 1.0)))[0]
  np.testing.assert_allclose(top2, [0.625, 0.375, 0, 0], atol=1e-6)
  nucleus = np.exp(np.asarray(sampling.process_logits(logits, 1.0, 0, 0.7)))[0]
  np.testing.assert_allclose(nucleus, [0.625, 0.375, 0, 0], atol=1e-6)  # 0.5 + 0.3 >= 0.7
  greedy = np.exp(np.asarray(sampling.process_logits(logits, 0.0, 0, 1.0)))[0]
  np.testing.assert_allclose(greedy, [1, 0, 0, 0])


def test_too_long_request_is_an_error(lm):
  model, params = lm
  with pytest.raises(ValueError, match="exceeds the model's max_len 24"):
    sampling.generate(model, params, jnp.ones((1, 20), jnp.int32), jax.random.key(0),
                      max_new_tokens=10)


def test_policy_sampler_answers_like_sample_texts_and_checks_lengths():
  from warm_jax import data as data_lib
  tok = data_lib.load_tokenizer(configs.embedded_data_config())
  cfg = configs.model_config("tiny", vocab_size=1024, max_len=40)
  sampler = sampling.PolicySampler(cfg, tok, prompt_len=24, max_new_tokens=8, batch_size=2)
  params = nn.unbox(sampler.model.init(jax.random.key(1), jnp.ones((1, 4), jnp.int32))["params"])
  prompts = ["my friend tom moved to oslo .", "my sister ana has a cat .", "so my boss ed cooks ."]
  texts = sampler.sample(params, prompts, seed=3)
  assert texts == sampling.sample_texts(sampler.model, params, tok, prompts, prompt_len=24,
                                        max_new_tokens=8, seed=3, batch_size=2)
  assert len(texts) == 3 and texts != sampler.sample(params, prompts, seed=4)
  # n per prompt: prompt-major rows in batches of batch_size (2), batch k seeded seed + 2k.
  first, second = (sampler.sample(params, [p, p], seed=5 + 2 * k) for k, p in enumerate(prompts[:2]))
  assert sampler.sample_n(params, prompts[:2], 2, seed=5) == [first, second]
  with pytest.raises(ValueError, match="exceeds the model's max_len 40"):
    sampling.PolicySampler(cfg, tok, prompt_len=36, max_new_tokens=8)
