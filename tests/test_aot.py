"""Ahead-of-time compilation for TPU slices (`warm_jax.aot`): slice names, the FLOP count of
traced programs with their loops, every experiment's stages built as programs, the rollout
batch RL's step is compiled for against a real rollout, bad input before any compile, and (with
libtpu, which CI installs: the tpu extra) a tiny config compiled for a v5e-4 whose reported
memory is checked against the sizes of its arguments, the command's table, its fix of a stage
that does not fit, and its exit status."""

import dataclasses
import importlib.util
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ToyTokenizer, experiment
from warm_jax.aot import check, experiments, flops, programs, report, topologies
from warm_jax.errors import InputError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_libtpu = pytest.mark.skipif(
    importlib.util.find_spec("libtpu") is None,
    reason="libtpu is not installed (pip install -e '.[tpu]'; CI installs it: .ci/run)")


@pytest.mark.parametrize("name,topology,chips", [
    ("v5e-16", "v5e:4x4", 16), ("v4-32", "v4:2x2x4", 16), ("v5p-8", "v5p:2x2x1", 4),
    ("v6e-256", "v6e:16x16", 256), ("v4-512", "v4:4x8x8", 256), ("v5e:2x2", "v5e:2x2", 4)])
def test_slice_names(name, topology, chips):
  sl = topologies.slice_of(name)
  assert (sl.topology, sl.chips) == (topology, chips)


@pytest.mark.parametrize("name", ["v5e-3", "v7-8", "v4-6", "v5e:2", "tpu", "v5p-8x"])
def test_unknown_slices_fail_naming_the_flag(name):
  with pytest.raises(InputError, match=rf"--topology='{name}'"):
    topologies.slice_of(name)


def test_flops_count_loops_as_often_as_they_run():
  def layers(ws, x, scan):
    if scan:
      return jax.lax.scan(lambda x, w: (jnp.tanh(x @ w), None), x, ws)[0]
    for w in ws:
      x = jnp.tanh(x @ w)
    return x
  ws, x = jnp.ones((4, 16, 16)), jnp.ones((8, 16))
  one = 2 * 8 * 16 * 16
  for scan in (False, True):
    assert flops.jaxpr_flops(jax.make_jaxpr(lambda w, x: layers(w, x, scan))(ws, x)) == 4 * one
  grad = jax.make_jaxpr(jax.grad(lambda w, x: jnp.sum(layers(w, x, True))))(ws, x)
  assert flops.jaxpr_flops(grad) == 4 * 3 * one  # forward, and two matmuls back per layer

  def loop(x):
    return jax.lax.while_loop(lambda c: c[0] < 5, lambda c: (c[0] + 1, jnp.tanh(c[1] @ ws[0])),
                              (0, x))[1]
  assert flops.jaxpr_flops(jax.make_jaxpr(loop)(x), while_trips=5) == 5 * one


def test_scanned_and_unscanned_train_steps_count_the_same_flops():
  out = []
  for scan in (False, True):
    c = experiment("reward_model").get_config("tiny")
    c.model.update(n_layers=3, scan_layers=scan)
    (p,) = programs.programs("reward_model", c, jax.devices())
    with jax.set_mesh(p.mesh):
      out.append(flops.jaxpr_flops(p.fn.trace(*p.args).jaxpr))
  assert out[0] == out[1] > 0


@pytest.mark.parametrize("name", [*experiments.TRAINS, "warm"])
def test_every_stage_of_every_experiment_traces_as_programs(name):
  cfg = experiment(name).get_config("tiny")
  stages = experiments.trained(name, cfg)
  assert stages
  for t in stages:
    progs = programs.programs(t.kind, t.config(cfg), jax.devices())
    assert [p.name for p in progs] == (["train step", "sampling"] if t.kind == "policy"
                                       else ["train step"])
    for p in progs:
      with jax.set_mesh(p.mesh):
        p.fn.trace(*p.args)


def test_warm_job_lists_each_training_stage_with_its_section():
  cfg = experiment("warm").get_config("tiny")
  got = [(t.label, t.kind, t.section) for t in experiments.trained("warm", cfg)]
  assert got == [("pretrain: pretrain", "lm", "pretrain"), ("sft: SFT", "lm", "sft"),
                 ("warm_label_noise: reward models", "reward_model", "warm_label_noise.rm"),
                 ("warm_rl: RL", "policy", "warm_rl")]
  with pytest.raises(InputError, match="experiments/interpolate.py trains no model"):
    experiments.trained("interpolate", experiment("interpolate").get_config("tiny"))


@pytest.mark.parametrize("algorithm", ["reinforce", "ppo"])
def test_rollout_batch_is_what_a_rollout_returns(algorithm):
  from warm_jax.train import policy
  from warm_jax.train.rollout import Rollout
  c = experiment("rl").get_config("tiny")
  c.rl.algorithm = algorithm
  setup = policy.build(c)
  want = programs.rollout_batch(setup, c)
  params = jax.jit(lambda r: jax.tree.map(jnp.asarray, setup.init_params(r)))(jax.random.key(0))
  from flax import linen as nn
  params = nn.unbox(params)
  zeros = lambda p, r: np.zeros(len(r), np.float32)  # noqa: E731
  rollout = Rollout(setup.model, c.rl, ToyTokenizer(), zeros, zeros, params,
                    setup.batch_sharding, 0)
  prompts = {"prompt": jnp.ones((c.data.batch_size, c.data.max_len), jnp.int32)}
  state = type("State", (), {"params": params, "step": jnp.int32(0)})()
  got = rollout(state, prompts)
  assert sorted(got) == sorted(want)
  for k in want:
    assert (tuple(got[k].shape), np.dtype(got[k].dtype)) == (want[k].shape, np.dtype(want[k].dtype)), k


def test_fixes_shard_then_rematerialise_then_halve_the_batch():
  c = experiment("reward_model").get_config("tiny")
  c.mesh.shape = (-1, 1, 1)
  tried = list(check.fixes(c, 8))
  assert [(s.mesh, s.remat, s.batch) for s in tried] == [
      ((1, 8, 1), "off", 8), ((1, 8, 1), "nothing_saveable", 8)]
  c.data.batch_size = 32
  assert [s.batch for s in check.fixes(c, 8)] == [32, 32, 16, 8]
  fix, given = tried[-1], check.Setting.of(c, 8)
  assert dataclasses.replace(fix, batch=16).overrides("warm_label_noise.rm", given) == [
      "--config.warm_label_noise.rm.mesh.shape='(1,8,1)'",
      "--config.warm_label_noise.rm.model.remat=True",
      "--config.warm_label_noise.rm.data.batch_size=16"]


def test_bad_input_fails_before_compiling_naming_the_field(monkeypatch):
  c = experiment("reward_model").get_config("tiny")
  c.mesh.shape = (3, 1, 1)
  with pytest.raises(InputError, match=r"config\.mesh\.shape=\(3, 1, 1\)"):
    programs.programs("reward_model", c, jax.devices())
  c.mesh.shape = (-1, 1, 1)
  c.data.batch_size = 12
  with pytest.raises(InputError, match=r"config\.data\.batch_size=12 is not a positive multiple of 8"):
    programs.programs("reward_model", c, jax.devices())
  with pytest.raises(InputError, match=r"--model='gpt-5'"):
    report.run([("reward_model", c)], ["v5e-4"], ["gpt-5"], 0.4, True)
  monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
  with pytest.raises(InputError, match=r"needs the libtpu package: pip install -e '\.\[tpu\]'"):
    report.run([("reward_model", c)], ["v5e-4"], ["own"], 0.4, True)


def _shard_bytes(tree) -> int:
  """Bytes of one device's shard of every leaf (ShapeDtypeStructs with shardings)."""
  return sum(int(np.prod(x.sharding.shard_shape(x.shape))) * np.dtype(x.dtype).itemsize
             for x in jax.tree.leaves(tree))


@needs_libtpu
def test_tpu_compile_reports_the_memory_of_its_arguments():
  from warm_jax.aot import budget
  devices = topologies.devices("v5e:2x2")
  assert len(devices) == 4 and devices[0].platform == "tpu"
  sizes = {}
  for mesh in ((-1, 1, 1), (1, -1, 1)):
    c = experiment("reward_model").get_config("tiny")
    c.model.update(d_model=128, n_heads=2, d_ff=256, vocab_size=1024)  # TPU-tile-sized arrays
    c.mesh.shape = mesh
    (p,) = programs.programs("reward_model", c, devices)
    b = budget.measure(p)
    state, batch = p.args
    # The arguments' bytes, up to the padding of arrays to TPU tiles: under 1% for whole
    # parameters; FSDP's shards of small ones pad more, so there only the bound below holds.
    want, slack = _shard_bytes(state) + _shard_bytes(batch), 1.01 if mesh[0] == -1 else 1.5
    assert want <= b.argument <= slack * want, (b.argument, want)
    assert _shard_bytes(state) <= b.alias <= slack * _shard_bytes(state)  # donated: in place
    assert b.flops > 0 and b.temp > 0
    sizes[mesh] = b.argument
  assert sizes[(1, -1, 1)] < 0.5 * sizes[(-1, 1, 1)]  # FSDP splits the parameters 4 ways


@needs_libtpu
def test_command_prints_the_table_and_fixes_what_does_not_fit(monkeypatch, capsys):
  c = experiment("reward_model").get_config("tiny")
  c.mesh.shape = (-1, 1, 1)
  # A wide MLP, so that parameters and optimiser state, which FSDP splits, outweigh the
  # activations (padded to TPU tiles, they dominate the tiny model's peak, and FSDP's
  # gathered weights make its temporaries larger than data parallelism's).
  c.model.d_ff = 4096
  result = report.run([("reward_model", c)], ["v5e-4"], ["own"], 0.5, True)
  out = capsys.readouterr().out
  assert result.all_fit and "| reward model | train step | own (" in out
  assert "fits as configured" in out
  (row,) = result.blocks[0].rows
  # A chip too small for the data-parallel layout but not for FSDP: the fix is found and shown.
  small = dataclasses.replace(topologies.CHIPS["v5e"], hbm_bytes=row.budget.peak - 1)
  monkeypatch.setitem(topologies.CHIPS, "v5e", small)
  result = report.run([("reward_model", c)], ["v5e-4"], ["own"], 0.5, True)
  assert not result.all_fit
  assert result.blocks[0].verdicts["reward model"] == ["--config.mesh.shape='(1,4,1)'"]
  printed = capsys.readouterr()
  assert "does not fit as configured**; fits with --config.mesh.shape='(1,4,1)'" in printed.out
  progress = printed.err.splitlines()  # each setting as it starts compiling, on stderr
  assert progress[0].startswith("aot: reward_model on v5e-4, model own, reward model: as "
                                "configured: mesh (4, 1, 1)")
  assert "does not fit; trying mesh (1, 4, 1)" in progress[1] and "so far)" in progress[1]


@needs_libtpu
@pytest.mark.slow
def test_command_line_exit_status_and_errors():
  cmd = [sys.executable, "-m", "warm_jax.aot", "--config=experiments/reward_model.py:tiny",
         "--topology=v5e-4", "--config.mesh.shape=(1,-1,1)"]
  ok = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
  assert ok.returncode == 0, ok.stderr[-2000:]
  assert "| reward model | train step |" in ok.stdout
  bad = subprocess.run(cmd[:-1] + ["--config.mesh.shape=(3,1,1)"], cwd=REPO, capture_output=True,
                       text=True, timeout=900)
  assert bad.returncode == 2 and "error: config.mesh.shape=(3, 1, 1)" in bad.stderr


def test_a_program_whose_arguments_exceed_hbm_is_not_compiled(monkeypatch):
  from warm_jax.aot import budget
  c = experiment("reward_model").get_config("tiny")
  (p,) = programs.programs("reward_model", c, jax.devices())
  args = budget.shard_bytes(p.args)

  def no_compile(*a, **k):
    raise AssertionError("compiled a program that cannot fit")
  monkeypatch.setattr(jax.stages.Lowered, "compile", no_compile)
  b = budget.measure(p, hbm_bytes=args - 1)
  assert b.skipped and b.argument == args and b.temp == 0 and b.flops > 0
  chip = dataclasses.replace(topologies.CHIPS["v5e"], hbm_bytes=args - 1)
  assert not b.fits(chip)
  row = check.Row("reward model", "train step", "own", 1, check.Setting.of(c, 1), b)
  assert "not compiled: the arguments exceed HBM" in report.table([row], chip, 0.4)


def test_a_compiler_refusal_for_lack_of_hbm_is_read_as_a_budget_that_does_not_fit():
  from warm_jax.aot import budget
  msg = ("RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO "
         "temporaries (47.96G) exceeds available HBM (15.75G).")
  assert budget.out_of_memory_bytes(msg) == int(47.96 * (1 << 30))
  assert budget.out_of_memory_bytes("INVALID_ARGUMENT: something else") is None
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:4]), ("data",))
  spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  args = (jax.ShapeDtypeStruct((8, 16), jnp.float32, sharding=spec),
          {"b": jax.ShapeDtypeStruct((4,), jnp.int32)})
  assert budget.shard_bytes(args) == 2 * 16 * 4 + 4 * 4
  b = budget.Budget(argument=1, output=0, alias=0, temp=budget.out_of_memory_bytes(msg), flops=0.0,
                    loop_trips=1, compile_seconds=0.0, refused=True)
  assert not b.fits(topologies.CHIPS["v5e"])
