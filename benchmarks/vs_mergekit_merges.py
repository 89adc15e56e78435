r"""warm_jax's merge operators against mergekit's on the same small safetensors files.

    source benchmarks/env.sh                   # .venv-bench: warm_jax and mergekit
    python benchmarks/vs_mergekit_merges.py    # prints a Markdown table; exit 1 on a mismatch

Writes a base and three fine-tuned "models" (a few float32 tensors: the base random normal, each
model the base plus a task vector of scale 0.1 shared by the three plus one of its own: pairwise
cosines about 0.5) as safetensors files, merges them with
mergekit's raw-tensor merge (`mergekit.scripts.merge_raw_pytorch`: what `mergekit-pytorch
config.yml out/` runs, here in-process) and with `warm_jax.averaging.merges` (in memory, on the
same files read with safetensors), and reports the largest absolute and relative difference per
method (relative to the largest entry of mergekit's merged task vector, merged - base; of the
merged model for the SLERP of two models). Each row says which mergekit settings compute
warm_jax's definition:

- task_arithmetic, ties, model_stock, slerp (two models), nuslerp (two task vectors with a
  base): mergekit's defaults with the same weights, density, lambda (= warm_jax's scale), t.
- dare_linear / dare_ties: the masks are random on both sides (torch.bernoulli vs warm_jax's
  hash of the entry's index), so
  mergekit's `sparsify` is given warm_jax's masks (identified by the task vector it is called
  on); mergekit's `rescale: true` matches the masked tensor's L1 norm to the unmasked one's
  instead of DARE's 1 / (1 - p), so the rows use `rescale: false` with the 1 / (1 - p) in the
  weights (dare_linear) or in lambda (dare_ties, whose weights cancel in the disjoint mean);
  dare_ties needs `normalize: true` (its default, false, is the sign-elected sum, not TIES's
  disjoint mean).
- multislerp (mergekit's M-model spherical mean: a tangent-space step at the normalised weighted
  mean, rescaled to the mean norm) against warm_jax's iterated pairwise SLERP of M task vectors:
  different definitions; the row reports how far apart they are (not checked).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile

import numpy as np

SHAPES = {"layers.0.mlp.weight": (96, 64), "layers.0.mlp.bias": (64,), "embed.weight": (200, 32),
          "norm.weight": (32,)}
TOL = 2e-5  # float32 on both sides; different summation orders


def make_files(directory: str, seed: int = 0) -> dict[str, str]:
  from safetensors.numpy import save_file
  rng = np.random.default_rng(seed)
  base = {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}
  paths = {"base": os.path.join(directory, "base.safetensors")}
  save_file(base, paths["base"])
  shared = {k: np.float32(0.1) * rng.standard_normal(v.shape).astype(np.float32)
            for k, v in base.items()}
  for i in range(3):
    model = {k: v + shared[k] + np.float32(0.1) * rng.standard_normal(v.shape).astype(np.float32)
             for k, v in base.items()}
    paths[f"m{i}"] = os.path.join(directory, f"m{i}.safetensors")
    save_file(model, paths[f"m{i}"])
  return paths


def load(path: str) -> dict[str, np.ndarray]:
  from safetensors.numpy import load_file
  return load_file(path)


def run_mergekit(cfg: dict, out_dir: str) -> dict[str, np.ndarray]:
  from mergekit.graph import Executor
  from mergekit.options import MergeOptions
  from mergekit.scripts.merge_raw_pytorch import RawPyTorchMergeConfig, plan_flat_merge
  config = RawPyTorchMergeConfig.model_validate(cfg)
  tasks = plan_flat_merge(config, out_dir, False, False, MergeOptions(quiet=True))
  Executor(tasks, math_device="cpu", storage_device="cpu").execute()
  out: dict = {}
  for f in glob.glob(os.path.join(out_dir, "*.safetensors")):
    out.update(load(f))
  return out


class InjectedMasks:
  """Replaces mergekit's DARE sparsification with warm_jax's masks: each call's task vector is
  matched (bitwise) to the (model, tensor) it came from."""

  def __init__(self, base, models, drop, seed):
    from warm_jax.averaging import merges
    self.masks = {}
    for i, m in enumerate(models):
      for k in SHAPES:
        delta = m[k] - base[k]
        keep = merges.dare_mask(merges.dare_key(seed, i, k), delta.shape, drop)
        self.masks[delta.tobytes()] = np.asarray(keep, np.float32)
    self.calls = 0

  def __call__(self, tensor, density, method, rescale_norm=None, **_):
    import torch
    assert rescale_norm is None and str(getattr(method, "value", method)) == "random"
    self.calls += 1
    return tensor * torch.from_numpy(self.masks[tensor.numpy().tobytes()])


def compare(ours: dict, theirs: dict, origin: dict | None) -> tuple[float, float]:
  """(max |a - b|, max |a - b| / max |b - origin|) over every tensor: the difference relative
  to mergekit's merged task vector (origin: the base; None: relative to the merged model)."""
  abs_d = max(float(np.max(np.abs(ours[k] - theirs[k]))) for k in SHAPES)
  rel_d = max(float(np.max(np.abs(ours[k] - theirs[k])) /
                    np.max(np.abs(theirs[k] - (0 if origin is None else origin[k]))))
              for k in SHAPES)
  return abs_d, rel_d


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--dir", default=None, help="scratch directory (default: a temporary one)")
  args = ap.parse_args(argv)
  import jax

  import mergekit.merge_methods.generalized_task_arithmetic as gta
  from warm_jax.averaging import merges

  directory = args.dir or tempfile.mkdtemp(prefix="vs_mergekit_")
  os.makedirs(directory, exist_ok=True)
  paths = make_files(directory)
  base = load(paths["base"])
  models = [load(paths[f"m{i}"]) for i in range(3)]
  mk = [paths[f"m{i}"] for i in range(3)]
  host = lambda tree: {k: np.asarray(v) for k, v in jax.device_get(tree).items()}  # noqa: E731
  p, seed = 0.7, 5
  rows = []

  def model_list(ps, weights=None, key="weight"):
    return [{"model": x, **({"parameters": {key: w}} if weights is not None else {})}
            for x, w in zip(ps, weights if weights is not None else [None] * len(ps))]

  cases = [
      ("task_arithmetic", "weights 1, 0.5, -0.3; lambda 0.7",
       dict(merge_method="task_arithmetic", base_model=paths["base"], parameters={"lambda": 0.7},
            models=model_list(mk, [1.0, 0.5, -0.3])),
       lambda: merges.task_arithmetic(base, models, [1.0, 0.5, -0.3], scale=0.7), True),
      ("ties", "density 0.3; weights 1, 1, 2; lambda 1.5 (normalize: true, its default)",
       dict(merge_method="ties", base_model=paths["base"], parameters={"lambda": 1.5},
            models=[{"model": x, "parameters": {"weight": w, "density": 0.3}}
                    for x, w in zip(mk, [1.0, 1.0, 2.0])]),
       lambda: merges.ties(base, models, 0.3, [1.0, 1.0, 2.0], scale=1.5), True),
      ("dare_linear", f"drop {p}; masks injected; rescale: false, weights w / (1 - p)",
       dict(merge_method="dare_linear", base_model=paths["base"],
            parameters={"rescale": False},
            models=[{"model": x, "parameters": {"weight": w / (1 - p), "density": 1 - p}}
                    for x, w in zip(mk, [1.0, 0.5, 0.25])]),
       lambda: merges.dare(base, models, p, seed, [1.0, 0.5, 0.25]), "dare"),
      ("dare_ties", f"drop {p}; masks injected; rescale: false, normalize: true, "
       "lambda 1 / (1 - p)",
       dict(merge_method="dare_ties", base_model=paths["base"],
            parameters={"rescale": False, "normalize": True, "lambda": 1 / (1 - p)},
            models=[{"model": x, "parameters": {"weight": 1.0, "density": 1 - p}} for x in mk]),
       lambda: merges.dare(base, models, p, seed, combine="ties"), "dare"),
      ("model_stock", "base + 3 models (filter_wise: false, its default)",
       dict(merge_method="model_stock", base_model=paths["base"], models=model_list(mk)),
       lambda: merges.model_stock(base, models), True),
      ("slerp", "two models, t 0.3 (mergekit's base = the first)",
       dict(merge_method="slerp", base_model=mk[0], parameters={"t": 0.3},
            models=model_list(mk[:2])),
       lambda: merges.slerp(models[0], models[1], 0.3), True),
      ("nuslerp", "two task vectors with a base, weights 1, 3 (t = 0.75)",
       dict(merge_method="nuslerp", base_model=paths["base"], models=model_list(mk[:2], [1.0, 3.0])),
       lambda: merges.slerp(models[0], models[1], 0.75, base=base), True),
      ("multislerp", "3 task vectors with a base, uniform weights, vs warm_jax's iterated "
       "pairwise SLERP (another definition: reported, not checked)",
       dict(merge_method="multislerp", base_model=paths["base"], models=model_list(mk, [1.0] * 3)),
       lambda: merges.slerp_task_vectors(base, models), False),
  ]
  ok = True
  for name, settings, cfg, ours_fn, check in cases:
    injected = None
    if check == "dare":
      injected = InjectedMasks(base, models, p, seed)
      original, gta.sparsify = gta.sparsify, injected
    try:
      theirs = run_mergekit({**cfg, "dtype": "float32"}, os.path.join(directory, f"out_{name}"))
    finally:
      if injected is not None:
        gta.sparsify = original
    if injected is not None and injected.calls != 3 * len(SHAPES):
      raise SystemExit(f"{name}: mergekit sparsified {injected.calls} tensors, expected "
                       f"{3 * len(SHAPES)}")
    abs_d, rel_d = compare(host(ours_fn()), theirs, None if name == "slerp" else base)
    same = rel_d < TOL
    if check and not same:
      ok = False
    rows.append((name, settings, abs_d, rel_d,
                 ("yes" if same else "**no**") if check else "not checked"))
  import mergekit  # noqa: F401
  from importlib.metadata import version
  print(f"mergekit {version('mergekit')}, torch {version('torch')}, jax {jax.__version__}; "
        f"tensors {', '.join(f'{k} {list(s)}' for k, s in SHAPES.items())}; files in {directory}\n")
  print("| mergekit method | settings | max abs diff | max rel diff | same (rel < 2e-5) |")
  print("|---|---|---:|---:|---|")
  for name, settings, abs_d, rel_d, same in rows:
    print(f"| {name} | {settings} | {abs_d:.2e} | {rel_d:.2e} | {same} |")
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
