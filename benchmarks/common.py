"""What the side-by-side benchmarks share: one model shape for warm_jax and the PyTorch peers,
the synthetic token data, the word-level tokenizer the peers need, and interleaved timing.

The shape is a Llama-style decoder (RMSNorm, rotary positions, SwiGLU MLP, tied embeddings) that
warm_jax's `Decoder` and transformers' `LlamaModel` both implement exactly: 4 layers, width 256,
4 heads of 64, MLP 768, vocabulary 8192, sequences of 256 tokens, float32, no dropout.

Both sides run in one process, one after the other in alternating rounds (jax, torch, jax,
torch, ...), so a slow spell of the machine hits both; the tables report the median round of each
side and their ratio, the figure that does not depend on the machine's speed.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Callable

from warm_jax import xla_flags

USER_XLA_FLAGS = os.environ.get("XLA_FLAGS")  # before warm_jax's defaults are added
xla_flags.apply(dtype=xla_flags.argv_dtype(sys.argv))  # before jax starts (as the entry points do)

import numpy as np  # noqa: E402

SHAPE = dict(n_layers=4, d_model=256, n_heads=4, d_ff=768, vocab_size=8192, seq=256)
PAD, EOS, UNK = 0, 1, 2  # ids shared by both sides; words are ids 3 .. vocab_size - 1


def shape_args(p, **defaults) -> None:
  """Adds --layers/--width/--heads/--d_ff/--vocab/--seq (defaults: SHAPE) to a parser."""
  s = {**SHAPE, **defaults}
  p.add_argument("--layers", type=int, default=s["n_layers"])
  p.add_argument("--width", type=int, default=s["d_model"])
  p.add_argument("--heads", type=int, default=s["n_heads"])
  p.add_argument("--d_ff", type=int, default=s["d_ff"])
  p.add_argument("--vocab", type=int, default=s["vocab_size"])
  p.add_argument("--seq", type=int, default=s["seq"])
  p.add_argument("--rounds", type=int, default=3, help="alternating timing rounds per side")
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                 help="compute precision of both sides: bfloat16 is warm_jax's model.dtype "
                      "(float32 master weights and accumulation) and the peers' bf16 "
                      "(autocast in the trainers, bfloat16 weights for generate)")


def warm_model_config(args, max_len: int | None = None):
  """warm_jax's model config of the shape in `args`."""
  from warm_jax import configs
  c = configs.model_config("tiny", vocab_size=args.vocab, max_len=max_len or args.seq)
  c.update(d_model=args.width, n_layers=args.layers, n_heads=args.heads, d_ff=args.d_ff,
           dropout_rate=0.0, dtype=getattr(args, "dtype", "float32"), tie_embeddings=True,
           remat=False)
  return c


def hf_llama_config(args, **extra):
  """The transformers LlamaConfig of the same shape (and the same norm eps and rope theta)."""
  from transformers import LlamaConfig
  fields = dict(vocab_size=args.vocab, hidden_size=args.width, intermediate_size=args.d_ff,
                num_hidden_layers=args.layers, num_attention_heads=args.heads,
                num_key_value_heads=args.heads, max_position_embeddings=args.seq,
                rms_norm_eps=1e-6, rope_theta=10_000.0, tie_word_embeddings=True,
                attention_dropout=0.0, pad_token_id=PAD, eos_token_id=EOS, bos_token_id=None)
  return LlamaConfig(**{**fields, **extra})


def hf_tokenizer(vocab: int):
  """A word-level fast tokenizer over 'w3' .. 'w{vocab-1}' with <pad>=0, <eos>=1, <unk>=2, so the
  peers' text pipelines see exactly the token ids warm_jax sees."""
  from tokenizers import Tokenizer, models, pre_tokenizers
  from transformers import PreTrainedTokenizerFast
  words = {"<pad>": PAD, "<eos>": EOS, "<unk>": UNK, **{f"w{i}": i for i in range(3, vocab)}}
  tok = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
  return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                                 unk_token="<unk>")


def words(ids) -> str:
  return " ".join(f"w{int(i)}" for i in ids)


def random_tokens(rng: np.random.Generator, shape, vocab: int) -> np.ndarray:
  return rng.integers(3, vocab, shape, dtype=np.int32)


def torch_threads() -> int:
  """Pins torch to the machine's cores (what JAX's CPU client uses too)."""
  import torch
  n = os.cpu_count() or 1
  torch.set_num_threads(n)
  return n


def require_peers() -> None:
  import importlib.util
  missing = [m for m in ("torch", "transformers", "trl") if importlib.util.find_spec(m) is None]
  if missing:
    raise SystemExit(f"{', '.join(missing)} not installed: the peers live in their own venv; run "
                     "`source benchmarks/env.sh` first (it creates .venv-bench with warm_jax, "
                     "torch, transformers and trl)")


def interleaved(sides: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
  """Calls each side's measurement (it returns a rate) once per round, alternating sides."""
  out: dict[str, list[float]] = {k: [] for k in sides}
  for r in range(rounds):
    for name, measure in sides.items():
      rate = measure()
      out[name].append(rate)
      print(f"  round {r + 1}/{rounds} {name}: {rate:,.1f}", file=sys.stderr, flush=True)
  return out


def median(xs) -> float:
  return statistics.median(xs)


def machine_line() -> str:
  import jax
  import platform
  versions = [f"jax {jax.__version__}"]
  try:
    import torch  # noqa: F401
    import transformers  # noqa: F401
    import trl  # noqa: F401
    versions += [f"torch {torch.__version__}", f"transformers {transformers.__version__}",
                 f"trl {trl.__version__}"]
  except ImportError:
    pass
  return (f"{platform.machine()}, {os.cpu_count()} cores, backend {jax.default_backend()}; "
          + ", ".join(versions))


def cpu_model() -> str:
  """The CPU's model name, family/model numbers and matrix extensions (from /proc/cpuinfo)."""
  info: dict = {}
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if ":" in line:
          k, v = (x.strip() for x in line.split(":", 1))
          info.setdefault(k, v)
  except OSError:
    import platform
    return platform.processor() or platform.machine()
  flags = set(info.get("flags", "").split())
  ext = [name for flag, name in (("avx512f", "AVX-512"), ("amx_bf16", "AMX-BF16"),
                                 ("avx512_bf16", "AVX512-BF16")) if flag in flags]
  return (f"{info.get('model name', '?')} (family {info.get('cpu family', '?')} model "
          f"{info.get('model', '?')}{'; ' + ', '.join(ext) if ext else ''})")


def matmul_peak(dtype, n: int = 2048, reps: int = 10) -> float:
  """FLOP/s of an n x n x n jax matmul of `dtype` operands accumulating in float32 (as the
  model's matmuls do: `models.precision`), best of `reps` after a warm-up (`best_seconds`)."""
  import jax
  import jax.numpy as jnp
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), dtype)
  f = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32))
  f = f.lower(a, b).compile()  # so that best_seconds' warm-up call is a call, not a compile
  return 2 * n ** 3 / best_seconds(lambda: f(a, b).block_until_ready(), reps)


def best_seconds(call: Callable[[], object], reps: int, budget_s: float = 5.0) -> float:
  """The shortest of `reps` timed calls of `call()` after a warm-up call. A warm-up over
  `budget_s` seconds is the measurement itself: a CPU with no instructions for a dtype (torch's
  bfloat16 matmul on an AVX2 machine: a minute per 2048^3 product) is not timed ten more times."""
  t = time.perf_counter()
  call()
  first = time.perf_counter() - t
  if first > budget_s:
    return first
  best = float("inf")
  for _ in range(reps):
    t = time.perf_counter()
    call()
    best = min(best, time.perf_counter() - t)
  return best


def torch_matmul_peak(dtype_name: str, n: int = 2048, reps: int = 10) -> float:
  """The same for torch (bfloat16 operands with a bfloat16 result, torch's own matmul)."""
  import torch
  dt = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype_name]
  g = torch.Generator().manual_seed(0)
  a, b = (torch.randn(n, n, generator=g).to(dt) for _ in range(2))
  with torch.inference_mode():
    return 2 * n ** 3 / best_seconds(lambda: a @ b, reps)


def peaks_line(torch_too: bool = True) -> str:
  """The machine's measured 2048^3 matmul peaks, float32 and bfloat16, jax (and torch)."""
  import jax.numpy as jnp
  parts = [f"jax float32 {matmul_peak(jnp.float32) / 1e12:.2f}, bfloat16 (float32 accumulation) "
           f"{matmul_peak(jnp.bfloat16) / 1e12:.2f} TFLOP/s"]
  if torch_too:
    parts.append(f"torch float32 {torch_matmul_peak('float32') / 1e12:.2f}, bfloat16 "
                 f"{torch_matmul_peak('bfloat16') / 1e12:.2f} TFLOP/s")
  return "matmul peaks (2048^3, best of 10, or one call of over 5 s): " + "; ".join(parts)


def ratio_table(title: str, unit: str, results: dict[str, list[float]], ours: str,
                peer: str) -> str:
  lines = [f"| {title} | {unit} (median of {len(results[ours])}) | rounds |", "|---|---|---|"]
  for name, xs in results.items():
    lines.append(f"| {name} | {median(xs):,.1f} | " + ", ".join(f"{x:,.0f}" for x in xs) + " |")
  lines.append(f"| **{ours} / {peer}** | **{median(results[ours]) / median(results[peer]):.2f}x** | |")
  return "\n".join(lines)


def warm_train_setup(experiment: str, trainer, args, lr: float):
  """The `tiny` config of experiments/<experiment>.py at the benchmark's shape and batch
  (AdamW, constant lr, clipping at 1.0, as the peers), its setup and a fresh sharded state."""
  import jax
  from warm_jax import configs
  from warm_jax.train import state as state_lib
  c = configs.load_experiment(experiment).get_config("tiny")
  c.model = warm_model_config(args)
  c.data.max_len = args.seq
  c.data.batch_size = c.data.eval_batch_size = args.batch
  c.optim.update(lr=lr, warmup_steps=0, end_lr_fraction=1.0, weight_decay=0.0, clip_norm=1.0)
  setup = trainer.build(c)
  state = state_lib.create_state(setup.init_params, setup.tx, jax.random.key(0), setup.shardings)
  return setup, state


def under_mesh(mesh, jitted: Callable) -> Callable:
  """`jitted` (a jax.jit train step) called under `jax.set_mesh(mesh)`, as the loop runs it."""
  import jax

  def run(*args):
    with jax.set_mesh(mesh):
      return jitted(*args)
  return run


def rm_step_program(args):
  """warm_jax's reward-model train step at the benchmark's shape (what
  experiments/reward_model.py runs, guarded): (setup, state, the step as a jax.jit to call under
  the mesh, batch() -> a fresh global batch of random pairs)."""
  from warm_jax import sharding as shd
  from warm_jax.train import reward_model as rm
  from warm_jax.train import state as state_lib
  setup, state = warm_train_setup("reward_model", rm, args, lr=1e-4)
  jitted = state_lib.jitted_step(rm.make_train_step(setup.model, setup.tx, setup.schedule, 0.0, 1),
                                 setup.shardings, setup.batch_sharding, setup.mesh, setup.rules,
                                 guard=True)
  rng = np.random.default_rng(0)

  def batch():
    host = {k: random_tokens(rng, (args.batch, args.seq), args.vocab)
            for k in ("chosen", "rejected")}
    return shd.to_global(host, setup.batch_sharding)
  return setup, state, jitted, batch


def dpo_layout(args) -> tuple[int, int]:
  """(prompt tokens, response words) of a DPO row: + [eos], the row is args.seq long."""
  prompt = args.seq // 2
  return prompt, args.seq - prompt - 1


def dpo_step_program(args):
  """warm_jax's DPO train step at the benchmark's shape (sigmoid loss, beta 0.1, guarded), with
  the frozen reference's log-probs added to each batch by `dpo.ReferenceLogps` (the loop's
  prepare hook): (setup, state, the step as a jax.jit to call under the mesh, batch())."""
  import jax
  from warm_jax import sharding as shd
  from warm_jax.train import dpo
  from warm_jax.train import state as state_lib
  setup, state = warm_train_setup("dpo", dpo, args, lr=1e-6)
  ref = jax.tree.map(lambda x: x.copy(), state.params)
  prepare = dpo.ReferenceLogps(setup.model, ref, setup.mesh, setup.rules, setup.shardings.params,
                               setup.batch_sharding)
  jitted = state_lib.jitted_step(
      dpo.make_train_step(setup.model, setup.tx, setup.schedule, 0.1, "sigmoid", 0.0, 1),
      setup.shardings, setup.batch_sharding, setup.mesh, setup.rules, guard=True)
  rng = np.random.default_rng(0)
  prompt, response = dpo_layout(args)
  weights = np.zeros((args.batch, args.seq), np.float32)
  weights[:, prompt:] = 1.0  # response tokens and [eos]

  def batch():
    host = {}
    p = random_tokens(rng, (args.batch, prompt), args.vocab)
    for k in ("chosen", "rejected"):
      r = random_tokens(rng, (args.batch, response), args.vocab)
      host[k] = np.concatenate([p, r, np.full((args.batch, 1), EOS, np.int32)], axis=1)
      host[f"{k}_weights"] = weights
    return prepare(None, shd.to_global(host, setup.batch_sharding))
  return setup, state, jitted, batch


def jax_train_measure(step, state, batch, tokens_per_step: int, steps: int):
  """Compiles `step(state, batch())` once; returns measure() -> tokens/s over `steps` steps, each
  on a fresh batch (the state carried across calls, as a run would)."""
  import jax
  box = {"state": state}
  box["state"], m = step(box["state"], batch())  # compile
  jax.block_until_ready(m)

  def measure() -> float:
    t = time.perf_counter()
    for _ in range(steps):
      box["state"], m = step(box["state"], batch())
    jax.block_until_ready(m)
    return tokens_per_step * steps / (time.perf_counter() - t)
  return measure


def hf_train_measure(make_trainer: Callable, tokens_per_step: int):
  """`make_trainer(callbacks)` builds a transformers Trainer; returns measure() that runs its
  train() and gives tokens/s from the median wall time between consecutive `on_step_end`
  callbacks after the first two steps."""
  from transformers import TrainerCallback

  class Tick(TrainerCallback):
    def __init__(self, timer):
      self.timer = timer

    def on_step_end(self, *a, **k):
      self.timer.tick()

  def measure() -> float:
    timer = StepTimer()
    trainer = make_trainer([Tick(timer)])
    timer.tick()
    trainer.train()
    return tokens_per_step / timer.per_step(skip=2)
  return measure


def shape_line(args) -> str:
  return (f"shape: {args.layers} layers, width {args.width}, {args.heads} heads, MLP {args.d_ff}, "
          f"vocab {args.vocab}")


def side_by_side(title: str, unit: str, sides: dict[str, Callable[[], float]], args,
                 workload: str) -> None:
  """Runs the sides in alternating rounds (args.rounds) and prints the table (the first side is
  ours), under a line with the shape and `workload` (what one step or call does)."""
  threads = torch_threads()
  results = interleaved(sides, args.rounds)
  ours, peer = list(sides)
  print(f"{title}, {machine_line()}, torch threads {threads}")
  print(f"CPU: {cpu_model()}; {peaks_line()}")
  print(f"{shape_line(args)}; {workload}; {args.dtype}")
  print(ratio_table(title, unit, results, ours, peer))


class StepTimer:
  """Wall time between consecutive calls of `tick()` (a training loop's step boundaries)."""

  def __init__(self):
    self.times: list[float] = []

  def tick(self) -> None:
    self.times.append(time.perf_counter())

  def per_step(self, skip: int) -> float:
    """Median seconds per step, after the first `skip` steps (compilation, warm-up)."""
    gaps = np.diff(self.times)[skip:]
    if not len(gaps):
      raise ValueError("not enough timed steps; raise --steps")
    return float(np.median(gaps))


def write_synthetic_hf(out_dir: str, *, d_model: int, n_layers: int, n_heads: int, n_kv_heads: int,
                       d_ff: int, vocab: int, kind: str = "rm", dtype: str = "bfloat16",
                       seed: int = 0, max_shard_bytes: int = 5 << 30) -> str:
  """A Llama-shaped Hugging Face directory of random weights (normal, std 0.02; tied embeddings):
  `LlamaForSequenceClassification` (kind 'rm') or `LlamaForCausalLM` ('lm'), written with
  warm_jax's own safetensors writer one tensor at a time (so a model larger than memory can be
  made), and its config.json as export writes it. Returns out_dir (left alone if it holds one)."""
  from warm_jax import configs
  from warm_jax.pretrained import convert, families
  from warm_jax.pretrained import safetensors_io as st
  from warm_jax.pretrained.layout import tensor_layout
  if os.path.exists(os.path.join(out_dir, "config.json")):
    return out_dir
  cfg = configs.model_config("tiny", vocab_size=vocab, max_len=4096)
  cfg.update(d_model=d_model, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads,
             d_ff=d_ff, tie_embeddings=True, scale_tied_logits=False, reward_head_bias=False)
  np_dtype = np.dtype(convert._DTYPES[dtype])

  def produce(i, shape):
    rng = np.random.default_rng([seed, i])
    return (rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)).astype(np_dtype)

  entries = [st.TensorEntry(m.name, m.hf_shape, np_dtype, lambda i=i, s=m.hf_shape: produce(i, s))
             for i, m in enumerate(tensor_layout(cfg, kind))]
  config = families.hf_config_from_model(cfg, "llama", kind, tie_word_embeddings=True, dtype=dtype,
                                         overrides={"pad_token_id": 0, "bos_token_id": 1,
                                                    "eos_token_id": 2})

  def fill(tmp):
    st.write_checkpoint(tmp, entries, max_shard_bytes, metadata={"format": "pt"})
    convert.write_json(os.path.join(tmp, "config.json"), config)
  return convert.write_directory(out_dir, fill)


def dir_bytes(path: str) -> int:
  """Bytes of the files under `path`."""
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


PEAK_MARK = "__peak_rss_kb="


def run_measured(cmd: list[str], env: dict | None = None) -> tuple[float, int, str]:
  """(wall seconds, peak RSS in bytes, output) of a command run in its own process, under
  /usr/bin/time: the peak is the command's own. (A child's ru_maxrss as os.wait4 reports it
  starts at the RSS its parent had when it forked, which a benchmark holding models would
  inflate; /usr/bin/time forks from its own small process.)"""
  import re
  import subprocess
  t0 = time.perf_counter()
  proc = subprocess.run(["/usr/bin/time", "-f", PEAK_MARK + "%M", *cmd], stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, env=env)
  seconds = time.perf_counter() - t0
  out = proc.stdout.decode(errors="replace")
  if proc.returncode != 0:
    raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-3000:]}")
  peak = int(re.findall(re.escape(PEAK_MARK) + r"(\d+)", out)[-1]) * 1024
  return seconds, peak, out
