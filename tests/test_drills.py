"""The reliability drill itself (benchmarks/drills.py), with a few kills per target: every
checkpoint, average and data set that reads as complete is complete, restarts resume, and the
final results equal the uninterrupted runs. The full drill (20 kills each) is `python benchmarks/drills.py` (docs/reliability.md)."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_drill_kills_lose_nothing(tmp_path):
  out = subprocess.run(
      [sys.executable, os.path.join(REPO, "benchmarks", "drills.py"), "--kills=2",
       "--train_steps=10", "--average_mb=16", f"--workdir={tmp_path}", "--seed=1"],
      capture_output=True, text=True, timeout=900, cwd=REPO)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  with open(tmp_path / "drills.json") as f:
    results = {r["target"]: r for r in json.load(f)}
  assert set(results) == {"train", "average", "data"}
  for r in results.values():
    assert r["kills"] == 2 and r["problems"] == [], r
