"""WARP (`experiments/warp.py`) and the merge methods for reward models
(`experiments/merge_methods.py`) at `tiny` scale on the main job's first stages, and their pieces:
fronts, claims, config errors."""

import json
import os

import numpy as np
import pytest
from conftest import data_dir, experiment

from warm_jax import checkpoints, errors, stages
from warm_jax.studies import merge_methods, warp
from warm_jax.studies.warm import job as warm_job
from warm_jax.studies.warm import publish


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
  """The main job's pretrain, sft and warm_label_noise stages at tiny scale."""
  root = tmp_path_factory.mktemp("warp")
  with data_dir(root / "data"):
    workdir = str(root / "job")
    stages.run_job(experiment("warm").get_config("tiny"), workdir, warm_job.STAGES[:3])
    yield {"root": root, "sft": os.path.join(workdir, "sft"),
           "label_noise": os.path.join(workdir, "warm_label_noise")}


def run_tiny(upstream, name, main):
  """experiments/<name>.py:tiny on the upstream runs: (config, workdir, result)."""
  c = experiment(name).get_config("tiny")
  c.init_from, c.label_noise = upstream["sft"], upstream["label_noise"]
  w = str(upstream["root"] / name)
  with data_dir(upstream["root"] / "data"):
    return c, w, main(c, w)


@pytest.mark.slow
def test_warp_tiny_end_to_end(upstream):
  c, w, results = run_tiny(upstream, "warp", warp.main)
  curves = results["fronts"]["curves"]
  for i in (1, 2):  # M RL runs per iteration, each anchored to its EMA, and the merges
    it = results[f"warp_{i}"]
    assert len(it["runs"]) == c.warp.m
    cfg = checkpoints.read_meta(os.path.join(it["runs"][0], "checkpoints"))["config"]
    assert cfg["rl"]["anchor"] == "ema" and cfg["rl"]["ema_rate"] == c.warp.ema_rate
    assert cfg["init_from"] == (upstream["sft"] if i == 1 else results["warp_1"]["next_init"])
    assert checkpoints.read_meta(it["slerp"])["warp"]["merge"] == "slerp"
  # The two runs differ (seeds); the next initialisation is LITI(init, SLERP, eta).
  import jax

  from warm_jax import averaging
  pol = warp.Policies(c)
  init = pol.load(upstream["sft"])
  runs = [pol.load(r) for r in results["warp_1"]["runs"]]
  assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(runs[0]),
                                                    jax.tree.leaves(runs[1])))
  expect = averaging.liti(init, averaging.slerp_task_vectors(init, runs), c.warp.eta)
  got = pol.load(results["warp_1"]["next_init"])
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expect)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
  # Fronts: every curve, LITI's eta 0 is its initialisation (KL 0 for iteration 1).
  for name in ("REINFORCE (SFT anchor)", "EMA anchor alone (LITI of run 0)",
               "WARP iteration 1 (LITI of its SLERP)", "LERP iteration 1 (LITI of its LERP)",
               "WARP iteration 2 (LITI of its SLERP)", "iteration 1: RL runs (EMA anchor)"):
    assert name in curves
  assert len(curves["REINFORCE (SFT anchor)"]) == 1 + len(c.baseline.kl_coefs)
  assert [p["label"] for p in curves["WARP iteration 1 (LITI of its SLERP)"]] == [
      "eta 0", "eta 0.5", "eta 1"]
  sft = curves["WARP iteration 1 (LITI of its SLERP)"][0]
  assert abs(sft["kl"]) < 1e-4  # the SFT policy's KL to itself
  # iteration 2 starts where iteration 1's front has its chosen point (eta = 0.5)
  assert curves["WARP iteration 2 (LITI of its SLERP)"][0]["gold"] == \
      curves["WARP iteration 1 (LITI of its SLERP)"][1]["gold"]
  report = open(os.path.join(w, "results.md")).read()
  assert "## WARP's claims on this run" in report and "CPU (user + system" in report
  claim_rows = [ln for ln in report.splitlines()
                if any(f"| {v} |" in ln for v in ("yes", "**no**", "not measured"))]
  assert len(claim_rows) == len(warp.claims(results)) >= 8
  assert os.path.getsize(os.path.join(w, "plots", "front.png")) > 0
  # The publisher puts the report between the page's markers.
  page = "# WARP\n<!-- warp-results:begin -->\nold\n<!-- warp-results:end -->\n"
  text = publish.splice(page, report, "warp", marker="warp-results")
  assert "### WARP's claims on this run" in text and "](warp/front.png)" in text


@pytest.mark.slow
def test_merge_methods_tiny_end_to_end(upstream):
  c, w, result = run_tiny(upstream, "merge_methods", merge_methods.main)
  labels = [r["label"] for r in result["rows"]]
  assert labels[0].startswith("best single RM") and labels[1].startswith("WARM (linear, M = 3)")
  assert any(lbl.startswith("TIES") for lbl in labels) and any("model stock" in lbl for lbl in labels)
  assert "pair (0, 1): SLERP of the task vectors" in labels
  # WARM here is the label-noise run's own WARM: same accuracies as its table.
  ln = json.load(open(os.path.join(upstream["label_noise"], "label_noise.json")))
  warm_row = result["rows"][1]
  for s in result["subsets"]:
    assert warm_row["accuracy"][s] == pytest.approx(ln["rows"]["warm"][s], abs=1e-6), s
    a, n = warm_row["accuracy"][s], result["counts"][s]
    assert n == ln["counts"][s], s  # the subset's pairs, not the (tokens, mask) of one
    assert warm_row["stderr"][s] == pytest.approx(np.sqrt(a * (1 - a) / n))
  # The pair's LERP is WARM of the two best members.
  assert [b["n"] for b in warm_row["bon"]] == list(c.bon.ns)
  base_meta = checkpoints.read_meta(os.path.join(w, "base"))
  assert sorted(base_meta["merge_methods"]["init_steps"]) == sorted(
      m["init_step"] for m in ln["members"])
  table = open(os.path.join(w, "results.md")).read()
  assert "+-" in table and "BoN gold N = 4" in table


def test_pareto_and_gain():
  pts = lambda *xy: [{"kl": x, "gold": y} for x, y in xy]  # noqa: E731
  assert [p["kl"] for p in warp.pareto(pts((0, 1), (1, 0.5), (2, 2), (3, 1.5)))] == [0, 2]
  g = warp.gain(pts((1, 2), (5, 3)), pts((0, 1), (2, 2)))  # (1, 2) vs 1.5 at KL 1; 5 outside
  assert g == {"mean": pytest.approx(0.5), "min": pytest.approx(0.5), "n": 1}
  assert warp.gain(pts((9, 9)), pts((0, 1), (2, 2)))["n"] == 0


def test_front_claims_without_a_shared_kl_range_are_not_measured():
  """Fronts with no KL in common decide nothing: the claim says so, not '+nan (0 points)'."""
  claim, held, numbers = warp._front_claim("above", {"mean": float("nan"), "min": float("nan"),
                                                     "n": 0}, "gold")
  assert held is None and "share no KL range" in numbers and "nan" not in numbers
  assert warp._front_claim("above", {"mean": -0.1, "min": -0.2, "n": 2}, "gold")[1] is False
  claims = [("c1", None, "n/a"), ("c2", False, "x"), ("c3", True, "y")]
  stage = stages.study("s", lambda ctx: {}, claims=lambda r: claims)
  rows = stages.claims_table([stage], {}).splitlines()[2:]
  assert [r.split(" | ")[1] for r in rows] == ["not measured", "**no**", "yes"]


@pytest.mark.parametrize("field, value, match", [
    ("warp.etas", (0.0, 0.5, 1.2), r"config.warp.etas=\(0.0, 0.5, 1.2\)"),
    ("warp.etas", (0.5, 1.0), r"config.warp.etas=\(0.5, 1.0\): must be a LITI grid holding 0"),
    ("warp.eta", -0.1, r"config.warp.eta=-0.1"),
    ("warp.ema_rate", 0.0, r"config.warp.ema_rate=0.0: must be in \(0, 1\]"),
    ("warp.ema_rate", 1.5, r"config.warp.ema_rate=1.5"),
    ("warp.m", 1, r"config.warp.m=1"),
    ("baseline.kl_coefs", (0.01, -1.0), r"config.baseline.kl_coefs"),
])
def test_warp_config_errors_name_the_field(field, value, match):
  c = experiment("warp").get_config("tiny")
  section, name = field.split(".")
  c[section][name] = value
  with pytest.raises(errors.InputError, match=match):
    warp.validate(c)


def test_merge_methods_config_errors(tmp_path):
  c = experiment("merge_methods").get_config("tiny")
  with pytest.raises(errors.MissingInput, match="init_from"):
    merge_methods.main(c, str(tmp_path))
  for field, value, match in (("ties_densities", (0.0,), "densities in"),
                              ("dare_drops", (1.0,), "drop probabilities"),
                              ("pairs_of", 1, "pairs_of=1"), ("m", 9, "m=9")):
    bad = experiment("merge_methods").get_config("tiny")
    bad.merges[field] = value
    with pytest.raises(errors.InputError, match=match):
      merge_methods.validate(bad, 3)
