r"""Sampling throughput: warm_jax's KV-cached decoding vs transformers' `generate` (PyTorch,
KV cache on), same shape, same batch, one process, alternating rounds.

    source benchmarks/env.sh
    python benchmarks/vs_hf_generate.py                 # 16 prompts of 128 tokens, 128 new tokens
    python benchmarks/vs_hf_generate.py --batch=64 --new_tokens=64

Both sample at temperature 1 from the full distribution (no top-k / top-p), with [eos] unable to
stop a row early (warm_jax: eos_id=-1; transformers: min_new_tokens = max_new_tokens), so every
row generates exactly --new_tokens tokens. warm_jax: `sampling.make_generate` (one jitted
`lax.while_loop` over a pre-allocated cache), compiled once before timing. transformers:
`LlamaForCausalLM.generate(do_sample=True)` under `torch.inference_mode()` with its default
dynamic cache. --dtype=bfloat16: warm_jax's model.dtype bfloat16 (float32 weights cast per use,
float32 accumulation), transformers' model in bfloat16. Reported: generated tokens/s (batch * new
tokens / wall seconds), and per side the prefill is included (prompts of --prompt_len tokens).
"""

from __future__ import annotations

import argparse
import time

import common


def warm_jax_side(args):
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import numpy as np
  from warm_jax import sampling
  from warm_jax.models import LanguageModel

  cfg = common.warm_model_config(args, max_len=args.prompt_len + args.new_tokens)
  model = LanguageModel(cfg)
  params = nn.unbox(model.init(jax.random.key(0), jnp.ones((1, 4), jnp.int32))["params"])
  rng = np.random.default_rng(0)
  fn = sampling.make_generate(model, max_new_tokens=args.new_tokens, temperature=1.0, eos_id=-1,
                              use_cache=True)
  prompts = lambda: jnp.asarray(common.random_tokens(rng, (args.batch, args.prompt_len), args.vocab))
  jax.block_until_ready(fn(params, prompts(), jax.random.key(0)))  # compile
  calls = iter(range(1, 10 ** 6))

  def measure() -> float:
    p = prompts()
    t = time.perf_counter()
    out = jax.block_until_ready(fn(params, p, jax.random.key(next(calls))))
    seconds = time.perf_counter() - t
    assert out["tokens"].shape[-1] >= args.new_tokens
    return args.batch * args.new_tokens / seconds
  return measure


def hf_side(args):
  import numpy as np
  import torch
  from transformers import LlamaForCausalLM

  torch.manual_seed(0)
  model = LlamaForCausalLM(common.hf_llama_config(
      args, max_position_embeddings=args.prompt_len + args.new_tokens)).eval()
  if args.dtype == "bfloat16":
    model = model.to(torch.bfloat16)
  rng = np.random.default_rng(0)

  def run():
    ids = torch.from_numpy(common.random_tokens(rng, (args.batch, args.prompt_len), args.vocab)).long()
    with torch.inference_mode():
      t = time.perf_counter()
      out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True,
                           temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=args.new_tokens,
                           min_new_tokens=args.new_tokens, pad_token_id=common.PAD)
      seconds = time.perf_counter() - t
    assert out.shape == (args.batch, args.prompt_len + args.new_tokens), out.shape
    return args.batch * args.new_tokens / seconds
  run()  # warm-up (first-call allocations)
  return run


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  common.shape_args(p)
  p.add_argument("--batch", type=int, default=16, help="prompts per call")
  p.add_argument("--prompt_len", type=int, default=128)
  p.add_argument("--new_tokens", type=int, default=128)
  args = p.parse_args()
  common.require_peers()
  common.side_by_side(
      "sampling", "generated tokens/s",
      {"warm_jax (KV cache)": warm_jax_side(args), "transformers generate": hf_side(args)},
      args, f"{args.batch} prompts x {args.prompt_len} tokens, {args.new_tokens} new tokens "
      "each; temperature 1")


if __name__ == "__main__":
  main()
