r"""Puts a finished job's report into its docs page: the tables as generated, plots copied.

    python -m warm_jax.studies.warm.publish runs/warm [--page docs/warm.md] [--figures warm]
    python -m warm_jax.studies.warm.publish runs/warp --page docs/warp.md --figures warp \
        --marker warp-results

Copies `<run>/plots/*.png` to `--figures` (relative to the page's directory) and replaces the
page's text between the markers `<!-- <marker>:begin -->` and `<!-- <marker>:end -->` (marker
`warm-results` by default) with `<run>/results.md` (headings moved one level down, image links
pointed at the copies). Nothing in the report is typed by hand.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys

BEGIN, END = "<!-- warm-results:begin -->", "<!-- warm-results:end -->"


def splice(page: str, report: str, figures: str, marker: str = "warm-results") -> str:
  """The page's text with the report between the markers (which must each appear once)."""
  begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
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
  ap.add_argument("--marker", default="warm-results",
                  help="the page's markers: <!-- MARKER:begin --> and <!-- MARKER:end -->")
  args = ap.parse_args(argv)
  report_path = os.path.join(args.run, "results.md")
  if not os.path.exists(report_path):
    ap.error(f"{report_path} does not exist: run the job (experiments/warm.py, warp.py) to the "
             "end first")
  with open(report_path) as f:
    report = f.read()
  with open(args.page) as f:
    page = f.read()
  try:
    text = splice(page, report, args.figures, args.marker)
  except ValueError as e:
    ap.error(str(e))
  dest = os.path.join(os.path.dirname(os.path.abspath(args.page)), args.figures)
  plots = os.path.join(args.run, "plots")
  names = sorted(n for n in os.listdir(plots) if n.endswith(".png")) if os.path.isdir(plots) else []
  if names:  # a report without plots (a table only) copies nothing
    os.makedirs(dest, exist_ok=True)
  for name in names:
    shutil.copyfile(os.path.join(plots, name), os.path.join(dest, name))
  with open(args.page, "w") as f:
    f.write(text)
  print(f"{args.page} updated from {report_path}; plots copied to {dest}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
