r"""Reward-model train-step throughput and model FLOP utilisation (MFU) on this machine.

    python benchmarks/rm_step.py --variant=cpu                       # the cpu config's model
    python benchmarks/rm_step.py --variant=paper --batch=32 --steps=10
    python benchmarks/rm_step.py --variant=cpu --widths=256,512,1024  # sweep d_model
    # the figure of benchmarks/README.md: the shape of benchmarks/common.py, widths 256-1024
    python benchmarks/rm_step.py --widths=256,512,1024 --layers=4 --vocab=8192 --seq=256 --batch=8

Times the jitted, sharded `step(state, batch)` of warm_jax.train.reward_model on synthetic token
batches (no data set needed) after a compile-and-warm-up step, and reports tokens/s and achieved
FLOP/s as a fraction of the *measured* dense matmul peak of the same backend and dtype (a large
square matmul, the physical limit this machine reaches), not a datasheet number.
FLOPs per step = 6 * N_non_embedding * tokens + 12 * n_layers * d_model * seq * tokens
(forward + backward; the attention term of the PaLM appendix), tokens = 2 * batch * seq. The
attention term counts every query against every key; the model's blocked causal attention
computes only part of that (10/16 with its default 4 blocks), so the last column leaves the term
out: the utilisation of the projection and MLP matmuls alone, a lower bound.
"""

from __future__ import annotations

import argparse
import time

import sys

from warm_jax import xla_flags

xla_flags.apply(dtype=xla_flags.argv_dtype(sys.argv))  # before jax starts (as the entry points do)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from common import matmul_peak  # noqa: E402


def step_flops(cfg, batch: int, seq: int, non_embedding_params: int) -> tuple[float, float]:
  """(FLOPs with the attention term, FLOPs of the parameter matmuls only)."""
  tokens = 2 * batch * seq
  matmuls = 6 * non_embedding_params * tokens
  return matmuls + 12 * cfg.n_layers * cfg.d_model * seq * tokens, matmuls


def bench(config, batch: int, steps: int) -> dict:
  from warm_jax import sharding as shd
  from warm_jax.train import reward_model as rm
  from warm_jax.train import state as state_lib
  config.data.batch_size = batch
  config.data.eval_batch_size = batch
  setup = rm.build(config)
  state = state_lib.create_state(setup.init_params, setup.tx, jax.random.key(0), setup.shardings)
  n_params = state_lib.param_count(state.params)
  n_embed = state.params["decoder"]["embed"]["embedding"].size
  step = state_lib.jit_step(rm.make_train_step(setup.model, setup.tx, setup.schedule, 0.0, 1),
                            setup.shardings, setup.batch_sharding, setup.mesh, setup.rules,
                            guard=True)  # what the training loop runs
  seq = config.data.max_len
  rng = np.random.default_rng(0)
  host = {k: rng.integers(3, config.model.vocab_size, (batch, seq), dtype=np.int32)
          for k in ("chosen", "rejected")}
  gbatch = shd.to_global(host, setup.batch_sharding)
  t = time.perf_counter()
  state, m = step(state, gbatch)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - t
  t = time.perf_counter()
  for _ in range(steps):
    state, m = step(state, gbatch)
  jax.block_until_ready(m)
  step_s = (time.perf_counter() - t) / steps
  flops, matmul_flops = step_flops(config.model, batch, seq, n_params - n_embed)
  return {"params": n_params, "batch": batch, "seq": seq, "compile_s": compile_s, "step_s": step_s,
          "tokens_per_s": 2 * batch * seq / step_s, "flops_per_s": flops / step_s,
          "matmul_flops_per_s": matmul_flops / step_s}


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--variant", default="cpu", help="variant of experiments/reward_model.py")
  p.add_argument("--batch", type=int, default=None, help="pairs per step (default: the config's)")
  p.add_argument("--seq", type=int, default=None, help="tokens per row (default: the config's)")
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--widths", default="", help="comma-separated d_model values to sweep")
  p.add_argument("--layers", type=int, default=0, help="n_layers (default: the config's)")
  p.add_argument("--vocab", type=int, default=0, help="vocab_size (default: the config's)")
  p.add_argument("--dtype", default=None, help="model compute dtype (default: the config's)")
  p.add_argument("--matmul_n", type=int, default=0, help="size of the peak matmul (default by backend)")
  args = p.parse_args()

  from warm_jax import configs
  base = configs.load_experiment("reward_model").get_config(args.variant)
  dtype = args.dtype or base.model.dtype
  backend = jax.default_backend()
  n = args.matmul_n or (8192 if backend == "gpu" else 2048)
  peak = matmul_peak(jnp.dtype(dtype), n)
  widths = [int(w) for w in args.widths.split(",") if w] or [base.model.d_model]
  print(f"backend {backend}, {jax.device_count()} x {jax.devices()[0].device_kind}; "
        f"measured {dtype} matmul peak ({n}^3): {peak / 1e12:.3f} TFLOP/s")
  print("| variant | d_model | layers | params | batch x seq | compile s | step ms | tokens/s | "
        "TFLOP/s | MFU vs measured peak | matmuls only |")
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for w in widths:
    c = configs.load_experiment("reward_model").get_config(args.variant)
    c.model.dtype = dtype
    c.model.dropout_rate = 0.0
    if w != c.model.d_model:
      c.model.d_model, c.model.d_ff = w, 3 * w
      c.model.n_heads = max(w // 64, 1)
    if args.seq:
      c.data.max_len = c.model.max_len = args.seq
    if args.layers:
      c.model.n_layers = args.layers
    if args.vocab:
      c.model.vocab_size = args.vocab
    r = bench(c, args.batch or c.data.batch_size, args.steps)
    print(f"| {args.variant} | {w} | {c.model.n_layers} | {r['params'] / 1e6:.1f}M | "
          f"{r['batch']} x {r['seq']} | {r['compile_s']:.1f} | {1e3 * r['step_s']:.1f} | "
          f"{r['tokens_per_s']:,.0f} | {r['flops_per_s'] / 1e12:.3f} | "
          f"{100 * r['flops_per_s'] / peak:.1f}% | {100 * r['matmul_flops_per_s'] / peak:.1f}% |",
          flush=True)


if __name__ == "__main__":
  main()
