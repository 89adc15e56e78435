"""The programs a trainer runs, built abstractly on any devices: its train step and, for a
policy, its sampler, each with the abstract arguments (shapes, dtypes, shardings) it is called on.

Each trainer builds its own setup (`build(config, devices)`: mesh, rules, optimiser, state
shardings) and its own pure step (`make_train_step`), exactly as its `train` does, and
`state.jitted_step` jits it with the shardings and the non-finite guard the training loop uses;
the state is `loop.abstract_state` (no array is allocated) and the batch is what the trainer's
encoder makes of one record, stacked to config.data.batch_size (DPO's batch also carries the
reference log-probs its `prepare` adds; RL's is the rollout `train.rollout.Rollout` returns).
A policy's sampler is `sampling.make_generate` with the run's settings, on prompts of
data.max_len tokens, batch_size * samples_per_prompt rows.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from warm_jax import sampling
from warm_jax.data import pipeline
from warm_jax.train import dpo, lm, loop, policy
from warm_jax.train import reward_model as rm_lib
from warm_jax.train import rlp as rlp_lib
from warm_jax.train import state as state_lib


class StubTokenizer:
  """What the encoders need of a tokenizer: ids for any text (rows are padded to max_len, so the
  batch shapes do not depend on it)."""
  pad_id, bos_id, eos_id = 0, 1, 2

  def encode(self, text: str) -> list[int]:
    return [3] * len(text)


TOKENIZER = StubTokenizer()
TEXT = dict(prompt="p" * 8, chosen="c" * 8, rejected="r" * 8, response="y" * 8)


@dataclasses.dataclass
class Program:
  """A jitted function and the abstract arguments to lower it with, on `mesh`. `loop_trips`:
  how often its while loop runs at most (sampling: one per generated token)."""
  name: str
  fn: Any
  args: tuple
  mesh: jax.sharding.Mesh
  loop_trips: int = 1


def encoded_batch(encode: Callable[[dict], dict], record: dict, batch_size: int,
                  sharding) -> dict[str, jax.ShapeDtypeStruct]:
  """The abstract global batch of `batch_size` encoded records, laid out by `sharding`."""
  row = encode(record)
  return {k: jax.ShapeDtypeStruct((batch_size, *np.shape(v)), np.asarray(v).dtype,
                                  sharding=sharding) for k, v in row.items()}


def _rows(shape, dtype, sharding) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)


def _rm_batch(setup, c):
  return encoded_batch(pipeline.PairEncoder(TOKENIZER, c.data.max_len), TEXT, c.data.batch_size,
                       setup.batch_sharding)


def _lm_batch(setup, c):
  encode = pipeline.LMEncoder(TOKENIZER, c.data.max_len, c.train.objective == "sft")
  return encoded_batch(encode, TEXT, c.data.batch_size, setup.batch_sharding)


def _dpo_batch(setup, c):
  record = {**TEXT, "margin": 0.0} if c.dpo.loss_type == "modpo" else TEXT
  batch = encoded_batch(pipeline.PreferenceLMEncoder(TOKENIZER, c.data.max_len), record,
                        c.data.batch_size, setup.batch_sharding)
  logp = _rows((c.data.batch_size,), jnp.float32, setup.batch_sharding)  # ReferenceLogps adds
  return {**batch, "ref_chosen_logp": logp, "ref_rejected_logp": logp}


def _uml_batch(setup, c):
  record = {**TEXT, "view_prompt": TEXT["prompt"], "view_1": "a" * 8, "view_2": "b" * 8}
  return encoded_batch(rlp_lib.ViewPairEncoder(TOKENIZER, c.data.max_len), record,
                       c.data.batch_size, setup.batch_sharding)


def rollout_batch(setup, c) -> dict[str, jax.ShapeDtypeStruct]:
  """The abstract rollout `train.rollout.Rollout` hands RL's step: the sampler's outputs (their
  shapes from `sampling.make_generate` itself), the reference log-probs, rewards, and PPO's
  values, batch_size * samples_per_prompt rows."""
  rows = c.data.batch_size * c.rl.samples_per_prompt
  prompts, params, rng = sampling_args(setup, c)
  out = jax.eval_shape(_generate(setup, c), params, prompts, rng)
  s = setup.batch_sharding
  per_token = _rows(out["logprobs"].shape, jnp.float32, s)
  batch = {"prompt": prompts, "prompt_mask": _rows(prompts.shape, jnp.bool_, s),
           "response": _rows(out["tokens"].shape, out["tokens"].dtype, s),
           "mask": _rows(out["mask"].shape, out["mask"].dtype, s), "sample_logp": per_token,
           "ref_logp": per_token, "reward": _rows((rows,), jnp.float32, s),
           "gold": _rows((rows,), jnp.float32, s)}
  if c.rl.algorithm == "ppo":
    batch["old_values"] = per_token
  if c.rl.get("anchor", "init") == "ema":
    batch["init_logp"] = per_token
  return batch


@dataclasses.dataclass(frozen=True)
class Trainer:
  """How a trainer builds its setup, its pure step and its batch (see the module docstring)."""
  build: Callable
  step: Callable
  batch: Callable
  samples: bool = False  # a policy: its sampler is a program too


TRAINERS = {
    "reward_model": Trainer(
        rm_lib.build, lambda s, c: rm_lib.make_train_step(
            s.model, s.tx, s.schedule, c.train.label_smoothing, c.seed + 1), _rm_batch),
    "lm": Trainer(
        lm.build, lambda s, c: lm.make_train_step(s.model, s.tx, s.schedule, c.seed + 1),
        _lm_batch),
    "dpo": Trainer(
        dpo.build, lambda s, c: dpo.make_train_step(
            s.model, s.tx, s.schedule, c.dpo.beta, c.dpo.loss_type, c.dpo.label_smoothing,
            c.seed + 1, c.dpo.average_log_prob, c.dpo.get("modpo_weight", 1.0)), _dpo_batch),
    "policy": Trainer(
        policy.build, lambda s, c: policy.make_train_step(s.model, s.tx, s.schedule, c.rl),
        rollout_batch, samples=True),
    "rlp_uml": Trainer(
        rlp_lib.build_uml, lambda s, c: rlp_lib.make_uml_train_step(
            s.model, rlp_lib.bottleneck(c.uml), s.tx, s.schedule, c.uml,
            c.train.label_smoothing, c.seed + 1, c.train.num_steps), _uml_batch),
}


def _generate(setup, c):
  return sampling.make_generate(setup.model, max_new_tokens=c.rl.max_new_tokens,
                                temperature=c.rl.temperature, eos_id=TOKENIZER.eos_id)


def sampling_args(setup, c) -> tuple:
  """(prompts, params, rng) of the sampler, abstract: prompts of data.max_len tokens on the batch
  sharding, the policy's params on theirs, a replicated key."""
  rows = c.data.batch_size * c.rl.samples_per_prompt
  prompts = _rows((rows, c.data.max_len), jnp.int32, setup.batch_sharding)
  params = loop.abstract_state(setup).params
  rng = jax.ShapeDtypeStruct((), jax.eval_shape(lambda: jax.random.key(0)).dtype,
                             sharding=jax.sharding.NamedSharding(setup.mesh,
                                                                 jax.sharding.PartitionSpec()))
  return prompts, params, rng


def programs(kind: str, config: ml_collections.ConfigDict, devices) -> list[Program]:
  """The programs of trainer `kind` (a key of TRAINERS) under `config` on `devices`: its guarded,
  donated train step, and a policy's sampler. The config is validated first (InputError naming a
  field: a mesh that does not divide the devices, a batch the batch axes do not divide)."""
  t = TRAINERS[kind]
  setup = t.build(config, devices)
  jitted = state_lib.jitted_step(t.step(setup, config), setup.shardings, setup.batch_sharding,
                                 setup.mesh, setup.rules, guard=True)
  out = [Program("train step", jitted, (loop.abstract_state(setup), t.batch(setup, config)),
                 setup.mesh)]
  if t.samples:
    prompts, params, rng = sampling_args(setup, config)
    out.append(Program("sampling", _generate(setup, config), (params, prompts, rng), setup.mesh,
                       loop_trips=config.rl.max_new_tokens))
  return out
