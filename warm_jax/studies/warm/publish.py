r"""Puts a finished main-job run's report into docs/warm.md: the tables as generated, plots copied.

    python -m warm_jax.studies.warm.publish runs/warm [--page docs/warm.md] [--figures warm]

Copies `<run>/plots/*.png` to `--figures` (relative to the page's directory) and replaces the
page's text between the markers `<!-- warm-results:begin -->` and `<!-- warm-results:end -->`
with `<run>/results.md` (headings moved one level down, image links pointed at the copies).
Nothing in the report is typed by hand.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys

BEGIN, END = "<!-- warm-results:begin -->", "<!-- warm-results:end -->"


def splice(page: str, report: str, figures: str, begin: str = BEGIN, end: str = END) -> str:
  """The page's text with the report between the markers `begin` and `end` (which must each
  appear once)."""
  if page.count(begin) != 1 or page.count(end) != 1 or page.index(begin) > page.index(end):
    raise ValueError(f"the page must hold {begin} then {end}, once each")
  body = re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + 1) + " ", report, flags=re.M)
  body = re.sub(r"\]\(plots/", f"]({figures.rstrip('/')}/", body)
  head, rest = page.split(begin)
  _, tail = rest.split(end)
  return f"{head}{begin}\n{body.strip()}\n{end}{tail}"


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(prog="python -m warm_jax.studies.warm.publish",
                               description=__doc__.split("\n\n")[0])
  ap.add_argument("run", help="a finished experiments/warm.py workdir")
  ap.add_argument("--page", default="docs/warm.md")
  ap.add_argument("--figures", default="warm", help="where the plots are copied (relative "
                  "to the page's directory)")
  args = ap.parse_args(argv)
  report_path = os.path.join(args.run, "results.md")
  if not os.path.exists(report_path):
    ap.error(f"{report_path} does not exist: run experiments/warm.py to the end first")
  with open(report_path) as f:
    report = f.read()
  with open(args.page) as f:
    page = f.read()
  try:
    text = splice(page, report, args.figures)
  except ValueError as e:
    ap.error(str(e))
  dest = os.path.join(os.path.dirname(os.path.abspath(args.page)), args.figures)
  os.makedirs(dest, exist_ok=True)
  plots = os.path.join(args.run, "plots")
  for name in sorted(os.listdir(plots)):
    if name.endswith(".png"):
      shutil.copyfile(os.path.join(plots, name), os.path.join(dest, name))
  with open(args.page, "w") as f:
    f.write(text)
  print(f"{args.page} updated from {report_path}; plots copied to {dest}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
