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
  """A run's training curves (its logged rows' proxy and gold reward, KL and length, each a moving
  average over `smooth` logged steps; 'step' is the smoothed step, 'logged_step' the logged steps
  themselves) and its evaluation rows ('eval')."""
  from warm_jax.train.metrics import read_metrics
  rows = [r for r in read_metrics(workdir, "train") if "kl" in r]
  if not rows:
    raise ValueError(f"{workdir}/metrics.jsonl has no RL training rows (was it an RL run?)")
  get = lambda k: _smooth(np.asarray([r[k] for r in rows], np.float64), smooth)  # noqa: E731
  out = {"step": get("step"), "kl": get("kl"), "proxy": get("reward/proxy"),
         "gold": get("reward/gold"), "length": get("response_length"),
         "logged_step": [int(r["step"]) for r in rows], "smooth": smooth if len(rows) >= smooth else 1}
  evals = [r for r in read_metrics(workdir) if r["split"] not in ("train",) and "kl" in r]
  out["eval"] = evals
  return out


_END_KEYS = (("gold", "reward/gold"), ("proxy", "reward/proxy"), ("kl", "kl"),
             ("length", "response_length"))


def key_points(c: dict) -> dict:
  """Where a run starts, peaks and ends in gold.

  Start and end: the evaluation of the policy at its first and last evaluated step (step 0 with
  config.train.eval_at_start: the initial policy) on the first evaluation split, one response per
  prompt, the same prompts at both ends; a run without evaluation rows falls back to its first and
  last logged training rows. Peak: the highest point of the training rollouts' gold smoothed over
  `c['smooth']` logged steps (the highest raw point of a noisy curve is biased upwards), reported
  at the logged step at the centre of its window, with the smoothed KL there."""
  g = np.asarray(c["gold"])
  i = int(np.argmax(g))
  out = {"gold_peak": float(g[i]), "peak_step": int(c["logged_step"][i + c["smooth"] // 2]),
         "peak_kl": float(c["kl"][i]), "peak_window": int(c["smooth"])}
  split = c["eval"][0]["split"] if c["eval"] else None
  evals = sorted((r for r in c["eval"] if r["split"] == split), key=lambda r: r["step"])
  for end, idx, row in (("start", 0, evals[0] if evals else None),
                        ("end", -1, evals[-1] if evals else None)):
    out[f"{end}_step"] = int(row["step"]) if row else int(c["logged_step"][idx])
    for key, metric in _END_KEYS:
      out[f"{key}_{end}"] = float(row[metric]) if row else float(np.asarray(c[key])[idx])
  return out


def peak_note(window: int) -> str:
  """What the tables' start, peak and end columns are (see `key_points`)."""
  return (f"Start and end: the evaluation of the initial and the final policy (one response to "
          f"each validation prompt). Peak: the training rollouts' gold averaged over {window} "
          f"logged steps, at the logged step at the centre of that window (the highest raw point "
          f"of a noisy curve is biased upwards; the smoothed one much less).")


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
