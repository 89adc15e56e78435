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
