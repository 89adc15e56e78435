r"""Writes the Hugging Face parity fixtures of `tests/test_pretrained.py` (run in the bench venv,
which holds torch and transformers; warm_jax's own venv never does):

    /work/main/.venv-bench/bin/python benchmarks/make_hf_fixtures.py      # -> tests/fixtures/hf/

For each case (a family, sometimes with a variant) it builds a TINY randomly initialised
transformers model from a config, saves it with `save_pretrained` (safetensors) both as
`*ForCausalLM` (`<case>/causal_lm/`) and as `*ForSequenceClassification` with num_labels=1 and a
pad_token_id (`<case>/seq_cls/`, the same backbone plus a `score` layer), and writes what
transformers computes for two fixed token batches to `<case>/expected.npz` (plain arrays, no
pickles):

    tokens_{right,left}, mask_{right,left}, positions_{right,left}   int32 [B, T] / bool [B, T]
    logits_f32_{right,left}     float32 [B, T, V]  the float32 model's logits
    scores_f32_{right,left}     float32 [B]        the float32 sequence classifier's scores
    logits_bf16_{right,left}    uint16 [B, T, V]   the bfloat16 model's logits, as raw bf16 bits
    scores_bf16_{right,left}    uint16 [B]         (view them as ml_dtypes.bfloat16)

The same rows are padded once on the right and once on the left. Positions passed to transformers
are cumsum(mask) - 1 clipped at 0, which is what warm_jax's `default_positions` computes: with
right padding that is transformers' own default (0, 1, 2, ... on the real tokens), and with left
padding it makes each row's first real token position 0, as a left-padded prompt has to be read
(transformers' default would count the padding). An attention mask is always passed, so
transformers never infers packed sequences from the positions. Real tokens never equal the pad id,
so the sequence classifier's "last token that is not pad" is the last real token.

HF initialises RMSNorm weights to constants and biases to zero, which would hide a transposed
norm or a missing bias: every norm weight and bias is perturbed randomly, and weights are drawn
with std 1/sqrt(fan_in) so that attention is far from uniform and the soft-caps bite.
Everything is seeded: running the script twice writes the same bytes (see `manifest.json` for
the versions of torch and transformers that wrote them). The whole tree stays under 3 MB.

A tokenizer fixture (`tokenizer/`) is written too: a tiny BPE `tokenizer.json` trained here with a
chat template, saved by transformers' `PreTrainedTokenizerFast.save_pretrained`, with the ids
and the chat-template text transformers produces for fixed inputs (`tokenizer/expected.json`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "tests", "fixtures", "hf")
T = 14  # tokens per row
LENGTHS = (14, 10, 6)  # real tokens per row (one full row, two padded ones)

_COMMON = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
               rms_norm_eps=1e-6)

# case -> (model_type, config fields, what it exercises)
CASES = {
    "llama": ("llama", dict(_COMMON, tie_word_embeddings=False, pad_token_id=0, bos_token_id=1,
                            eos_token_id=2, rope_theta=10_000.0),
              "Llama 2 layout: untied head, GQA, plain RoPE"),
    "llama3_rope": ("llama", dict(_COMMON, max_position_embeddings=256, tie_word_embeddings=False, pad_token_id=0,
                                  bos_token_id=1, eos_token_id=2, rope_parameters=dict(
                                      rope_type="llama3", rope_theta=10_000.0, factor=8.0,
                                      low_freq_factor=1.0, high_freq_factor=4.0,
                                      original_max_position_embeddings=64)),
                    "Llama 3.1: llama3 RoPE scaling (head_dim 8: one frequency kept, one "
                    "interpolated, two scaled)"),
    "llama32_tied": ("llama", dict(_COMMON, max_position_embeddings=256, tie_word_embeddings=True, pad_token_id=2,
                                   bos_token_id=1, eos_token_id=2, rope_parameters=dict(
                                       rope_type="llama3", rope_theta=10_000.0, factor=32.0,
                                       low_freq_factor=1.0, high_freq_factor=4.0,
                                       original_max_position_embeddings=64)),
                     "Llama 3.2: tied embeddings, llama3 RoPE, pad id = eos id"),
    "mistral": ("mistral", dict(_COMMON, sliding_window=4, tie_word_embeddings=False,
                                pad_token_id=0, bos_token_id=1, eos_token_id=2),
                "Mistral: a 4-token sliding window on every layer"),
    "qwen2": ("qwen2", dict(_COMMON, tie_word_embeddings=True, pad_token_id=0, bos_token_id=1,
                            eos_token_id=2, rope_theta=1_000.0),
              "Qwen2/2.5: q/k/v biases, tied embeddings"),
    "qwen3": ("qwen3", dict(_COMMON, head_dim=16, tie_word_embeddings=False, pad_token_id=0,
                            bos_token_id=1, eos_token_id=2, rope_theta=1_000.0),
              "Qwen3: q/k RMSNorm, head_dim 16 != hidden/heads"),
    "gemma": ("gemma", dict(_COMMON, head_dim=16, hidden_act="gelu_pytorch_tanh",
                            pad_token_id=0, bos_token_id=2, eos_token_id=1),
              "Gemma: (1 + w) norms, sqrt(d) embeddings, GeGLU, head_dim 16, tied"),
    "gemma2": ("gemma2", dict(_COMMON, head_dim=16, query_pre_attn_scalar=24, sliding_window=4,
                              attn_logit_softcapping=1.5, final_logit_softcapping=20.0,
                              pad_token_id=0, bos_token_id=2, eos_token_id=1),
               "Gemma 2: sandwich norms, soft-capping, query_pre_attn_scalar, local/global "
               "layers (window 4)"),
    "gemma3_text": ("gemma3_text", dict(_COMMON, hidden_size=16, intermediate_size=32,
                                        num_hidden_layers=6, head_dim=8, query_pre_attn_scalar=8,
                                        sliding_window=4, pad_token_id=0, bos_token_id=2,
                                        eos_token_id=1, rope_parameters=dict(
                                            full_attention=dict(rope_type="linear", factor=4.0,
                                                                rope_theta=1_000.0),
                                            sliding_attention=dict(rope_type="default",
                                                                   rope_theta=50.0))),
                    "Gemma 3: q/k norms, 5 local : 1 global layers (window 4) with their own "
                    "RoPE base, linear RoPE scaling on the global layer"),
}


def make_config(model_type: str, fields: dict):
  return transformers.AutoConfig.for_model(model_type, **fields)


@torch.no_grad()
def perturb(model: torch.nn.Module, gen: torch.Generator) -> None:
  """Draws every parameter afresh: matrices N(0, 1/fan_in), embeddings N(0, 1), biases
  N(0, 0.1^2), norm weights around their HF start (1 + N(0, 0.1^2), or N(0, 0.1^2) for Gemma's
  (1 + w) norms, whose weights start at 0)."""
  for name, p in model.named_parameters():
    noise = lambda std: torch.randn(p.shape, generator=gen) * std
    if "norm" in name:
      start = 0.0 if "gemma" in type(model).__name__.lower() else 1.0
      p.copy_(start + noise(0.1))
    elif name.endswith(".bias"):
      p.copy_(noise(0.1))
    elif "embed_tokens" in name:
      p.copy_(noise(1.0))
    else:
      p.copy_(noise(p.shape[-1] ** -0.5))


def token_batches(vocab: int, pad: int, seed: int) -> dict[str, np.ndarray]:
  """The same rows padded on the right and on the left: tokens, mask, positions."""
  real = [t for t in range(3, vocab) if t != pad]
  out = {}
  for side in ("right", "left"):
    tokens = np.full((len(LENGTHS), T), pad, np.int32)
    mask = np.zeros((len(LENGTHS), T), bool)
    for i, n in enumerate(LENGTHS):
      row = np.random.default_rng(seed + i).choice(real, size=n)
      cols = slice(0, n) if side == "right" else slice(T - n, T)
      tokens[i, cols], mask[i, cols] = row, True
    out[f"tokens_{side}"], out[f"mask_{side}"] = tokens, mask
    out[f"positions_{side}"] = np.maximum(np.cumsum(mask, axis=1) - 1, 0).astype(np.int32)
  return out


def bf16_bits(x: torch.Tensor) -> np.ndarray:
  return x.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


@torch.no_grad()
def run(model, batch: dict, side: str, classifier: bool) -> torch.Tensor:
  out = model(input_ids=torch.from_numpy(batch[f"tokens_{side}"]).long(),
              attention_mask=torch.from_numpy(batch[f"mask_{side}"]).long(),
              position_ids=torch.from_numpy(batch[f"positions_{side}"]).long())
  return out.logits[:, 0] if classifier else out.logits


def write_case(case: str, model_type: str, fields: dict, out_dir: str, seed: int) -> dict:
  torch.manual_seed(seed)
  gen = torch.Generator().manual_seed(seed)
  config = make_config(model_type, fields)
  lm = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
  perturb(lm, gen)
  cls_config = make_config(model_type, dict(fields, num_labels=1))
  cls = AutoModelForSequenceClassification.from_config(cls_config, attn_implementation="eager").eval()
  cls.model.load_state_dict(lm.model.state_dict())  # the reward model starts from the LM's backbone
  with torch.no_grad():
    w = cls.score.weight
    w.copy_(torch.randn(w.shape, generator=gen) * w.shape[-1] ** -0.5)
  case_dir = os.path.join(out_dir, case)
  lm.save_pretrained(os.path.join(case_dir, "causal_lm"))
  cls.save_pretrained(os.path.join(case_dir, "seq_cls"))

  batch = token_batches(config.vocab_size, config.pad_token_id, seed)
  expected = dict(batch)
  for side in ("right", "left"):
    expected[f"logits_f32_{side}"] = run(lm, batch, side, False).float().numpy()
    expected[f"scores_f32_{side}"] = run(cls, batch, side, True).float().numpy()
  lm16, cls16 = lm.to(torch.bfloat16), cls.to(torch.bfloat16)
  for side in ("right", "left"):
    expected[f"logits_bf16_{side}"] = bf16_bits(run(lm16, batch, side, False))
    expected[f"scores_bf16_{side}"] = bf16_bits(run(cls16, batch, side, True))
  np.savez(os.path.join(case_dir, "expected.npz"), **expected)
  return {"model_type": model_type, "seed": seed, "pad_token_id": config.pad_token_id,
          "causal_lm": type(lm).__name__, "seq_cls": type(cls).__name__}


CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
    "<|system|>{{ m['content'] | trim }}\n{% elif m['role'] == 'user' %}<|user|>{{ m['content'] }}\n"
    "{% else %}<|assistant|>{{ m['content'] }}{{ eos_token }}\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}")
TOKENIZER_TEXTS = ["the cat sat on the mat", "a reward model reads the last token",
                   "weight averaged reward models", "hello world, hello tokenizer!"]
MESSAGES = [{"role": "system", "content": "  be brief  "}, {"role": "user", "content": "hi there"},
            {"role": "assistant", "content": "hello"}, {"role": "user", "content": "the cat?"}]


def write_tokenizer(out_dir: str) -> dict:
  """A BPE tokenizer.json (byte-level) with <pad>, <s>, </s> and chat-role tokens, saved by
  transformers, and what transformers makes of fixed texts and messages."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
  from transformers import AutoTokenizer, PreTrainedTokenizerFast
  tok = Tokenizer(models.BPE(unk_token=None))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"],
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                show_progress=False)
  tok.train_from_iterator(TOKENIZER_TEXTS * 4, trainer)
  fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                 pad_token="<pad>",
                                 additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>"])
  fast.chat_template = CHAT_TEMPLATE
  path = os.path.join(out_dir, "tokenizer")
  fast.save_pretrained(path)
  loaded = AutoTokenizer.from_pretrained(path)
  expected = {
      "texts": TOKENIZER_TEXTS + ["unseen words: zebra 42"],
      "messages": MESSAGES,
      "bos_id": loaded.bos_token_id, "eos_id": loaded.eos_token_id, "pad_id": loaded.pad_token_id,
      "vocab_size": len(loaded),
  }
  expected["ids"] = [loaded.encode(t, add_special_tokens=False) for t in expected["texts"]]
  expected["decoded"] = [loaded.decode(i) for i in expected["ids"]]
  expected["chat"] = loaded.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
  expected["chat_no_prompt"] = loaded.apply_chat_template(MESSAGES[:3], tokenize=False,
                                                          add_generation_prompt=False)
  with open(os.path.join(path, "expected.json"), "w") as f:
    json.dump(expected, f, indent=1, sort_keys=True)
  return {"files": sorted(os.listdir(path))}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default=OUT)
  args = parser.parse_args()
  torch.use_deterministic_algorithms(True)
  if os.path.exists(args.out):
    shutil.rmtree(args.out)
  os.makedirs(args.out)
  manifest = {"transformers": transformers.__version__, "torch": torch.__version__,
              "numpy": np.__version__, "T": T, "lengths": list(LENGTHS), "cases": {}}
  for seed, (case, (model_type, fields, what)) in enumerate(sorted(CASES.items())):
    manifest["cases"][case] = dict(write_case(case, model_type, fields, args.out, 1000 + seed),
                                   exercises=what)
  manifest["tokenizer"] = write_tokenizer(args.out)
  with open(os.path.join(args.out, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1, sort_keys=True)
  total = sum(os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(args.out) for n in ns)
  print(f"wrote {len(CASES)} cases and a tokenizer to {args.out}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
  main()
