r"""Sampling throughput: KV-cached vs uncached decoding, tokens/s.

    python benchmarks/sampling.py                      # the cpu-scale policy, one RL rollout
    python benchmarks/sampling.py --d_model=256 --layers=4 --batch=32 --new_tokens=64

Both paths run the same jitted `lax.while_loop` sampler (warm_jax.sampling); the uncached one
re-runs the whole prefix every step. Prompts are random tokens; EOS is disabled so every row
generates exactly --new_tokens tokens. Reported: generated tokens per second after a compile run.
"""

from __future__ import annotations

import argparse
import time

import sys

from warm_jax import xla_flags

xla_flags.apply(dtype=xla_flags.argv_dtype(sys.argv))  # before jax starts (as the entry points do)

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from warm_jax import configs, sampling  # noqa: E402
from warm_jax.models import LanguageModel  # noqa: E402


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--size", default="cpu", help="a warm_jax.configs.MODEL_SIZES entry")
  p.add_argument("--d_model", type=int, default=0)
  p.add_argument("--layers", type=int, default=0)
  p.add_argument("--vocab", type=int, default=1024)
  # Defaults: one RL rollout of experiments/rl.py:cpu (16 prompts x 4 samples, 80 + 40 tokens).
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--prompt_len", type=int, default=80)
  p.add_argument("--new_tokens", type=int, default=40)
  p.add_argument("--reps", type=int, default=3)
  args = p.parse_args()
  cfg = configs.model_config(args.size, vocab_size=args.vocab,
                             max_len=args.prompt_len + args.new_tokens)
  if args.d_model:
    cfg.d_model, cfg.d_ff, cfg.n_heads = args.d_model, 3 * args.d_model, max(args.d_model // 64, 1)
  if args.layers:
    cfg.n_layers = args.layers
  model = LanguageModel(cfg)
  params = nn.unbox(model.init(jax.random.key(0), jnp.ones((1, 4), jnp.int32))["params"])
  prompts = jnp.asarray(np.random.default_rng(0).integers(3, args.vocab, (args.batch, args.prompt_len)),
                        jnp.int32)
  print(f"backend {jax.default_backend()} x{jax.device_count()}; d_model {cfg.d_model}, "
        f"{cfg.n_layers} layers, vocab {cfg.vocab_size}; batch {args.batch}, prompt "
        f"{args.prompt_len}, new tokens {args.new_tokens}")
  print("| decoding | compile+first s | tokens/s | speed-up |")
  print("|---|---|---|---|")
  rates = {}
  for use_cache in (False, True):
    fn = sampling.make_generate(model, max_new_tokens=args.new_tokens, temperature=1.0, eos_id=-1,
                                use_cache=use_cache)
    t = time.perf_counter()
    jax.block_until_ready(fn(params, prompts, jax.random.key(0)))
    first = time.perf_counter() - t
    best = float("inf")
    for r in range(args.reps):
      t = time.perf_counter()
      jax.block_until_ready(fn(params, prompts, jax.random.key(r + 1)))
      best = min(best, time.perf_counter() - t)
    rates[use_cache] = args.batch * args.new_tokens / best
    name = "KV cache" if use_cache else "uncached (full prefix each step)"
    print(f"| {name} | {first:.1f} | {rates[use_cache]:,.0f} | "
          f"{rates[use_cache] / rates[False]:.2f}x |", flush=True)


if __name__ == "__main__":
  main()
