r"""Reward vs KL (and vs step) of RL runs, from their metrics.jsonl; a library and a command.

    python -m warm_jax.studies.rl_curves runs/rl_gold runs/rl_proxy [--out runs/rl.png]

For each run: the proxy reward (what the policy optimised) and the gold reward against the KL to the
reference policy, on the training rollouts (smoothed over `--smooth` logged steps) and at the
evaluation points. Prints per run the gold reward at its peak and at the end, so reward hacking
(gold peaking then falling while the proxy rises) reads off the table as well as the plot.
"""

from __future__ import annotations

import argparse
import os

import numpy as np


def _smooth(x: np.ndarray, k: int) -> np.ndarray:
  if k <= 1 or len(x) < k:
    return x
  return np.convolve(x, np.ones(k) / k, mode="valid")


def curves(workdir: str, smooth: int = 3) -> dict:
  from warm_jax.train.metrics import read_metrics
  rows = [r for r in read_metrics(workdir, "train") if "kl" in r]
  if not rows:
    raise ValueError(f"{workdir}/metrics.jsonl has no RL training rows (was it an RL run?)")
  get = lambda k: _smooth(np.asarray([r[k] for r in rows], np.float64), smooth)
  out = {"step": get("step"), "kl": get("kl"), "proxy": get("reward/proxy"),
         "gold": get("reward/gold"), "length": get("response_length")}
  evals = [r for r in read_metrics(workdir) if r["split"] not in ("train",) and "kl" in r]
  out["eval"] = evals
  return out


def key_points(c: dict) -> dict:
  """Gold at the start, at its peak (with step and KL) and at the end of a run's training curve,
  and the proxy reward, KL and length at the ends."""
  g = np.asarray(c["gold"])
  i = int(np.argmax(g))
  return {"gold_start": float(g[0]), "gold_peak": float(g[i]), "peak_step": int(c["step"][i]),
          "peak_kl": float(c["kl"][i]), "gold_end": float(g[-1]), "kl_end": float(c["kl"][-1]),
          "proxy_start": float(c["proxy"][0]), "proxy_end": float(c["proxy"][-1]),
          "length_start": float(c["length"][0]), "length_end": float(c["length"][-1])}


def summary(name: str, c: dict) -> str:
  k = key_points(c)
  return (f"{name:<28} gold start {k['gold_start']:.3f} peak {k['gold_peak']:.3f} (step "
          f"{k['peak_step']}, KL {k['peak_kl']:.2f}) end {k['gold_end']:.3f} | proxy start "
          f"{k['proxy_start']:+.3f} end {k['proxy_end']:+.3f} | KL end {k['kl_end']:.2f} | "
          f"length {k['length_start']:.1f} -> {k['length_end']:.1f}")


def plot(runs: dict, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from warm_jax.train import metrics
  fig, axes = plt.subplots(1, 3, figsize=(15, 4))
  # Gold (solid, left axis) and proxy (dashed, right axis: reward models have their own scale).
  proxy_axes = [axes[0].twinx(), axes[1].twinx()]
  for name, c in runs.items():
    line, = axes[0].plot(c["kl"], c["gold"], "-", label=f"{name}: gold")
    proxy_axes[0].plot(c["kl"], c["proxy"], "--", color=line.get_color(), alpha=0.5)
    axes[1].plot(c["step"], c["gold"], "-", color=line.get_color(), label=f"{name}: gold")
    proxy_axes[1].plot(c["step"], c["proxy"], "--", color=line.get_color(), alpha=0.5)
    axes[2].plot(c["step"], c["length"], "-", color=line.get_color(), label=name)
  axes[0].set(xlabel="KL(policy || SFT) [nats]", ylabel="gold reward (solid)",
              title="reward vs KL (train rollouts)")
  axes[1].set(xlabel="step", ylabel="gold reward (solid)", title="reward vs step")
  for ax in proxy_axes:
    ax.set_ylabel("proxy reward, optimised (dashed)")
  axes[2].set(xlabel="step", ylabel="tokens", title="response length")
  axes[0].legend(fontsize=7)
  axes[2].legend(fontsize=7)
  fig.tight_layout()
  metrics.save_figure(fig, path, dpi=110)


def main(argv=None) -> dict:
  ap = argparse.ArgumentParser(prog="python -m warm_jax.studies.rl_curves",
                               description=__doc__.split("\n\n")[0])
  ap.add_argument("runs", nargs="+", help="RL run directories")
  ap.add_argument("--out", default=None, help="PNG path (default: <first run>/../rl_reward_vs_kl.png)")
  ap.add_argument("--smooth", type=int, default=3, help="moving average over logged steps")
  args = ap.parse_args(argv)
  for r in args.runs:
    if not os.path.exists(os.path.join(r, "metrics.jsonl")):
      ap.error(f"{r} has no metrics.jsonl")
  runs = {os.path.basename(os.path.normpath(r)): curves(r, args.smooth) for r in args.runs}
  out = args.out or os.path.join(os.path.dirname(os.path.normpath(args.runs[0])), "rl_reward_vs_kl.png")
  plot(runs, out)
  for name, c in runs.items():
    print(summary(name, c))
    for e in c["eval"]:
      print(f"  eval {e['split']} step {e['step']}: proxy {e['reward/proxy']:+.3f} gold "
            f"{e['reward/gold']:.3f} KL {e['kl']:.2f} length {e['response_length']:.1f}")
  print(f"wrote {out}")
  return runs


if __name__ == "__main__":
  main()
