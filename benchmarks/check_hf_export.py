r"""Live check of warm_jax's Hugging Face exports with transformers itself (bench venv: it holds
jax, torch and transformers; warm_jax's own venv never holds torch):

    /work/main/.venv-bench/bin/python benchmarks/check_hf_export.py [--out /tmp/hf_export_check]

For every fixture of tests/fixtures/hf (written by make_hf_fixtures.py) it imports the causal LM
and the sequence classifier with warm_jax, exports them with `warm_jax.pretrained.export_hf`, loads
the exports with transformers' AutoModelForCausalLM / AutoModelForSequenceClassification (eager
attention, `output_loading_info`: no missing, unexpected or mismatched tensor is allowed) and
compares, on the fixture's right- and left-padded batches, transformers' logits and scores of the
export with warm_jax's own (max abs over real tokens). It does the same for models that exist only
in warm_jax: a policy trained here (tied head scaled by 1/sqrt(d), exported as an untied Llama), a
reward model with a head bias (exported with drop_reward_bias: transformers' score = warm_jax's -
bias), a WARM average of two reward models, and a bfloat16 export (KL of next-token
distributions), and exports with `legacy_keys` read through transformers 4.x's RoPE keys only.
Exits 1 if any float32 difference exceeds --tol (default 1e-4).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

import flax.linen as nn
import jax
import jax.numpy as jnp

from warm_jax import averaging, configs
from warm_jax.models import LanguageModel, RewardModel
from warm_jax.pretrained import export_hf, load_hf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "tests", "fixtures", "hf")


def hf_load(path: str, kind: str, dtype=torch.float32):
  cls = AutoModelForSequenceClassification if kind == "rm" else AutoModelForCausalLM
  model, info = cls.from_pretrained(path, attn_implementation="eager", dtype=dtype,
                                    output_loading_info=True)
  bad = {k: v for k, v in info.items() if v and k != "error_msgs"} | (
      {"error_msgs": info["error_msgs"]} if info.get("error_msgs") else {})
  if bad:
    raise SystemExit(f"transformers loaded {path} with problems: {bad}")
  return model.eval()


@torch.no_grad()
def hf_run(model, tokens, mask, kind):
  positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
  out = model(input_ids=torch.from_numpy(np.array(tokens)).long(),
              attention_mask=torch.from_numpy(np.array(mask)).long(),
              position_ids=torch.from_numpy(positions).long())
  x = out.logits[:, 0] if kind == "rm" else out.logits
  return x.float().numpy()


def warm_run(model, params, tokens, mask):
  return np.asarray(model.apply({"params": params}, jnp.asarray(tokens), jnp.asarray(mask)))


def compare(name, kind, model, params, export_dir, batches, tol, shift=0.0):
  """max |transformers(export) - warm_jax - shift| over real tokens, per padding side."""
  hf = hf_load(export_dir, kind)
  errs = []
  for tokens, mask in batches:
    ours = warm_run(model, params, tokens, mask) + shift
    theirs = hf_run(hf, tokens, mask, kind)
    diff = np.abs(theirs - ours)
    errs.append(float((diff if kind == "rm" else diff[np.asarray(mask)]).max()))
  ok = max(errs) <= tol
  print(f"{name:34s} {kind}  max|transformers - warm_jax| right {errs[0]:.2e} left {errs[1]:.2e}"
        f"  {'ok' if ok else 'FAIL'}")
  return ok


def fixture_batches(case):
  e = np.load(os.path.join(FIXTURES, case, "expected.npz"))
  # Row lengths differ, and real tokens never equal the pad id, so transformers' classifier
  # reads the last real token as warm_jax does with the mask.
  return [(e[f"tokens_{s}"], e[f"mask_{s}"]) for s in ("right", "left")]


def native(kind: str):
  cfg = configs.model_config("tiny", vocab_size=64, max_len=32)
  cfg.update(n_heads=4, n_kv_heads=2)
  model = (RewardModel if kind == "rm" else LanguageModel)(cfg)
  tokens = jnp.ones((1, 8), jnp.int32)
  shapes = nn.unbox(jax.eval_shape(lambda: model.init(jax.random.key(0), tokens)["params"]))
  rng = np.random.default_rng(3)
  params = jax.tree_util.tree_map_with_path(
      lambda path, x: jnp.asarray((path[-1].key == "scale") + rng.standard_normal(x.shape)
                                  * (0.3 if len(x.shape) > 1 else 0.1), jnp.float32), shapes)
  rng = np.random.default_rng(4)
  toks = rng.integers(3, 64, (3, 12)).astype(np.int32)
  right = np.arange(12)[None, :] < np.array([[12], [8], [5]])
  left = np.ascontiguousarray(right[:, ::-1])
  batches = [(np.where(right, toks, 0), right), (np.where(left, toks, 0), left)]
  return model, cfg, params, batches


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default="/tmp/hf_export_check")
  parser.add_argument("--tol", type=float, default=1e-4)
  args = parser.parse_args()
  shutil.rmtree(args.out, ignore_errors=True)
  print(f"transformers {transformers.__version__}, torch {torch.__version__}, jax {jax.__version__}")
  ok = True
  cases = sorted(d for d in os.listdir(FIXTURES)
                 if os.path.exists(os.path.join(FIXTURES, d, "expected.npz")))
  for case in cases:
    for sub in ("causal_lm", "seq_cls"):
      pre = load_hf(os.path.join(FIXTURES, case, sub))
      out = export_hf(pre.params, pre.model_cfg, os.path.join(args.out, case, sub),
                      hf_config=pre.hf_config)
      ok &= compare(f"{case} ({pre.family})", pre.kind, pre.model(), pre.params, out,
                    fixture_batches(case), args.tol)

  lm_model, lm_cfg, lm_params, batches = native("lm")
  out = export_hf(lm_params, lm_cfg, os.path.join(args.out, "native_policy"))
  ok &= compare("native policy (tied, 1/sqrt(d))", "lm", lm_model, lm_params, out, batches, args.tol)

  rm_model, rm_cfg, rm_params, batches = native("rm")
  bias = float(rm_params["reward_head"]["bias"][0])
  out = export_hf(rm_params, rm_cfg, os.path.join(args.out, "native_rm"), drop_reward_bias=True)
  ok &= compare(f"native RM (bias {bias:+.3f} dropped)", "rm", rm_model, rm_params, out, batches,
                args.tol, shift=-bias)

  a = load_hf(os.path.join(FIXTURES, "gemma2", "seq_cls"))
  b = jax.tree.map(lambda x: x * 1.1 - 0.02, a.params)
  warm = averaging.average([a.params, b], [0.5, 0.5])
  out = export_hf(warm, a.model_cfg, os.path.join(args.out, "warm_gemma2"), hf_config=a.hf_config)
  ok &= compare("WARM average of 2 gemma2 RMs", "rm", a.model(), warm, out,
                fixture_batches("gemma2"), args.tol)

  # legacy_keys: with only transformers 4.x's RoPE keys left (what a 4.x reader understands), the
  # export still computes the same function.
  for case in ("llama3_rope", "gemma2", "gemma3_text"):
    pre = load_hf(os.path.join(FIXTURES, case, "causal_lm"))
    out = export_hf(pre.params, pre.model_cfg, os.path.join(args.out, case + "_legacy"),
                    hf_config=pre.hf_config, legacy_keys=True)
    path = os.path.join(out, "config.json")
    with open(path) as f:
      hf = json.load(f)
    for key in ("rope_parameters", "layer_types", "_sliding_window_pattern"):
      hf.pop(key, None)
    with open(path, "w") as f:
      json.dump(hf, f)
    ok &= compare(f"{case} legacy keys only", "lm", pre.model(), pre.params, out,
                  fixture_batches(case), args.tol)

  pre = load_hf(os.path.join(FIXTURES, "llama3_rope", "causal_lm"), dtype="bfloat16")
  out = export_hf(pre.params, pre.model_cfg, os.path.join(args.out, "llama3_bf16"),
                  dtype="bfloat16", hf_config=pre.hf_config)
  hf = hf_load(out, "lm", torch.bfloat16)
  for tokens, mask in fixture_batches("llama3_rope")[:1]:
    ours = jax.nn.log_softmax(warm_run(pre.model(), pre.params, tokens, mask))
    theirs = jax.nn.log_softmax(hf_run(hf, tokens, mask, "lm"))
    kl = np.asarray(jnp.sum(jnp.exp(theirs) * (theirs - ours), -1))[mask]
    print(f"{'llama3_rope bfloat16 export':34s} lm  KL(transformers || warm_jax) max {kl.max():.2e} "
          f"mean {kl.mean():.2e}")
  print("all float32 checks within", args.tol if ok else "FAILED")
  sys.exit(0 if ok else 1)


if __name__ == "__main__":
  main()
