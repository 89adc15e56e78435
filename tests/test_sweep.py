"""launch/sweep.py: grid expansion, run names, the exact commands (--dry-run), bad input."""

import os

import pytest


from conftest import script

sweep = script("launch/sweep.py")


def test_grid_expansion_and_names():
  grid = sweep.parse_grid(["config.lam=0, 0.5,1", "config.seed=1,2"])
  assert grid == [("config.lam", ["0", "0.5", "1"]), ("config.seed", ["1", "2"])]
  points = sweep.expand(grid)
  assert len(points) == 6 and points[0] == {"config.lam": "0", "config.seed": "1"}
  assert points[1] == {"config.lam": "0", "config.seed": "2"}  # the first axis varies slowest
  assert sweep.point_name(points[5]) == "lam=1,seed=2"
  assert sweep.point_name({"config.data.name": "a/b c"}) == "name=a_b_c"


@pytest.mark.parametrize("spec,match", [("lam=0,1", "expected config"), ("config.lam=", "expected"),
                                        ("config.lam", "expected")])
def test_bad_grid(spec, match):
  with pytest.raises(ValueError, match=match):
    sweep.parse_grid([spec])
  with pytest.raises(ValueError, match="twice"):
    sweep.parse_grid(["config.a=1", "config.a=2"])


def test_dry_run_prints_the_exact_commands(capsys):
  rc = sweep.main(["--experiment=experiments/interpolate.py", "--variant=tiny", "--workdir=runs/sw",
                   "--set=config.a=runs/rm0", "--grid=config.lam=0,0.5", "--python=python",
                   "--dry-run"])
  assert rc == 0
  lines = capsys.readouterr().out.strip().splitlines()
  assert lines == [
      "python experiments/interpolate.py --config=experiments/interpolate.py:tiny "
      "--workdir=runs/sw/lam=0 --config.a=runs/rm0 --config.lam=0",
      "python experiments/interpolate.py --config=experiments/interpolate.py:tiny "
      "--workdir=runs/sw/lam=0.5 --config.a=runs/rm0 --config.lam=0.5"]
  assert not os.path.exists("runs/sw")


@pytest.mark.parametrize("args,match", [
    (["--experiment=experiments/nope.py"], "no such file"),
    (["--experiment=experiments/interpolate.py", "--set=lam=1"], "--set"),
    (["--experiment=experiments/interpolate.py"], "no --grid"),
])
def test_bad_sweeps_fail_before_running(args, match):
  with pytest.raises(SystemExit, match=match):
    sweep.main(args + ["--workdir=/nonexistent/sw", "--dry-run"])
