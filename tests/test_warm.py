"""The WARM studies and the main job (`experiments/warm.py`) at `tiny` scale, and their pieces."""

import json
import os

import numpy as np
import pytest
from conftest import data_dir, experiment

from warm_jax import errors
from warm_jax.studies.warm import bon, job as warm_job, label_noise, lmc, publish

warm = experiment("warm")


@pytest.fixture(scope="module")
def job(tmp_path_factory):
  """One full tiny run of the main job, shared by the tests below."""
  root = tmp_path_factory.mktemp("warm")
  with data_dir(root / "data"):
    workdir = str(root / "job")
    results = warm_job.main(warm.get_config("tiny"), workdir)
    yield {"workdir": workdir, "results": results}


@pytest.mark.slow
def test_main_job_writes_report_plots_configs_and_checkpoints(job):
  w = job["workdir"]
  report = open(os.path.join(w, "results.md")).read()
  for section in ("## 1. Label noise", "## 2. Linear mode connectivity", "## 3. Best-of-N",
                  "## 4. RL", "## The paper's claims on this run"):
    assert section in report
  # Every claim row says whether it held, from the numbers (never left blank).
  claim_rows = [line for line in report.splitlines() if line.startswith("| ") and
                ("| yes |" in line or "| **no** |" in line)]
  assert len(claim_rows) == len(warm_job.claims(job["results"]))
  for stage in warm_job.STAGES:
    assert not stage.plot or os.path.getsize(os.path.join(w, "plots", stage.plot)) > 0
  for stage in warm_job.NAMES:
    assert os.path.exists(os.path.join(w, "configs", f"{stage}.json"))
  ledger = json.load(open(os.path.join(w, "stages.json")))
  assert all(ledger[s]["finished"] for s in warm_job.NAMES)
  # The stages are wired to each other's outputs.
  sft_cfg = json.load(open(os.path.join(w, "configs", "sft.json")))
  assert sft_cfg["init_from"] == os.path.join(w, "pretrain")
  from warm_jax import checkpoints
  assert checkpoints.complete_steps(os.path.join(w, "warm_label_noise", "warm", "checkpoints")) \
      or checkpoints.complete_steps(os.path.join(w, "warm_label_noise", "warm"))


@pytest.mark.slow
def test_rerun_reuses_finished_stages_and_refuses_a_changed_one(job, capsys):
  w = job["workdir"]
  again = warm_job.main(warm.get_config("tiny"), w)
  out = capsys.readouterr().out
  assert out.count("reusing the finished stage") == len(warm_job.STAGES)
  assert again["warm_bon"] == job["results"]["warm_bon"]
  changed = warm.get_config("tiny")
  changed.warm_bon.bon.temperature = 0.7
  with pytest.raises(errors.InputError, match="warm_bon"):
    warm_job.main(changed, w)
  # An upstream change invalidates everything after it: the first changed stage is named.
  changed = warm.get_config("tiny")
  changed.sft.optim.lr = 5e-4
  with pytest.raises(errors.InputError, match="stage sft"):
    warm_job.main(changed, w)
  # Following the advice (remove the stage) re-runs it alone: best-of-N feeds no other stage.
  import shutil
  shutil.rmtree(os.path.join(w, "warm_bon"))
  changed = warm.get_config("tiny")
  changed.warm_bon.bon.temperature = 0.7
  capsys.readouterr()
  warm_job.main(changed, w)
  out = capsys.readouterr().out
  assert out.count("reusing the finished stage") == len(warm_job.STAGES) - 1
  assert json.load(open(os.path.join(w, "stages.json")))["warm_bon"]["finished"]


@pytest.mark.slow
def test_warm_checkpoint_is_the_average_of_the_members(job):
  from warm_jax import checkpoints
  ln, _ = label_noise.load(os.path.join(job["workdir"], "warm_label_noise"))
  members = [checkpoints.restore_params(m["path"] + "/checkpoints") for m in ln["members"]]
  avg = checkpoints.restore_params(ln["warm"])
  import jax
  expected = jax.tree.map(lambda *xs: np.mean(np.stack(xs), axis=0), *members)
  for a, b in zip(jax.tree.leaves(avg), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_members_are_diverse_and_start_from_the_kept_sft_checkpoints(job):
  ln = job["results"]["warm_label_noise"]
  cfg = warm.get_config("tiny").warm_label_noise
  from warm_jax import checkpoints
  keys = set()
  for m in ln["members"]:
    assert m["lr"] in cfg.diversity.lrs and m["dropout"] in cfg.diversity.dropouts
    assert m["init_step"] in cfg.diversity.init_steps
    keys.add((m["lr"], m["dropout"], m["init_step"]))
    # The member's run records where it started: its SFT checkpoint and its hyper-parameters.
    run = checkpoints.read_meta(os.path.join(job["workdir"], "warm_label_noise", m["path"],
                                             "checkpoints"))["config"]
    assert run["init_from"] == os.path.join(job["workdir"], "sft")
    assert (run["init_step"], run["optim"]["lr"], run["model"]["dropout_rate"]) == \
        (m["init_step"], m["lr"], m["dropout"])
  assert len(keys) > 1  # the hyper-parameters themselves differ, not only the seeds
  assert sorted(ln["ranking"]) == list(range(len(ln["members"])))
  # Corrupted and clean training pairs partition the training set.
  assert ln["counts"]["train_clean"] + ln["counts"]["train_corrupted"] == ln["train_pairs"]
  assert ln["counts"]["train_corrupted"] > 0


@pytest.mark.slow
def test_lmc_endpoints_are_the_members_and_ens_is_linear(job):
  res = job["results"]["warm_lmc"]
  ln = job["results"]["warm_label_noise"]
  a, b = res["pair"]
  first, last = res["path"][0], res["path"][-1]
  for s in res["subsets"]:
    assert first["wa"][s] == first["ens"][s] == first["diag"][s] == ln["rows"][f"member_{a}"][s]
    assert last["wa"][s] == last["diag"][s] == ln["rows"][f"member_{b}"][s]
  # An interior lambda: WA is the accuracy of the interpolated weights, ENS of the interpolated
  # predictions, both recomputed here from the members.
  import warm_jax
  from warm_jax import averaging, evaluation
  mid = res["path"][len(res["path"]) // 2]
  lam = mid["lambda"]
  assert 0 < lam < 1
  ln_dir = os.path.join(job["workdir"], "warm_label_noise")
  ln_res, ln_cfg = label_noise.load(ln_dir)
  rewards = label_noise.load_rewards(os.path.join(ln_dir, "rewards.npz"))
  ra, rb = rewards[f"member_{a}"], rewards[f"member_{b}"]
  for s in res["subsets"]:
    ens = evaluation.pair_accuracy(*((1 - lam) * ra[s][j] + lam * rb[s][j] for j in (0, 1)))
    assert mid["ens"][s] == pytest.approx(ens)
  scorers = warm_jax.load_reward_models([ln_res["members"][a]["path"], ln_res["members"][b]["path"]])
  scorers[0].max_len = ln_cfg.eval.max_len
  train, held_out, _ = label_noise.training_sources(ln_cfg)
  sets = label_noise.evaluation_sets(ln_cfg, scorers[0], train, held_out)
  wa = scorers[0].with_params(averaging.interpolate(scorers[0].params, scorers[1].params, lam))
  for s in res["subsets"]:
    assert mid["wa"][s] == pytest.approx(evaluation.pair_accuracy(
        wa.score_tokens(*sets[s][0]), wa.score_tokens(*sets[s][1])))
  # M = all members: the label-noise run's WARM and ENS.
  full = res["by_m"][-1]
  for s in res["subsets"]:
    assert full["wa"][s] == ln["rows"]["warm"][s] and full["ens"][s] == ln["rows"]["ens"][s]


@pytest.mark.slow
def test_bon_win_rates_and_rl_comparisons(job):
  bon = job["results"]["warm_bon"]
  for name, rows in bon["curves"].items():
    assert rows[0]["n"] == 1 and rows[0]["kl_bound"] == 0.0
    # N = 1 keeps the same sample whatever the selector: a tie with the single RM.
    assert rows[0]["win_rate_vs_single"] == 0.5
  oracle = [r["gold"] for r in bon["curves"]["oracle"]]
  assert all(b >= a - 1e-9 for a, b in zip(oracle, oracle[1:]))
  rl = job["results"]["warm_rl"]
  for key in ("warm_vs_single", "warm_vs_sft", "single_vs_sft"):
    assert 0.0 <= rl["final"][key]["win_rate"] <= 1.0
  assert set(rl["curves"]) == {"single", "warm"}


def _fake_results(warm_acc, ens_acc, ind_acc, barrier, bon_end, rl_end, win):
  subsets = ["train_clean", "train_corrupted", "validation", "test"]
  # Agreement with the flipped labels mirrors accuracy (1 - acc): less memorisation, more accuracy.
  row = lambda v: {s: (1.0 - v if s == "train_corrupted" else v) for s in subsets}
  return {
      "warm_label_noise": {"rows": {"warm": row(warm_acc), "ens": row(ens_acc),
                                    "mean_individual": row(ind_acc)},
                           "subsets": subsets, "rank_split": "validation", "members": [{}, {}]},
      "warm_lmc": {"subsets": ["train_corrupted", "test"],
                   "barrier": {"train_corrupted": 0.1, "test": barrier}},
      "warm_bon": {"ms": [2], "curves": {
          "single": [{"n": 1, "gold": 0.5, "win_rate_vs_single": 0.5},
                     {"n": 4, "gold": 0.6, "win_rate_vs_single": 0.5}],
          "WARM 2": [{"n": 1, "gold": 0.5, "win_rate_vs_single": 0.5},
                     {"n": 4, "gold": bon_end, "win_rate_vs_single": win}]}},
      "warm_rl": {"m": 2, "curves": {
          "single": {"gold_end": 0.5, "gold_peak": 0.6, "peak_step": 5},
          "warm": {"gold_end": rl_end, "gold_peak": 0.7, "peak_step": 9}},
          "final": {"warm_vs_single": {"win_rate": win, "win_rate_stderr": 0.01, "n": 10,
                                       "ties": 0.0}}}}


@pytest.mark.slow
def test_notebook_opens_the_main_jobs_outputs(job, monkeypatch):
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  nb = nbformat.read(os.path.join(root, "notebooks", "warm.ipynb"), as_version=4)
  monkeypatch.setenv("WARM_RUN", job["workdir"])  # the kernel inherits the environment
  monkeypatch.setenv("WARM_PAIRS", "16")
  nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": root}}).execute()
  outputs = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                    for o in cell.get("outputs", []))
  assert "NOTEBOOK OK" in outputs and "max over lambda of Diag - WA" in outputs
  images = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
            if "image/png" in o.get("data", {})]
  assert len(images) == 2  # the lambda path and WARM vs ENS


def test_claims_are_decided_by_the_numbers():
  good = warm_job.claims(_fake_results(0.8, 0.7, 0.6, -0.01, 0.7, 0.6, 0.6))
  assert all(held for _, held, _ in good)
  bad = warm_job.claims(_fake_results(0.6, 0.7, 0.8, 0.02, 0.5, 0.4, 0.4))
  assert len(bad) == len(good) == 8 and not any(held for _, held, _ in bad)
  # The numbers are quoted next to each verdict.
  assert "WARM 0.600, ENS 0.700" in bad[0][2]


def test_seeds_repeat_the_stochastic_stages_under_offset_seeds():
  from warm_jax import stages
  c = warm.get_config("tiny")
  c.seeds = (0, 2)
  job_stages = warm_job.job_stages(c)
  names = [s.name for s in job_stages]
  assert names[:6] == list(warm_job.NAMES)  # seed 0's stages are the job's plain ones
  assert names[6:] == [f"{n}_seed2" for n in warm_job.NAMES[2:]]  # pre-training and SFT shared
  ctx = stages.Context(c, "/w", stages.Job("/w", {s.name: s.upstream for s in job_stages}))
  by_name = {s.name: s for s in job_stages}
  plain, other = by_name["warm_bon"].config(ctx), by_name["warm_bon_seed2"].config(ctx)
  assert other.seed == plain.seed + 2 * stages.SEED_STRIDE
  assert other.label_noise == "/w/warm_label_noise_seed2" and other.init_from == "/w/sft"
  assert by_name["warm_rl_seed2"].report is None  # only seed 0's stages make the report
  for bad in ((1, 2), (0, 0), (0, 1000)):
    c.seeds = bad
    with pytest.raises(ValueError, match="config.seeds"):
      warm_job.validate(c)


def test_seeds_section_reports_each_seed_the_spread_and_how_often_a_claim_held():
  good = _fake_results(0.8, 0.7, 0.6, -0.01, 0.7, 0.6, 0.6)
  bad = _fake_results(0.6, 0.7, 0.8, 0.02, 0.5, 0.4, 0.4)
  for r in (good, bad):
    r["warm_label_noise"]["subsets"].append("ood")
    for row in r["warm_label_noise"]["rows"].values():
      row["ood"] = row["test"]
  results = {**good, **{f"{k}_seed1": v for k, v in bad.items()}}
  text = warm_job.seeds_section(results, [0, 1])
  assert "## Over 2 seeds" in text
  row = next(line for line in text.splitlines() if line.startswith("| RL: gold at the end"))
  assert "| 0.600 / 0.500 | 0.400 / 0.500 | 0.500 +- 0.141 / 0.500 +- 0.000 | 1/2 |" in row


def test_main_job_stages_read_only_earlier_stages():
  from warm_jax import stages
  job = stages.Job("unused", {s.name: s.upstream for s in warm_job.STAGES})
  assert list(job.upstream) == list(warm_job.NAMES)
  assert job.downstream("warm_label_noise") == ["warm_lmc", "warm_bon", "warm_rl"]
  assert job.downstream("warm_bon") == []


@pytest.mark.slow
def test_members_start_from_the_linear_probe(job):
  import ml_collections

  from warm_jax import checkpoints
  from warm_jax.studies import reward_model as rm_study
  from warm_jax.train import reward_model as rm_train
  ln = job["results"]["warm_label_noise"]
  probe_dir = os.path.join(job["workdir"], "warm_label_noise", "probe")
  assert ln["probe"]["steps"] == experiment("warm_label_noise").get_config("tiny").probe.steps
  probe = checkpoints.restore_params(probe_dir)
  assert set(probe) == {"reward_head"} and np.any(probe["reward_head"]["kernel"])  # fitted
  for m in ln["members"]:
    run = checkpoints.read_meta(os.path.join(job["workdir"], "warm_label_noise", m["path"],
                                             "checkpoints"))["config"]
    assert run["init_head"] == probe_dir
  c = ml_collections.ConfigDict(run)
  start = rm_study.initial_params(c, rm_train.build(c))
  np.testing.assert_array_equal(start["reward_head"]["kernel"], probe["reward_head"]["kernel"])
  # Turned off, the members start from a zero head, as before.
  off = experiment("warm_label_noise").get_config("tiny")
  off.probe.enabled = False
  assert all("init_head" not in mc for mc in label_noise.member_configs(off))


def test_member_configs_draw_from_the_diversity_lists():
  c = experiment("warm_label_noise").get_config("cpu")
  c.init_from = "runs/sft"
  ms = label_noise.member_configs(c)
  assert len(ms) == c.members
  assert [m.seed for m in ms] == list(range(c.members))
  assert [m.data.seed for m in ms] == list(range(c.members))
  assert all(m.optim.lr in c.diversity.lrs and m.model.dropout_rate in c.diversity.dropouts
             and m.init_step in c.diversity.init_steps and m.init_from == "runs/sft" for m in ms)
  # Deterministic from the seed, and the base config is left untouched.
  assert [m.optim.lr for m in label_noise.member_configs(c)] == [m.optim.lr for m in ms]
  assert c.rm.optim.lr == experiment("warm_label_noise").get_config("cpu").rm.optim.lr


@pytest.mark.parametrize("field, value, match", [
    ("members", 1, "members"),
    ("diversity.lrs", (), "diversity.lrs"),
    ("diversity.dropouts", (1.5,), "diversity.dropouts"),
    ("train_examples", -1, "train_examples"),
    ("flip_fraction", 0.1, "flip_fraction"),
])
def test_label_noise_config_errors_name_the_field(field, value, match):
  c = experiment("warm_label_noise").get_config("tiny")
  node, _, leaf = field.rpartition(".")
  (c[node] if node else c)[leaf] = value
  with pytest.raises(ValueError, match=match):
    label_noise.validate(c)


def test_study_inputs_fail_clearly(tmp_path):
  with pytest.raises(errors.MissingInput, match="init_from"):
    label_noise.main(experiment("warm_label_noise").get_config("tiny"), str(tmp_path / "a"))
  c = experiment("warm_lmc").get_config("tiny")
  with pytest.raises(errors.MissingInput, match="label_noise"):
    lmc.main(c, str(tmp_path / "b"))
  c.label_noise = str(tmp_path / "nothing")
  with pytest.raises(FileNotFoundError, match="label_noise.json"):
    lmc.main(c, str(tmp_path / "b"))
  c = experiment("warm_bon").get_config("tiny")
  with pytest.raises(errors.MissingInput, match="init_from"):
    bon.main(c, str(tmp_path / "c"))
  with pytest.raises(ValueError, match="config.ms"):
    c.ms = (2, 9)
    bon.validate(c, 3)


def test_publish_splices_the_report_between_the_markers(tmp_path):
  page = f"# title\nbefore\n{publish.BEGIN}\nold\n{publish.END}\nafter\n"
  report = "# WARM\n\n## 1. x\n\n| a |\n\n![p](plots/bon.png)\n"
  out = publish.splice(page, report, "warm")
  assert "old" not in out and out.startswith("# title\nbefore\n") and out.endswith("after\n")
  assert "## WARM" in out and "### 1. x" in out and "](warm/bon.png)" in out
  assert publish.splice(out, report, "warm") == out  # idempotent
  with pytest.raises(ValueError, match="markers|once"):
    publish.splice("no markers", report, "warm")


def test_every_variant_validates_before_any_compute():
  for variant in warm.VARIANTS:
    c = warm.get_config(variant)
    if variant == "paper":  # the oracle reward model of real data must be given
      with pytest.raises(ValueError, match="gold.path"):
        warm_job.validate(c)
      c.warm_bon.gold.path = c.warm_rl.gold.path = "runs/oracle_rm"
    warm_job.validate(c)
  c = warm.get_config("cpu")
  c.warm_bon.ms = (2, 7)  # a study's own check, before the training stages
  with pytest.raises(ValueError, match="config.ms"):
    warm_job.validate(c)
  c = warm.get_config("cpu")
  c.warm_label_noise.diversity.init_steps = (0, 200)
  with pytest.raises(ValueError, match="init_steps"):
    warm_job.validate(c)
  c = warm.get_config("cpu")
  c.warm_label_noise.diversity.init_steps = (200, 275)
  with pytest.raises(ValueError, match="275"):
    warm_job.validate(c)
  c = warm.get_config("cpu")
  c.sft.train.keep = 1
  with pytest.raises(ValueError, match="keep"):
    warm_job.validate(c)
