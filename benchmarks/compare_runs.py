"""Whether two run directories of one job hold the same results, wall times aside.

    python benchmarks/compare_runs.py runs/before/rlp runs/after/rlp

Used to show that a change of code leaves behaviour unchanged: run the same experiment with the
same seeds at two commits, then compare. Walks the first directory; for every `.json` and
`.jsonl` file (reports, metrics logs, configs) compares the parsed values with those of the same
file in the second, leaving out every key that holds a wall time (its name contains 'seconds')
and writing each directory's own path as '<run>'; for every `.md` report prints the lines that
differ (a report's wall-time sentences differ between any two runs). Exit status 1 if any value
differs or a file is missing from the second directory.
"""

from __future__ import annotations

import json
import os
import sys


def _strip(x, root: str):
  if isinstance(x, dict):
    return {k: _strip(v, root) for k, v in x.items() if "seconds" not in k}
  if isinstance(x, list):
    return [_strip(v, root) for v in x]
  return x.replace(root, "<run>") if isinstance(x, str) else x


def _load(path: str, root: str) -> list:
  with open(path) as f:
    if path.endswith(".jsonl"):
      return [_strip(json.loads(line), root) for line in f if line.strip()]
    return [_strip(json.load(f), root)]


def compare(a: str, b: str) -> int:
  """Prints what differs between run directories a and b; returns the number of files whose
  values differ or that b lacks."""
  a, b = os.path.abspath(a), os.path.abspath(b)
  files = values = bad = 0
  for dirpath, _, names in sorted(os.walk(a)):
    for name in sorted(names):
      if not name.endswith((".json", ".jsonl", ".md")) or name == "stages.json":
        continue  # stages.json: fingerprints and wall times of the stages
      pa = os.path.join(dirpath, name)
      rel = os.path.relpath(pa, a)
      pb = os.path.join(b, rel)
      if not os.path.exists(pb):
        print(f"only in {a}: {rel}")
        bad += 1
        continue
      files += 1
      if name.endswith(".md"):
        la = open(pa).read().replace(a, "<run>").splitlines()
        lb = open(pb).read().replace(b, "<run>").splitlines()
        diff = [(x, y) for x, y in zip(la, lb) if x != y]
        if diff or len(la) != len(lb):
          print(f"{rel}: {len(diff)} line(s) differ" + (", lengths differ" if len(la) != len(lb)
                                                        else ""))
          for x, y in diff:
            print(f"  - {x}\n  + {y}")
        continue
      va, vb = _load(pa, a), _load(pb, b)
      values += len(va)
      if va != vb:
        print(f"{rel}: values differ")
        bad += 1
  print(f"{files} files compared ({values} JSON records); {bad} differ or are missing "
        "(wall times left out; Markdown differences listed above)")
  return bad


if __name__ == "__main__":
  if len(sys.argv) != 3:
    raise SystemExit(__doc__)
  sys.exit(1 if compare(sys.argv[1], sys.argv[2]) else 0)
