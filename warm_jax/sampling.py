"""Batched autoregressive decoding with a KV cache; `PolicySampler` for comparing policies.

`generate(model, params, prompts, rng, prompt_mask, ...)` takes left-padded prompt tokens [B, P]
and their mask (see `left_pad`; without a mask, padding is inferred from pad id 0, the embedded
task's, which is wrong wherever the pad id is a real token) and returns the sampled continuation
[B, N], the log-probabilities of each sampled token under the sampling distribution (after
temperature / top-k / top-p), and a mask of the real tokens (up to and including the first EOS;
later slots are PAD). Decoding runs in one jitted
`lax.while_loop` that stops once every row has emitted EOS. With `use_cache=False` every step re-runs
the full prefix instead (the reference the cache is tested against, and the benchmark's baseline).
Sharding follows the inputs: put the prompts on the batch sharding and the params on theirs.

As a command, `python -m warm_jax.sampling runs/sft runs/rl ...` prints what each policy run
writes for the same prompts, with the gold reward (`main`).
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from warm_jax.models.transformer import PAD_ID, default_positions

Array = jax.Array


def left_pad(rows: Sequence[Sequence[int]], length: int | None = None,
             pad_id: int = PAD_ID) -> tuple[np.ndarray, np.ndarray]:
  """(tokens int32 [B, length], mask bool [B, length]): token rows left-padded with pad_id to a
  common length (the longest row by default; longer rows are cut from the left) so all prompts
  end at the same slot; the mask is True at the rows' own tokens."""
  from warm_jax.data import pipeline
  length = length or max(len(r) for r in rows)
  tokens, mask = zip(*(pipeline.left_padded(r, length, pad_id) for r in rows))
  return np.stack(tokens), np.stack(mask)


def process_logits(logits: Array, temperature: float, top_k: int, top_p: float) -> Array:
  """Log-probabilities of the sampling distribution: temperature, then top-k, then top-p
  (nucleus) filtering. temperature == 0 means greedy (a one-hot distribution on the argmax)."""
  logits = logits.astype(jnp.float32)
  if temperature == 0.0:
    best = jnp.argmax(logits, axis=-1)
    return jnp.where(jax.nn.one_hot(best, logits.shape[-1], dtype=bool), 0.0, -jnp.inf)
  logits = logits / temperature
  if top_k:
    kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  if top_p < 1.0:
    sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
    cum = jnp.cumsum(jax.nn.softmax(sorted_logits, axis=-1), axis=-1)
    # Keep the smallest prefix whose mass reaches top_p (always at least the top token).
    keep = jnp.sum(cum - jax.nn.softmax(sorted_logits, axis=-1) < top_p, axis=-1, keepdims=True)
    cutoff = jnp.take_along_axis(sorted_logits, keep - 1, axis=-1)
    logits = jnp.where(logits < cutoff, -jnp.inf, logits)
  return jax.nn.log_softmax(logits, axis=-1)


def _empty_cache(model: nn.Module, batch: int):
  shapes = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((batch, model.cfg.max_len), jnp.int32),
                         decode=True))["cache"]
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def make_generate(model: nn.Module, *, max_new_tokens: int, temperature: float = 1.0,
                  top_k: int = 0, top_p: float = 1.0, eos_id: int = 2,
                  use_cache: bool = True) -> Callable[..., dict[str, Array]]:
  """A jitted `fn(params, prompts, rng, prompt_mask=None) -> {'tokens', 'logprobs', 'mask'}` for
  these settings; build it once and call it many times (each new shape of prompts compiles
  once)."""
  return jax.jit(functools.partial(_generate, model, max_new_tokens=max_new_tokens,
                                   temperature=temperature, top_k=top_k, top_p=top_p,
                                   eos_id=eos_id, use_cache=use_cache))


def generate(model: nn.Module, params, prompts: Array, rng: Array, prompt_mask: Array | None = None,
             **settings) -> dict[str, Array]:
  """One-off convenience around `make_generate` (compiles on every call: use make_generate in loops)."""
  return make_generate(model, **settings)(params, prompts, rng, prompt_mask)


def _generate(model: nn.Module, params, prompts: Array, rng: Array,
              prompt_mask: Array | None = None, *, max_new_tokens: int, temperature: float,
              top_k: int, top_p: float, eos_id: int, use_cache: bool) -> dict[str, Array]:
  """Samples up to `max_new_tokens` tokens after left-padded `prompts` [B, P] (real where
  `prompt_mask`; None: where not pad id 0).

  Returns {'tokens': [B, N], 'logprobs': [B, N], 'mask': [B, N]} with N = max_new_tokens (slots
  after a row's eos hold PAD_ID, masked out).
  """
  b, p = prompts.shape
  n = max_new_tokens
  if p + n > model.cfg.max_len:
    raise ValueError(f"prompt length {p} + max_new_tokens {n} exceeds the model's max_len "
                     f"{model.cfg.max_len}")
  prompt_mask = prompts != PAD_ID if prompt_mask is None else prompt_mask.astype(bool)
  prompt_pos = default_positions(prompt_mask)
  next_pos = jnp.sum(prompt_mask, axis=1)  # position of the first generated token, per row
  pick = lambda logp, key: jax.random.categorical(key, logp, axis=-1)

  if use_cache:
    cache = _empty_cache(model, b)
    logits, vars_ = model.apply({"params": params, "cache": cache}, prompts, prompt_mask,
                                prompt_pos, decode=True, mutable=["cache"])
    carry_model = vars_["cache"]
  else:
    seq = jnp.concatenate([prompts, jnp.full((b, n), PAD_ID, jnp.int32)], axis=1)
    seq_mask = jnp.concatenate([prompt_mask, jnp.zeros((b, n), bool)], axis=1)
    logits = model.apply({"params": params}, prompts, prompt_mask, prompt_pos)
    carry_model = (seq, seq_mask)
  last_logits = logits[:, -1]

  tokens = jnp.full((b, n), PAD_ID, jnp.int32)
  logprobs = jnp.zeros((b, n), jnp.float32)
  mask = jnp.zeros((b, n), bool)
  done = jnp.zeros((b,), bool)

  def cond(c):
    i, _, _, _, _, done, _, _ = c
    return (i < n) & ~jnp.all(done)

  def body(c):
    i, last_logits, tokens, logprobs, mask, done, carry_model, rng = c
    rng, key = jax.random.split(rng)
    logp = process_logits(last_logits, temperature, top_k, top_p)
    tok = pick(logp, key)
    tok_logp = jnp.take_along_axis(logp, tok[:, None], axis=-1)[:, 0]
    live = ~done
    tok = jnp.where(live, tok, PAD_ID)
    tokens = tokens.at[:, i].set(tok)
    logprobs = logprobs.at[:, i].set(jnp.where(live, tok_logp, 0.0))
    mask = mask.at[:, i].set(live)
    done = done | (tok == eos_id)
    pos = (next_pos + i)[:, None]
    if use_cache:
      out, vars_ = model.apply({"params": params, "cache": carry_model}, tok[:, None],
                               live[:, None], pos, decode=True, mutable=["cache"])
      carry_model, new_logits = vars_["cache"], out[:, 0]
    else:
      seq, seq_mask = carry_model
      seq = seq.at[:, p + i].set(tok)
      seq_mask = seq_mask.at[:, p + i].set(live)
      out = model.apply({"params": params}, seq, seq_mask, default_positions(seq_mask))
      carry_model, new_logits = (seq, seq_mask), out[:, p + i]
    return i + 1, new_logits, tokens, logprobs, mask, done, carry_model, rng

  init = (jnp.int32(0), last_logits, tokens, logprobs, mask, done, carry_model, rng)
  _, _, tokens, logprobs, mask, _, _, _ = jax.lax.while_loop(cond, body, init)
  return {"tokens": tokens, "logprobs": logprobs, "mask": mask}


def decode_texts(tokenizer, tokens: np.ndarray, mask: np.ndarray, eos_id: int) -> list[str]:
  """Text of each generated row (real tokens only, EOS dropped)."""
  out = []
  for row, m in zip(np.asarray(tokens), np.asarray(mask)):
    ids = [int(t) for t, keep in zip(row, m) if keep and t != eos_id]
    out.append(tokenizer.decode(ids))
  return out


def sample_texts(model: nn.Module, params, tokenizer, prompts: Sequence[str], *, prompt_len: int,
                 max_new_tokens: int, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                 seed: int = 0, batch_size: int = 32, generate_fn=None) -> list[str]:
  """Responses (strings) of the policy `params` to `prompts`, in fixed-size batches of
  [bos] prompt rows left-padded to `prompt_len` (the last batch padded: one compilation).
  `generate_fn` (from make_generate) avoids recompiling across calls."""
  fn = generate_fn or make_generate(model, max_new_tokens=max_new_tokens, temperature=temperature,
                                    top_k=top_k, top_p=top_p, eos_id=tokenizer.eos_id)
  from warm_jax.data import pipeline
  rows = [pipeline.with_bos(tokenizer.encode(p), tokenizer.bos_id) for p in prompts]
  out: list[str] = []
  for start in range(0, len(rows), batch_size):
    chunk = rows[start:start + batch_size]
    real = len(chunk)
    chunk = chunk + [chunk[-1]] * (batch_size - real)
    tokens, mask = left_pad(chunk, prompt_len, pipeline.pad_id_of(tokenizer))
    res = fn(params, jnp.asarray(tokens), jax.random.fold_in(jax.random.key(seed), start),
             jnp.asarray(mask))
    out += decode_texts(tokenizer, np.asarray(res["tokens"]), np.asarray(res["mask"]),
                        tokenizer.eos_id)[:real]
  return out


class PolicySampler:
  """Answers prompts with language-model runs (SFT, RL, DPO) of one architecture, on one device.

      sampler = sampling.PolicySampler(config.model, tokenizer, prompt_len=48, max_new_tokens=40)
      texts = sampler.sample("runs/rl", prompts, seed=1)         # a run directory or params

  One compiled decoding function serves every run and every call (same shapes), so comparing
  several policies on the same prompts compiles once. Sampling follows `sample_texts` (same seed,
  same prompts: same responses).
  """

  def __init__(self, model_cfg, tokenizer, *, prompt_len: int, max_new_tokens: int,
               temperature: float = 1.0, batch_size: int = 64, device=None):
    from warm_jax import sharding as shd
    from warm_jax.models import LanguageModel
    if prompt_len + max_new_tokens > model_cfg.max_len:
      raise ValueError(f"prompt_len {prompt_len} + max_new_tokens {max_new_tokens} exceeds the "
                       f"model's max_len {model_cfg.max_len}")
    self.model, self.tokenizer = LanguageModel(model_cfg), tokenizer
    self.prompt_len, self.max_new_tokens, self.batch_size = prompt_len, max_new_tokens, batch_size
    self.mesh = shd.make_mesh(("data",), (-1,), [device or jax.devices()[0]])
    self.generate = make_generate(self.model, max_new_tokens=max_new_tokens,
                                  temperature=temperature, eos_id=tokenizer.eos_id)

  @classmethod
  def of(cls, config, section, temperature: float | None = None) -> "PolicySampler":
    """A sampler of config.model with config.data's tokenizer and the lengths of `section` (a
    sub-config with prompt_len, max_new_tokens, batch_size and, unless `temperature` is given,
    temperature): `PolicySampler.of(config, config.final, config.rl.temperature)`."""
    from warm_jax import data as data_lib
    return cls(config.model, data_lib.load_tokenizer(config.data), prompt_len=section.prompt_len,
               max_new_tokens=section.max_new_tokens, batch_size=section.batch_size,
               temperature=section.temperature if temperature is None else temperature)

  def load(self, run: str, step: int | None = None):
    """The params of a language-model run (latest step unless `step`) on this sampler's device."""
    from warm_jax.train import init
    return init.load_lm_params(run, self.model.cfg, self.mesh, (), step)

  def sample(self, policy, prompts: Sequence[str], seed: int = 0) -> list[str]:
    """One response per prompt from `policy` (a run directory or its params)."""
    params = self.load(policy) if isinstance(policy, str) else policy
    return sample_texts(self.model, params, self.tokenizer, prompts, prompt_len=self.prompt_len,
                        max_new_tokens=self.max_new_tokens, seed=seed,
                        batch_size=self.batch_size, generate_fn=self.generate)

  def sample_n(self, policy, prompts: Sequence[str], n: int, seed: int = 0,
               desc: str = "sampling") -> list[list[str]]:
    """n responses from `policy` to each prompt: [prompts][n]. The prompt-major rows go in
    batches, batch k seeded `seed + k * batch_size`, with a progress bar (ETA)."""
    from warm_jax.train.metrics import Progress
    params = self.load(policy) if isinstance(policy, str) else policy
    flat = [p for p in prompts for _ in range(n)]
    texts, progress = [], Progress(len(flat), desc)
    for start in range(0, len(flat), self.batch_size):
      texts += self.sample(params, flat[start:start + self.batch_size], seed=seed + start)
      progress.update(len(texts))
    progress.close(len(texts))
    return [texts[i * n:(i + 1) * n] for i in range(len(prompts))]


def main(argv=None) -> dict:
  """`python -m warm_jax.sampling RUN [RUN ...] [--split validation] [--n 4] [--temperature 1.0]
  [--seed 1]`: each LM run (pre-training, SFT, RL or DPO) of the embedded task answers the same
  prompts; its model and data settings are read from its own checkpoint's config. Prints, per
  prompt, each run's response and its gold total; returns {run: [(response, gold), ...]}."""
  import argparse
  import os
  ap = argparse.ArgumentParser(prog="python -m warm_jax.sampling",
                               description="What policies write: each LM run's response to the "
                               "same prompts, with its gold reward (embedded task).")
  ap.add_argument("runs", nargs="+", help="LM run directories (SFT, RL, DPO, pre-training)")
  ap.add_argument("--split", default="validation")
  ap.add_argument("--n", type=int, default=4, help="number of prompts")
  ap.add_argument("--prompt_len", type=int, default=72)
  ap.add_argument("--max_new_tokens", type=int, default=40)
  ap.add_argument("--temperature", type=float, default=1.0)
  ap.add_argument("--seed", type=int, default=1)
  args = ap.parse_args(argv)
  if args.n < 1:
    ap.error(f"--n must be >= 1, got {args.n}")
  for r in args.runs:
    if not os.path.exists(r):
      ap.error(f"run {r} does not exist")

  import ml_collections

  from warm_jax import checkpoints
  from warm_jax import data as data_lib
  from warm_jax.data import embedded
  from warm_jax.train import init

  out, prompts = {}, None
  for run in args.runs:
    meta = checkpoints.read_meta(init.resolve(run))
    config = ml_collections.ConfigDict(meta["config"])
    if prompts is None:
      source = data_lib.load_split(config.data, args.split)
      prompts = [source[i]["prompt"] for i in range(min(args.n, len(source)))]
      tokenizer = data_lib.load_tokenizer(config.data)
    model_cfg = config.model.copy_and_resolve_references()
    model_cfg.max_len = max(model_cfg.max_len, args.prompt_len + args.max_new_tokens)
    sampler = PolicySampler(model_cfg, tokenizer, prompt_len=args.prompt_len,
                                     max_new_tokens=args.max_new_tokens,
                                     temperature=args.temperature, batch_size=len(prompts))
    texts = sampler.sample(run, prompts, seed=args.seed)
    gold = embedded.gold_reward_batch(prompts, texts, config.data.task)["total"]
    out[run] = [(t, float(g)) for t, g in zip(texts, gold)]
  for i, p in enumerate(prompts):
    print(f"prompt: {p}")
    for run in args.runs:
      t, g = out[run][i]
      print(f"  {run:<24} [gold {g:.2f}] {t}")
  return out


if __name__ == "__main__":
  main()
