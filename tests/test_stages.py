"""Multi-stage jobs in one workdir: reuse of finished stages, refusal of changed ones, re-runs."""

import json
import os

import pytest

from warm_jax import errors, stages


def test_check_reusable(tmp_path):
  d = tmp_path / "stage"
  done = {"fingerprint": "abc", "finished": True}
  assert stages.check_reusable("s", None, "abc", str(d)) is False  # never ran
  # Removed (to be re-run after a config change): runs, whatever the ledger says.
  assert stages.check_reusable("s", done, "xyz", str(d)) is False
  d.mkdir()
  (d / "stage_result.json").write_text("{}")
  assert stages.check_reusable("s", done, "abc", str(d)) is True
  assert stages.check_reusable("s", {"fingerprint": "abc", "finished": False}, "abc", str(d)) is False
  with pytest.raises(errors.InputError, match="another config"):
    stages.check_reusable("s", done, "xyz", str(d))
  with pytest.raises(errors.InputError, match="does not record"):
    stages.check_reusable("s", None, "abc", str(d))


def test_fingerprint_ignores_the_workdir_and_follows_upstream():
  a = stages.fingerprint({"init_from": "/w1/sft", "lr": 0.1}, "/w1")
  assert a == stages.fingerprint({"init_from": "/w2/sft", "lr": 0.1}, "/w2")
  assert a != stages.fingerprint({"init_from": "/w2/sft", "lr": 0.2}, "/w2")
  assert a != stages.fingerprint({"init_from": "/w1/sft", "lr": 0.1}, "/w1", ("f00d",))


def _job(workdir, calls, lr=0.1):
  job = stages.Job(str(workdir), {"a": (), "b": ("a",), "c": ()})

  def stage(name, cfg):
    def fn():
      calls.append(name)
      os.makedirs(job.dir(name), exist_ok=True)
      open(os.path.join(job.dir(name), "out.txt"), "w").write(name)
      return {"name": name, "cfg": cfg}
    return job.run(name, cfg, fn)

  return [stage("a", {"lr": lr}), stage("b", {"k": 1}), stage("c", {"k": 2})]


def test_job_reuses_refuses_and_reruns_downstream(tmp_path):
  calls = []
  first = _job(tmp_path, calls)
  assert calls == ["a", "b", "c"] and first[0] == {"name": "a", "cfg": {"lr": 0.1}}
  assert _job(tmp_path, calls) == first and calls == ["a", "b", "c"]  # all reused
  with pytest.raises(errors.InputError, match="stage a"):
    _job(tmp_path, calls, lr=0.2)
  # Removing a re-runs it; b read it, so b's directory is stale and refused until removed too.
  import shutil
  shutil.rmtree(tmp_path / "a")
  with pytest.raises(errors.InputError, match="does not record"):
    _job(tmp_path, calls, lr=0.2)
  shutil.rmtree(tmp_path / "b")
  _job(tmp_path, calls, lr=0.2)
  assert calls == ["a", "b", "c", "a", "b"]  # a ran once more; c, independent of a, was reused
  ledger = json.load(open(tmp_path / "stages.json"))
  assert all(ledger[s]["finished"] for s in "abc")


def test_job_rejects_stages_out_of_order(tmp_path):
  with pytest.raises(ValueError, match="not stages that run before it"):
    stages.Job(str(tmp_path), {"b": ("a",), "a": ()})
  job = stages.Job(str(tmp_path), {"a": (), "b": ("a",)})
  with pytest.raises(ValueError, match="runs before the stages it reads"):
    job.run("b", {}, dict)
  with pytest.raises(ValueError, match="unknown stage"):
    job.run("z", {}, dict)


def test_reseeded_offsets_every_seed_but_the_tasks_and_drops_the_seeds_list():
  import ml_collections
  c = ml_collections.ConfigDict(dict(
      seed=0, seeds=(0, 2), rl=dict(seed=3, lr=0.1), final=dict(seed=1234),
      objectives=dict(label_seed=5, names=("a", "b")),
      data=dict(seed=1, task=dict(seed=7, flip_fraction=0.1)),
      rm=dict(seed=0, data=dict(seed=0, task=dict(seed=7)))))
  assert sorted(stages.seed_fields(c)) == sorted(
      ["seed", "rl.seed", "final.seed", "objectives.label_seed", "data.seed", "rm.seed",
       "rm.data.seed"])
  two = stages.reseeded(c, 2)
  assert "seeds" not in two and c.seeds == (0, 2)  # the copy is one run; the config is untouched
  s = 2 * stages.SEED_STRIDE
  assert (two.seed, two.rl.seed, two.final.seed, two.objectives.label_seed) == (s, 3 + s, 1234 + s, 5 + s)
  assert (two.data.seed, two.rm.seed, two.rm.data.seed) == (1 + s, s, s)
  assert two.data.task.seed == 7 and two.rm.data.task.seed == 7  # the data itself is shared
  assert two.rl.lr == 0.1 and two.objectives.names == ("a", "b")
  zero = stages.reseeded(c, 0)  # seed 0 computes what the config computes
  assert zero.to_dict() == {k: v for k, v in c.to_dict().items() if k != "seeds"}


def test_over_seeds_runs_each_seed_in_its_own_workdir_and_reports_the_spread(tmp_path):
  import ml_collections
  calls = []

  def run(config, workdir):
    calls.append((config.seed, workdir))
    return {"acc": 0.5 + config.seed / 10_000}

  headline = lambda r: [("accuracy, above 0.55", (r["acc"],), r["acc"] > 0.55)]  # noqa: E731
  c = ml_collections.ConfigDict(dict(seed=0, seeds=(2, 0, 1)))
  out = stages.over_seeds(run, c, str(tmp_path), "study", headline, "All of it re-run.")
  assert out == {"acc": 0.5}  # seed 0's result
  assert calls == [(0, str(tmp_path)), (1000, str(tmp_path / "seed1")),
                   (2000, str(tmp_path / "seed2"))]
  text = (tmp_path / "study_seeds.md").read_text()
  assert "## Over 3 seeds" in text and "All of it re-run." in text
  assert "| accuracy, above 0.55 | 0.500 | 0.600 | 0.700 | 0.600 +- 0.100 | 2/3 |" in text
  saved = json.loads((tmp_path / "study_seeds.json").read_text())
  assert saved["seeds"] == [0, 1, 2] and saved["headline"]["2"][0][1] == [0.7]
  # One seed: the plain run, no seeds report.
  calls.clear()
  single = tmp_path / "single"
  stages.over_seeds(run, ml_collections.ConfigDict(dict(seed=0, seeds=(0,))), str(single),
                    "study", headline, "")
  assert calls == [(0, str(single))] and not os.path.exists(single / "study_seeds.md")
  for bad in ((1, 2), (0, 0), (0, 1000), (0, 1.5)):
    with pytest.raises(errors.InputError, match="config.seeds"):
      stages.over_seeds(run, ml_collections.ConfigDict(dict(seed=0, seeds=bad)), str(tmp_path),
                        "study", headline, "")
