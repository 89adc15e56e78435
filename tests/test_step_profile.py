"""benchmarks/step_profile.py on a tiny reward model: the breakdown by category sums the traced
operations, and --top lists the costliest ones, each joined to its category and jax op_name."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_profile_breaks_down_the_step_and_lists_its_costliest_operations():
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device, as run by hand
  out = subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", "step_profile.py"), "--what=rm",
       "--dtype=float32", "--layers=1", "--width=32", "--heads=2", "--d_ff=64", "--vocab=64",
       "--seq=16", "--batch=2", "--calls=1", "--top=4"],
      capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
  assert out.returncode == 0, out.stderr[-3000:]
  text = out.stdout
  assert "CPU: " in text and "reward-model train step, float32, 2 pairs x 16 tokens" in text
  breakdown = dict(re.findall(r"^\| ([a-z /-]+) \| [\d.]+ \| [\d.]+ \| (\d+)% \|$", text, re.M))
  shares = [int(s) for s in breakdown.values()]
  assert "matmuls" in breakdown and 97 <= sum(shares) <= 103, text  # rounded shares of one whole
  top = text.split("Costliest operations")[1]
  rows = re.findall(r"^\| ([\w.\-]+) \| ([\d.]+) \| ([a-z /-]+)(?: \(bwd\))? \| (.*) \|$", top,
                    re.M)
  assert len(rows) == 4, top
  ms = [float(r[1]) for r in rows]
  assert ms == sorted(ms, reverse=True)
  # every listed operation is in the module's HLO, in one of the breakdown's categories
  assert all(r[2] in breakdown for r in rows), rows
