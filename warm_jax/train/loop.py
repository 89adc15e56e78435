"""What every trainer shares: config -> mesh/optimizer/shardings (`build_setup`), and the training
loop (`run`): resume from the latest complete checkpoint (params, optimizer state, data position)
under the config it was saved with (but for `checkpoints.RESUME_MAY_CHANGE`; else refused, naming
the fields, unless --resume_changed_config), periodic evaluation, JSONL + TensorBoard logging,
progress with ETA, checkpoints every k steps, and a checkpoint before exiting on SIGTERM (a
pre-empted VM; a SIGTERM is a flag until the last save has finished), and non-finite steps (NaN/Inf
loss or gradients) that never reach the state or a checkpoint: the run stops naming the step, or
skips it (config.train.on_nonfinite). Trainers supply the model, the pure step
`step(state, batch) -> (state, metrics)` and an evaluation function.
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

from warm_jax import checkpoints, configs
from warm_jax import sharding as shd
from warm_jax.data import pipeline
from warm_jax.train import metrics as metrics_lib
from warm_jax.train import state as state_lib


@dataclasses.dataclass
class Setup:
  """Everything a run needs that follows from its config and model (no compute yet)."""
  model: nn.Module
  mesh: jax.sharding.Mesh
  rules: tuple
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  shardings: state_lib.TrainState
  batch_sharding: Any
  init_params: Callable


def build_setup(config: ml_collections.ConfigDict, model: nn.Module, devices=None) -> Setup:
  """Mesh, rules, optimizer and state shardings of `model` under `config` (validated first)."""
  mesh = shd.make_mesh(config.mesh.axes, config.mesh.shape, devices)
  rules = tuple(tuple(r) for r in config.sharding.rules)
  shd.validate_rules(rules, mesh)
  shd.check_batch_size(config.data.batch_size, mesh, rules, "config.data.batch_size")
  shd.check_batch_size(config.data.eval_batch_size, mesh, rules, "config.data.eval_batch_size")
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
  return shd.abstract(nn.unbox(boxed), setup.shardings)


def weighted_means(eval_fn: Callable, state, batches, batch_sharding,
                   prepare: Callable | None = None) -> dict[str, float]:
  """Runs `eval_fn(state.params, batch) -> sums incl. 'count'` over batches (each first passed
  through `prepare(state, batch)` if given); returns sums / count."""
  totals: dict[str, float] = {}
  for batch in batches:
    batch = shd.to_global(batch, batch_sharding)
    if prepare is not None:
      batch = prepare(state, batch)
    sums = eval_fn(state.params, batch)
    for k, v in sums.items():
      totals[k] = totals.get(k, 0.0) + float(v)
  count = max(totals.pop("count", 0.0), 1.0)
  return {k: v / count for k, v in totals.items()}


def write_config(config: ml_collections.ConfigDict, workdir: str, name: str,
                 overwrite: bool = False) -> None:
  """Records the exact config of a run next to its outputs (process 0). A run's file is never
  overwritten (a resumed run writes its own); with `overwrite`, e.g. for a study whose outputs
  are all recomputed on every run, it is replaced atomically."""
  path = os.path.join(workdir, name)
  if jax.process_index() == 0 and (overwrite or not os.path.exists(path)):
    os.makedirs(workdir, exist_ok=True)
    checkpoints.write_atomic(path, config.to_json_best_effort(indent=2))


class NonFiniteError(RuntimeError):
  """A step produced a non-finite loss or update, and config.train.on_nonfinite says stop (or
  more than config.train.max_nonfinite_skips steps in a row were skipped)."""


class _NonFiniteWatch:
  """Reads the guarded step's `nonfinite` flags lazily (at log steps and before every save, so
  the loop keeps dispatching asynchronously) and applies config.train.on_nonfinite."""

  def __init__(self, train_cfg, ckpt: checkpoints.Checkpointer):
    self.mode = configs.train_setting(train_cfg, "on_nonfinite")
    self.max_run = configs.train_setting(train_cfg, "max_nonfinite_skips")
    self.ckpt = ckpt
    self.flags: list[tuple[int, Any]] = []
    self.skipped: list[int] = []
    self.run_length = 0  # consecutive non-finite steps so far

  def add(self, step: int, metrics: dict) -> None:
    self.flags.append((step, metrics["nonfinite"]))

  def check(self) -> list[int]:
    """Returns the non-finite steps since the last check; raises NonFiniteError when due."""
    bad = []
    for step, flag in self.flags:
      if float(flag) > 0:
        bad.append(step)
        self.run_length += 1
        if self.mode == "stop" or self.run_length > self.max_run:
          last = self.ckpt.latest_step()
          why = ("config.train.on_nonfinite='stop'" if self.mode == "stop" else
                 f"{self.run_length} non-finite steps in a row > config.train.max_nonfinite_skips="
                 f"{self.max_run}")
          raise NonFiniteError(
              f"non-finite loss or gradients at step {step} ({why}); the state was not updated "
              f"and nothing after it was saved. Last complete checkpoint: "
              f"{'none' if last is None else f'step {last}'} in {self.ckpt.directory}")
      else:
        self.run_length = 0
    self.flags.clear()
    self.skipped.extend(bad)
    return bad


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


def open_checkpoints(config: ml_collections.ConfigDict, workdir: str, abstract):
  """The run's Checkpointer and what it resumes from: (state, data_state, step), or None when
  `workdir` holds no complete checkpoint. A checkpoint of another model shape, or saved under a
  config that differs outside checkpoints.RESUME_MAY_CHANGE (unless forced), is refused before
  any compute, and nothing is written; a damaged one is an InputError naming it."""
  ckpt = checkpoints.Checkpointer(os.path.join(workdir, "checkpoints"),
                                  save_every=config.train.ckpt_every, keep=config.train.keep,
                                  config=config)
  if ckpt.latest_step() is not None:
    ckpt.check_compatible(abstract)
    for change in ckpt.check_config():  # refused unless forced: then each is reported
      print(f"resuming {ckpt.directory} under a changed config: {change}", flush=True)
  return ckpt, ckpt.restore_latest(abstract)


def run(config: ml_collections.ConfigDict, workdir: str, setup: Setup, step_fn: Callable,
        train_iter, evaluate: Callable[[Any], dict[str, dict[str, float]]],
        init_params: Any | None = None, desc: str = "train",
        show: tuple[str, ...] = ("loss",), prepare: Callable | None = None) -> dict:
  """Trains (or resumes) to config.train.num_steps; returns final eval metrics and the state.
  With config.train.eval_at_start, a fresh run also evaluates its initial state (logged at step 0).

  `step_fn(state, batch)` is the pure step (jitted here with the setup's shardings); `train_iter`
  yields host batches and has get_state/set_state; `evaluate(state)` returns {split: metrics}.
  `prepare(state, global_batch) -> global_batch`, if given, adds device-computed fields to each
  batch before the step: a frozen reference model's log-probabilities (DPO), or a whole rollout of
  the current policy with its rewards (RL).
  """
  ckpt, restored = open_checkpoints(config, workdir, abstract_state(setup))
  if restored is not None:
    state, data_state, start = restored
    train_iter.set_state(data_state)
    write_config(config, workdir, f"config.resumed_at_{start}.json")
  else:
    write_config(config, workdir, "config.json")
    state = state_lib.create_state(setup.init_params, setup.tx, jax.random.key(config.seed),
                                   setup.shardings, params=init_params)
    start = 0
  step_jit = state_lib.jit_step(step_fn, setup.shardings, setup.batch_sharding, setup.mesh,
                                setup.rules, guard=True)
  watch = _NonFiniteWatch(config.train, ckpt)

  writer = metrics_lib.MetricWriter(workdir)
  total = config.train.num_steps
  progress = metrics_lib.Progress(total, desc, start=start)
  pending: list[dict] = []
  last_eval: dict[str, float] = {}

  def run_eval(step):
    out = {}
    with jax.set_mesh(setup.mesh):
      for split, m in evaluate(state).items():
        writer.write(step, m, split=split)
        out.update({f"{split}/{k}": v for k, v in m.items()})
    return out

  step = start
  t0 = time.time()
  try:
    if start == 0 and config.train.get("eval_at_start", False):
      run_eval(0)  # the starting point (e.g. the SFT policy before RL) on the same axes
    with _Preempted() as preempted:
      while step < total:
        batch = shd.to_global(next(train_iter), setup.batch_sharding)
        if prepare is not None:
          batch = prepare(state, batch)
        state, m = step_jit(state, batch)
        step += 1
        pending.append(m)
        watch.add(step, m)
        logging_due = step % config.train.log_every == 0 or step == total
        if logging_due or ckpt.due(step) or preempted.flag:
          for bad in watch.check():  # raises (nothing saved) when the run must stop
            print(f"skipped step {bad}: non-finite loss or gradients", flush=True)
        if logging_due:
          host = [{k: float(v) for k, v in p.items()} for p in pending]
          kept = [h for h in host if not h["nonfinite"]] or host  # the skipped steps' are NaN
          avg = {k: float(np.mean([h[k] for h in kept])) for k in kept[0]}
          avg["nonfinite"] = sum(h["nonfinite"] for h in host)
          writer.write(step, avg, split="train")
          pending.clear()
          progress.update(step, " ".join(f"{k} {avg[k]:.4f}" for k in show if k in avg))
        if step % config.train.eval_every == 0 or step == total:
          last_eval = run_eval(step)
        ckpt.save(step, state, train_iter.get_state(), force=step == total or preempted.flag)
        if preempted.flag:
          ckpt.wait()  # a second SIGTERM too waits for this save
          raise SystemExit(f"SIGTERM: saved a checkpoint at step {step} in {ckpt.directory}; "
                           "re-run the same command to resume")
      ckpt.wait()  # the last step's save finishes while a SIGTERM is still only a flag
    if preempted.flag:  # it came while that save was being written, which is now complete
      raise SystemExit(f"SIGTERM: saved a checkpoint at step {step} in {ckpt.directory}; "
                       "re-run the same command to resume")
    progress.close(step)
    if not last_eval:  # resumed a finished run: evaluate the restored state
      last_eval = run_eval(step)
  finally:  # also on a crash: let an in-flight checkpoint finish, flush the logs
    ckpt.close()
    writer.close()
  return {"step": step, "seconds": time.time() - t0, **last_eval, "state": state,
          "skipped_steps": watch.skipped}


def fit(config: ml_collections.ConfigDict, workdir: str, setup: Setup, sources: dict,
        encode: Callable[[dict], dict], step_fn: Callable, eval_step: Callable,
        init_params: Any | None = None, desc: str = "train",
        show: tuple[str, ...] = ("loss",), prepare: Callable | None = None) -> dict:
  """`run` on record sources: 'train' feeds the deterministic resumable iterator, and each split
  of config.train.eval_splits is evaluated with `eval_step(params, batch) -> sums incl. 'count'`
  (at most config.train.eval_batches batches; 0 = the whole split)."""
  for split in ("train", *config.train.eval_splits):
    if split not in sources:
      raise ValueError(f"no data source for split {split!r} (config.train.eval_splits)")
  pc, pi = jax.process_count(), jax.process_index()
  train_iter = pipeline.Batches(sources["train"], encode, config.data.batch_size, config.data.seed,
                                process_index=pi, process_count=pc)
  eval_fn = jax.jit(eval_step, in_shardings=(setup.shardings.params, setup.batch_sharding),
                    out_shardings=shd.replicated(setup.mesh))

  def evaluate(state):
    limit = config.train.eval_batches * config.data.eval_batch_size or None
    return {split: weighted_means(
        eval_fn, state,
        pipeline.epoch_batches(sources[split], encode, config.data.eval_batch_size, limit=limit,
                               process_index=pi, process_count=pc),
        setup.batch_sharding, prepare) for split in config.train.eval_splits}

  return run(config, workdir, setup, step_fn, train_iter, evaluate, init_params=init_params,
             desc=desc, show=show, prepare=prepare)
