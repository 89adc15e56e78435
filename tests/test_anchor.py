"""The EMA anchor (`warm_jax.train.anchor`): the update by hand, DPO against the EMA, RL against the
EMA checkpointed and restored exactly (what a resumed run starts from), the default anchor
unchanged, bad rates."""

import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import ToyTokenizer, toy_pairs
from test_dpo import dpo_test_config
from test_policy import _count_a, rl_config

from warm_jax import checkpoints
from warm_jax.errors import InputError
from warm_jax.models import LanguageModel
from warm_jax.train import anchor, dpo, loop, policy
from warm_jax.train.metrics import read_metrics


def test_ema_transform_by_hand():
  tx = optax.chain(optax.sgd(0.5), anchor.ema_transform(0.25))
  params = {"w": jnp.asarray([2.0, -4.0])}
  state = tx.init(params)
  ema, p = np.asarray([2.0, -4.0]), np.asarray([2.0, -4.0])
  for _ in range(3):  # loss |w|^2 / 2: grads = w, sgd: w <- w - 0.5 w
    updates, state = tx.update(params, state, params)
    params = optax.apply_updates(params, updates)
    p = 0.5 * p
    ema = 0.75 * ema + 0.25 * p
    np.testing.assert_allclose(params["w"], p)
    np.testing.assert_allclose(anchor.params(type("S", (), {"opt_state": state})())["w"], ema)
  with pytest.raises(InputError, match=r"ema_rate=0.0: .*\(0, 1\]"):
    anchor.ema_transform(0.0)
  with pytest.raises(InputError, match=r"ema_rate=1.5"):
    anchor.ema_transform(1.5)


def test_default_anchor_leaves_the_setup_unchanged_and_rules_name_the_field():
  c = rl_config("reinforce")
  setup = loop.build_setup(c, LanguageModel(c.model))
  assert anchor.with_ema(setup, c.rl) is setup  # no anchor field: 'init'
  built = policy.build(c)
  shapes = lambda s: jax.tree.structure(jax.eval_shape(s.tx.init, nn.unbox(jax.eval_shape(  # noqa
      s.init_params, jax.random.key(0)))))
  assert shapes(built) == shapes(setup)
  c.rl.anchor = "ema"
  c.rl.ema_rate = 0.1
  assert shapes(policy.build(c)) != shapes(setup)
  for field, value in (("anchor", "last"), ("ema_rate", 0.0), ("ema_rate", 1.01)):
    bad = rl_config("reinforce")
    bad.rl[field] = value
    with pytest.raises(InputError, match=f"config.rl.{field}={value!r}"):
      policy.build(bad)
  bad = dpo_test_config()
  bad.dpo.ema_rate = -0.5
  with pytest.raises(InputError, match="config.dpo.ema_rate=-0.5"):
    dpo.build(bad)


def test_dpo_against_an_ema_of_rate_one_stays_at_log2(tmp_path):
  # Rate 1: the anchor is the policy itself after every update, so every step (and the final
  # evaluation) starts at h = 0: loss log 2, where against the fixed reference it falls (the DPO
  # tests). A data-parallel mesh: one compilation of the step.
  c = dpo_test_config()
  c.mesh.shape = (-1, 1, 1)
  c.train.update(num_steps=2, log_every=1, eval_every=2, ckpt_every=2)
  c.dpo.anchor, c.dpo.ema_rate = "ema", 1.0
  setup = dpo.build(c)
  ref = nn.unbox(setup.init_params(jax.random.key(3)))
  out = dpo.train(c, str(tmp_path), {"train": toy_pairs(32, 0)}, ToyTokenizer(), ref)
  rows = read_metrics(str(tmp_path), "train")  # steps 1 and 2, and the evaluation of split train
  assert len(rows) == 3 and out["state"].step == 2
  np.testing.assert_allclose([r["loss"] for r in rows], [math.log(2)] * 3, rtol=1e-5)
  assert all(r["grad_norm"] > 0 for r in rows if "grad_norm" in r)  # the policy did move
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), anchor.params(out["state"]),
               out["state"].params)


@pytest.mark.slow
def test_rl_with_the_ema_anchor_checkpoints_and_restores_it_exactly(toy_data, tmp_path):
  tok = toy_data["tokenizer"]
  c = rl_config("reinforce")
  c.rl.anchor, c.rl.ema_rate = "ema", 0.5
  c.train.update(num_steps=3, ckpt_every=3, keep=1, log_every=1, eval_every=3)
  model = LanguageModel(c.model)
  ref = nn.unbox(model.init(jax.random.key(0), jnp.ones((1, 4), jnp.int32))["params"])
  prompts = {"train": [{"prompt": "xyz"[i % 3] * 3} for i in range(32)],
             "validation": [{"prompt": "zyx"[i % 3] * 3} for i in range(8)]}
  state = policy.train(c, str(tmp_path), prompts, tok, _count_a, _count_a, ref)["state"]
  # What a resumed run starts from: the checkpoint restored onto the run's shardings.
  setup = policy.build(c)
  ckpt = checkpoints.Checkpointer(os.path.join(tmp_path, "checkpoints"), save_every=3, keep=1)
  restored, _ = ckpt.restore(3, loop.abstract_state(setup))
  ckpt.close()
  for x, y in ((state.params, restored.params), (anchor.params(state), anchor.params(restored))):
    jax.tree.map(lambda u, v: np.testing.assert_array_equal(np.asarray(u), np.asarray(v)), x, y)
  # The anchor moved from the initial policy and lags the policy; both KLs are logged.
  moved = lambda x, y: max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(  # noqa: E731
      jax.tree.leaves(x), jax.tree.leaves(y)))
  assert moved(anchor.params(state), ref) > 0 and moved(anchor.params(state), state.params) > 0
  rows = read_metrics(str(tmp_path), "train")
  assert rows and all("kl/init" in r and "kl" in r for r in rows)
