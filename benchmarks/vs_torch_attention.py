r"""The attention core alone, forward and backward: warm_jax's `causal_attention` (blocked, flash
gradient) against PyTorch's `scaled_dot_product_attention(is_causal=True)`, at the benchmarks'
shape, one process, alternating rounds.

    source benchmarks/env.sh
    python benchmarks/vs_torch_attention.py                   # [16, 256, 4, 64], float32
    python benchmarks/vs_torch_attention.py --blocks=8 --dtype=bfloat16

One call: softmax(q k^T / sqrt(h), causal) v for queries, keys and values of [batch, seq, heads,
head_dim] (a reward-model step's 8 pairs are 16 sequences), then the gradients of sum(sin(out))
with respect to q, k and v. warm_jax: `models.transformer.causal_attention` with --blocks query
blocks (the model configs' `attention_blocks`), jitted. PyTorch: SDPA on [batch, heads, seq,
head_dim] tensors (its CPU flash kernel). The table also times jax's own
`jax.nn.dot_product_attention(is_causal=True)` (the full T x T); the ratio is warm_jax's
blocked attention over PyTorch's. Reported: tokens/s (batch * seq / seconds per call), the median of
--calls calls per round.

Per layer of the benchmark shape, this is the part of the reward-model step (`vs_trl_reward.py`)
that is neither a projection nor the MLP: `step_profile.py` files it as 'attention core'.
"""

from __future__ import annotations

import argparse
import statistics
import time

import common


def timed(call, calls: int, tokens: int):
  """measure() -> tokens/s: `tokens` over the median time of `calls` calls of `call()` (which
  waits for its result)."""
  call()  # compile / warm up

  def measure() -> float:
    ts = []
    for _ in range(calls):
      t = time.perf_counter()
      call()
      ts.append(time.perf_counter() - t)
    return tokens / statistics.median(ts)
  return measure


def jax_sides(args, q, k, v) -> dict:
  import jax
  import jax.numpy as jnp
  from warm_jax.models import precision
  from warm_jax.models import transformer

  dt = precision.compute_dtype(args.dtype)
  qkv = [jnp.asarray(x, dt) for x in (q, k, v)]
  mask = jnp.ones(q.shape[:2], bool)
  blocked = lambda q, k, v: transformer.causal_attention(q, k, v, mask, args.blocks)
  full = lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=True)
  sides = {}
  for name, attend in ((f"warm_jax causal_attention, {args.blocks} blocks", blocked),
                       ("jax.nn.dot_product_attention", full)):
    loss = lambda q, k, v, f=attend: jnp.sum(jnp.sin(f(q, k, v).astype(jnp.float32)))
    grad = jax.jit(jax.grad(loss, (0, 1, 2)))
    sides[name] = timed(lambda g=grad: jax.block_until_ready(g(*qkv)), args.calls,
                        args.batch * args.seq)
  return sides


def torch_side(args, q, k, v):
  import torch
  dt = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
  qkv = [torch.tensor(x).to(dt).transpose(1, 2).contiguous().requires_grad_() for x in (q, k, v)]

  def call():
    out = torch.nn.functional.scaled_dot_product_attention(*qkv, is_causal=True)
    torch.sin(out.float()).sum().backward()
    for x in qkv:
      x.grad = None
  return timed(call, args.calls, args.batch * args.seq)


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  common.shape_args(p)
  p.add_argument("--batch", type=int, default=16, help="sequences per call")
  p.add_argument("--blocks", type=int, default=4, help="warm_jax's query blocks")
  p.add_argument("--calls", type=int, default=9, help="timed calls per round")
  args = p.parse_args()
  common.require_peers()
  import numpy as np
  rng = np.random.default_rng(0)
  head_dim = args.width // args.heads
  q, k, v = (rng.standard_normal((args.batch, args.seq, args.heads, head_dim)).astype(np.float32)
             for _ in range(3))
  threads = common.torch_threads()
  sides = {**jax_sides(args, q, k, v),
           "torch scaled_dot_product_attention": torch_side(args, q, k, v)}
  results = common.interleaved(sides, args.rounds)
  ours, _, peer = list(sides)
  print(f"attention core, forward and backward, {common.machine_line()}, torch threads {threads}")
  print(f"CPU: {common.cpu_model()}; {common.peaks_line()}")
  print(f"[{args.batch}, {args.seq}, {args.heads}, {head_dim}] queries, keys and values; "
        f"{args.dtype}")
  print(common.ratio_table("attention core", "tokens/s", results, ours, peer))


if __name__ == "__main__":
  main()
