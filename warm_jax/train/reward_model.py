"""Bradley-Terry reward-model training: a sharded train step and the training loop.

    step(state, batch) -> (state, metrics)     batch = {'chosen': int32[B, T], 'rejected': int32[B, T]}

The chosen and rejected rows go through the model as one [2B, T] batch. The loop validates the
config before any compute, resumes from the latest complete checkpoint (params, optimizer state and
data-iterator position), evaluates on held-out splits, logs to JSONL + TensorBoard, shows progress
with ETA, and on SIGTERM (a pre-empted VM) saves a checkpoint before exiting.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from warm_jax import checkpoints, configs, losses
from warm_jax import sharding as shd
from warm_jax.data import pipeline
from warm_jax.models import RewardModel
from warm_jax.train import metrics as metrics_lib
from warm_jax.train import state as state_lib


def pair_rewards(model: nn.Module, params, batch: dict, rng: jax.Array | None = None):
  """Rewards of the chosen and rejected rows ([B] each) in one forward pass of 2B rows."""
  b = batch["chosen"].shape[0]
  tokens = jnp.concatenate([batch["chosen"], batch["rejected"]], axis=0)
  kwargs = {} if rng is None else {"rngs": {"dropout": rng}}
  r = model.apply({"params": params}, tokens, deterministic=rng is None, **kwargs)
  return r[:b], r[b:]


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, schedule: optax.Schedule,
                    label_smoothing: float, dropout_seed: int) -> Callable:
  """The pure train step. Dropout keys are derived from (dropout_seed, step), so a resumed run
  draws exactly the keys an uninterrupted one would."""
  base_rng = jax.random.key(dropout_seed)

  def step(state: state_lib.TrainState, batch: dict):
    rng = jax.random.fold_in(base_rng, state.step)

    def loss_fn(params):
      rc, rr = pair_rewards(model, params, batch, rng)
      loss = jnp.mean(losses.bradley_terry_loss(rc, rr, label_smoothing))
      return loss, (rc, rr)

    (loss, (rc, rr)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    out = {"loss": loss,
           "accuracy": jnp.mean(losses.preference_accuracy(rc, rr)),
           "margin": jnp.mean(losses.reward_margin(rc, rr)),
           "rewards/chosen": jnp.mean(rc), "rewards/rejected": jnp.mean(rr),
           "grad_norm": optax.tree.norm(grads), "lr": schedule(state.step)}
    return state_lib.TrainState(step=state.step + 1, params=params, opt_state=opt_state), out

  return step


def make_eval_step(model: nn.Module, label_smoothing: float = 0.0) -> Callable:
  """Weighted sums over a batch (with a 'weight' row) so partial last batches count exactly."""
  def eval_step(params, batch):
    rc, rr = pair_rewards(model, params, batch)
    w = batch["weight"]
    return {"loss": jnp.sum(w * losses.bradley_terry_loss(rc, rr, label_smoothing)),
            "accuracy": jnp.sum(w * losses.preference_accuracy(rc, rr)),
            "margin": jnp.sum(w * losses.reward_margin(rc, rr)),
            "count": jnp.sum(w)}
  return eval_step


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks every field the trainer uses; raises ValueError naming the field."""
  configs.validate_model(config.model)
  configs.validate_optim(config.optim)
  configs.validate_train(config.train)
  if not 0.0 <= config.train.label_smoothing < 0.5:
    raise ValueError(f"config.train.label_smoothing={config.train.label_smoothing!r}: must be in [0, 0.5)")
  if config.data.max_len > config.model.max_len:
    raise ValueError(f"config.data.max_len={config.data.max_len} exceeds config.model.max_len="
                     f"{config.model.max_len}")
  for name in ("batch_size", "eval_batch_size"):
    if config.data[name] <= 0:
      raise ValueError(f"config.data.{name}={config.data[name]!r}: must be positive")


@dataclasses.dataclass
class Setup:
  """Everything a reward-model run needs that follows from its config (no compute yet)."""
  model: RewardModel
  mesh: jax.sharding.Mesh
  rules: tuple
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  shardings: state_lib.TrainState
  batch_sharding: Any
  init_params: Callable


def build(config: ml_collections.ConfigDict, devices=None) -> Setup:
  """Validates the config and derives model, mesh, optimizer and shardings from it."""
  validate_config(config)
  mesh = shd.make_mesh(config.mesh.axes, config.mesh.shape, devices)
  rules = tuple(tuple(r) for r in config.sharding.rules)
  shd.validate_rules(rules, mesh)
  shd.check_batch_size(config.data.batch_size, mesh, rules, "config.data.batch_size")
  shd.check_batch_size(config.data.eval_batch_size, mesh, rules, "config.data.eval_batch_size")
  model = RewardModel(config.model)
  dummy = jnp.ones((1, config.data.max_len), jnp.int32)
  init_params = lambda rng: model.init(rng, dummy)["params"]
  schedule = state_lib.learning_rate_schedule(config.optim, config.train.num_steps)
  tx = state_lib.make_optimizer(config.optim, config.train.num_steps)
  shardings = state_lib.state_shardings(init_params, tx, mesh, rules)
  return Setup(model, mesh, rules, tx, schedule, shardings, shd.batch_sharding(mesh, rules),
               init_params)


def abstract_state(setup: Setup) -> state_lib.TrainState:
  """ShapeDtypeStructs of the unboxed state, carrying the target shardings (restore targets)."""
  boxed = state_lib.abstract_boxed_state(setup.init_params, setup.tx)
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      nn.unbox(boxed), setup.shardings)


def evaluate(eval_fn: Callable, params, batches, batch_sharding) -> dict[str, float]:
  totals: dict[str, float] = {}
  for batch in batches:
    sums = eval_fn(params, shd.to_global(batch, batch_sharding))
    for k, v in sums.items():
      totals[k] = totals.get(k, 0.0) + float(v)
  count = max(totals.pop("count", 0.0), 1.0)
  return {k: v / count for k, v in totals.items()}


def _write_config(config: ml_collections.ConfigDict, workdir: str, name: str) -> None:
  """Records the exact config of a run next to its outputs (process 0; never overwrites)."""
  path = os.path.join(workdir, name)
  if jax.process_index() == 0 and not os.path.exists(path):
    os.makedirs(workdir, exist_ok=True)
    with open(path, "w") as f:
      f.write(config.to_json_best_effort(indent=2))


class _Preempted:
  """Turns SIGTERM into a flag the loop polls, so it can save before exiting."""

  def __init__(self):
    self.flag = False
    self._old = None

  def __enter__(self):
    try:
      self._old = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread: leave signals alone
      self._old = None
    return self

  def _handle(self, *_):
    self.flag = True

  def __exit__(self, *_):
    if self._old is not None:
      signal.signal(signal.SIGTERM, self._old)


def train(config: ml_collections.ConfigDict, workdir: str, sources: dict | None = None,
          tokenizer=None, init_params: Any | None = None, devices=None) -> dict:
  """Trains (or resumes) a reward model; returns the final evaluation metrics and run info.

  `sources` maps split names ('train' and each of config.train.eval_splits) to random-access
  record sources; by default they are loaded from config.data. `init_params`: params to start
  from instead of a fresh initialisation (e.g. a pre-trained backbone); ignored on resume.
  """
  setup = build(config, devices)
  if sources is None or tokenizer is None:
    from warm_jax import data as data_lib  # the embedded task and TFDS builders
    tokenizer = tokenizer or data_lib.load_tokenizer(config.data)
    sources = sources or {s: data_lib.load_split(config.data, s)
                          for s in ("train", *config.train.eval_splits)}
  for split in ("train", *config.train.eval_splits):
    if split not in sources:
      raise ValueError(f"config.train.eval_splits names split {split!r} but no such source was given")

  ckpt = checkpoints.Checkpointer(os.path.join(workdir, "checkpoints"),
                                  save_every=config.train.ckpt_every, keep=config.train.keep,
                                  config=config)
  abstract = abstract_state(setup)
  if ckpt.latest_step() is not None:
    ckpt.check_compatible(abstract)  # before any compute; nothing is written on mismatch

  encode = pipeline.PairEncoder(tokenizer, config.data.max_len)
  pc, pi = jax.process_count(), jax.process_index()
  train_iter = pipeline.Batches(sources["train"], encode, config.data.batch_size, config.data.seed,
                                process_index=pi, process_count=pc)
  restored = ckpt.restore_latest(abstract)
  if restored is not None:
    state, data_state, start = restored
    train_iter.set_state(data_state)
    _write_config(config, workdir, f"config.resumed_at_{start}.json")
  else:
    _write_config(config, workdir, "config.json")
    state = state_lib.create_state(setup.init_params, setup.tx, jax.random.key(config.seed),
                                   setup.shardings, params=init_params)
    start = 0

  step_fn = state_lib.jit_step(
      make_train_step(setup.model, setup.tx, setup.schedule, config.train.label_smoothing,
                      config.seed + 1), setup.shardings, setup.batch_sharding, setup.mesh, setup.rules)
  eval_fn = jax.jit(make_eval_step(setup.model),
                    in_shardings=(setup.shardings.params, setup.batch_sharding),
                    out_shardings=shd.replicated(setup.mesh))

  def run_eval(step: int) -> dict[str, float]:
    results = {}
    with jax.set_mesh(setup.mesh):
      for split in config.train.eval_splits:
        batches = pipeline.epoch_batches(
            sources[split], encode, config.data.eval_batch_size,
            limit=config.train.eval_batches * config.data.eval_batch_size or None,
            process_index=pi, process_count=pc)
        m = evaluate(eval_fn, state.params, batches, setup.batch_sharding)
        writer.write(step, m, split=split)
        results.update({f"{split}/{k}": v for k, v in m.items()})
    return results

  writer = metrics_lib.MetricWriter(workdir)
  total = config.train.num_steps
  progress = metrics_lib.Progress(total, "reward model", start=start)
  pending: list[dict] = []
  last_eval: dict[str, float] = {}
  step = start
  t0 = time.time()
  try:
    with _Preempted() as preempted:
      while step < total:
        batch = shd.to_global(next(train_iter), setup.batch_sharding)
        state, m = step_fn(state, batch)
        step += 1
        pending.append(m)
        if step % config.train.log_every == 0 or step == total:
          avg = {k: float(np.mean([float(p[k]) for p in pending])) for k in pending[0]}
          writer.write(step, avg, split="train")
          pending.clear()
          progress.update(step, f"loss {avg['loss']:.4f} acc {avg['accuracy']:.3f}")
        if step % config.train.eval_every == 0 or step == total:
          last_eval = run_eval(step)
        ckpt.save(step, state, train_iter.get_state(), force=step == total or preempted.flag)
        if preempted.flag:
          raise SystemExit(f"SIGTERM: saved a checkpoint at step {step} in {ckpt.directory}; "
                           "re-run the same command to resume")
    progress.close(step)
    if not last_eval:  # resumed a finished run: evaluate the restored state
      last_eval = run_eval(step)
  finally:  # also on a crash: let an in-flight checkpoint finish, flush the logs
    ckpt.close()
    writer.close()
  return {"step": step, "seconds": time.time() - t0, **last_eval, "state": state}
