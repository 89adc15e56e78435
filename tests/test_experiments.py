"""The experiment files end to end on the embedded task at `tiny` scale: pre-train -> SFT -> reward
model from the pre-trained LM -> reward-hacking check -> RL against the RM -> plot; DPO from SFT."""

import json
import os

import numpy as np
import pytest
from conftest import data_dir, experiment, script

from warm_jax import errors
from warm_jax.studies import active_queries as aq
from warm_jax.studies import best_of_n as bon_study
from warm_jax.studies import dpo as dpo_study
from warm_jax.studies import lm, model_written_evals as mwe, modpo, reward_hacking
from warm_jax.studies import reward_model as rm_study
from warm_jax.studies import rewarded_soups as rs, rl as rl_study, rl_curves, rlp
from warm_jax.train.metrics import read_metrics


def set_field(config, dotted: str, value) -> None:
  """config['a']['b'] = value for dotted 'a.b'."""
  *path, leaf = dotted.split(".")
  for k in path:
    config = config[k]
  config[leaf] = value


@pytest.fixture(scope="module")
def pipeline_runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("pipeline")
  runs = {k: str(root / k) for k in ("pretrain", "sft", "rm", "rl", "dpo")}
  with data_dir(root / "data"):
    c = experiment("pretrain").get_config("tiny")
    lm.pretrain(c, runs["pretrain"])
    c = experiment("sft").get_config("tiny")
    c.init_from = runs["pretrain"]
    lm.sft(c, runs["sft"])
    c = experiment("reward_model").get_config("tiny")
    c.init_from = runs["pretrain"]
    rm_study.main(c, runs["rm"])
    yield runs


@pytest.mark.slow
def test_lm_runs_log_held_out_losses(pipeline_runs):
  pre = read_metrics(pipeline_runs["pretrain"], "corpus_validation")
  post = read_metrics(pipeline_runs["sft"], "sft_validation")
  assert pre and post and np.isfinite(pre[-1]["loss"]) and np.isfinite(post[-1]["loss"])
  # SFT evaluates its starting point (the pre-trained LM) at step 0, and improves on it.
  assert post[0]["step"] == 0 and post[-1]["step"] == experiment("sft").get_config("tiny").train.num_steps
  assert post[-1]["loss"] < post[0]["loss"]


@pytest.mark.slow
def test_reward_model_starts_from_the_pretrained_decoder(pipeline_runs):
  from warm_jax import checkpoints
  first = checkpoints.read_meta(os.path.join(pipeline_runs["rm"], "checkpoints"))
  assert first["config"]["init_from"] == pipeline_runs["pretrain"]
  # A model shape other than the LM's fails naming the parameter.
  from warm_jax.train import init, reward_model
  c = experiment("reward_model").get_config("tiny")
  c.model.d_model = 48
  with pytest.raises(ValueError, match="decoder"):
    init.reward_model_from_lm(pipeline_runs["pretrain"], reward_model.build(c))
  with pytest.raises(FileNotFoundError, match="does not exist"):
    init.reward_model_from_lm(pipeline_runs["pretrain"] + "_missing", reward_model.build(c))


@pytest.mark.slow
def test_reward_hacking_check_writes_its_report(pipeline_runs, tmp_path):
  out = str(tmp_path / "hack")
  s = reward_hacking.main(["--rm", pipeline_runs["rm"], "--n", "6", "--out", out])
  assert len(s["rows"]) == 3 * len(reward_hacking.STRENGTHS)
  assert all(0.0 <= r["fooled"] <= 1.0 for r in s["rows"])
  # Strength 0 is the good response itself: never 'fooled' against itself.
  assert all(r["fooled"] == 0.0 for r in s["rows"] if r["strength"] == 0)
  assert os.path.getsize(os.path.join(out, "hacking.png")) > 0
  assert json.load(open(os.path.join(out, "hacking.json")))["n"] == 6


@pytest.mark.slow
def test_rl_against_the_reward_model_and_plot(pipeline_runs, tmp_path):
  c = experiment("rl").get_config("tiny")
  c.init_from = pipeline_runs["sft"]
  c.reward.kind = "rm"
  c.reward.path = pipeline_runs["rm"]
  result = rl_study.main(c, pipeline_runs["rl"])
  assert np.isfinite(result["validation/kl"]) and np.isfinite(result["validation/reward/gold"])
  png = str(tmp_path / "rl.png")
  runs = rl_curves.main([pipeline_runs["rl"], "--out", png, "--smooth", "1"])
  assert os.path.getsize(png) > 0 and len(runs["rl"]["kl"]) == 2


@pytest.mark.slow
def test_dpo_from_the_sft_policy_reports_gold_win_rate(pipeline_runs):
  c = experiment("dpo").get_config("tiny")
  c.dpo.ref_checkpoint = pipeline_runs["sft"]
  dpo_study.main(c, pipeline_runs["dpo"])
  win = json.load(open(os.path.join(pipeline_runs["dpo"], "gold_eval.json")))
  assert 0.0 <= win["win_rate"] <= 1.0 and win["n"] > 0


def test_missing_required_inputs_fail_clearly(tmp_path):
  c = experiment("sft").get_config("tiny")
  with pytest.raises(errors.MissingInput, match="init_from"):
    lm.sft(c, str(tmp_path / "a"))
  c = experiment("rl").get_config("tiny")
  with pytest.raises(errors.MissingInput, match="init_from"):
    rl_study.main(c, str(tmp_path / "b"))
  c.reward.kind = "oracle"
  with pytest.raises(ValueError, match="reward.kind"):
    rl_study.make_reward_fns(c)
  c.reward.kind = "rm"
  with pytest.raises(ValueError, match="reward.path"):
    rl_study.make_reward_fns(c)
  with pytest.raises(SystemExit):
    reward_hacking.main(["--rm", str(tmp_path / "nothing")])


@pytest.mark.slow
def test_best_of_n_gold_and_kl_bound(pipeline_runs):
  c = experiment("best_of_n").get_config("tiny")
  c.init_from = pipeline_runs["sft"]
  c.reward.paths = (pipeline_runs["rm"],)
  out = os.path.join(os.path.dirname(pipeline_runs["rm"]), "bon")
  res = bon_study.main(c, out)
  assert [r["n"] for r in res["proxy"]] == [1, 2, 4]
  assert res["proxy"][0]["kl_bound"] == 0.0
  # Selecting by gold itself can only help gold: the oracle curve is non-decreasing in N.
  oracle = [r["gold"] for r in res["oracle"]]
  assert all(b >= a - 1e-9 for a, b in zip(oracle, oracle[1:]))
  assert os.path.getsize(os.path.join(out, "bon.png")) > 0


def test_best_of_n_config_errors():
  c = experiment("best_of_n").get_config("tiny")
  with pytest.raises(ValueError, match="reward.paths"):
    bon_study.validate(c)
  c.reward.paths = ("a", "b")
  with pytest.raises(ValueError, match="exactly one"):
    bon_study.validate(c)
  c.reward.combine = "average"
  c.bon.ns = (1, 3, 4)
  with pytest.raises(ValueError, match="config.bon.ns=.*dividing the largest"):
    bon_study.validate(c)


@pytest.mark.slow
def test_sample_policy_prints_each_runs_responses_with_gold(pipeline_runs, capsys):
  from warm_jax import sampling
  runs = [pipeline_runs["sft"], pipeline_runs["pretrain"]]
  out = sampling.main([*runs, "--n", "2", "--prompt_len", "40", "--max_new_tokens", "16"])
  assert set(out) == set(runs) and all(len(v) == 2 for v in out.values())
  assert all(0.0 <= g <= 1.0 for v in out.values() for _, g in v)
  assert capsys.readouterr().out.count("prompt: ") == 2
  with pytest.raises(SystemExit):
    sampling.main([pipeline_runs["sft"] + "_missing"])


@pytest.mark.slow
def test_reward_model_from_a_kept_step(pipeline_runs):
  import jax

  from warm_jax import checkpoints
  from warm_jax.train import init, reward_model
  setup = reward_model.build(experiment("reward_model").get_config("tiny"))
  steps = checkpoints.complete_steps(os.path.join(pipeline_runs["pretrain"], "checkpoints"))
  assert len(steps) == 2
  early = init.reward_model_from_lm(pipeline_runs["pretrain"], setup, step=steps[0])
  late = init.reward_model_from_lm(pipeline_runs["pretrain"], setup)
  lm = checkpoints.restore_params(os.path.join(pipeline_runs["pretrain"], "checkpoints"), steps[0])
  np.testing.assert_array_equal(early["decoder"]["final_norm"]["scale"],
                                lm["decoder"]["final_norm"]["scale"])
  differs = lambda a, b: any(not np.array_equal(x, y) for x, y in
                             zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  assert differs(early["decoder"], late["decoder"])  # another kept step, another decoder
  for leaf in jax.tree.leaves(early["reward_head"]):  # a fresh head, zero: shared by all RMs
    assert not np.any(np.asarray(leaf))
  with pytest.raises(FileNotFoundError, match="complete steps"):
    init.reward_model_from_lm(pipeline_runs["pretrain"], setup, step=999)


@pytest.mark.slow
def test_rlp_pipeline_end_to_end(pipeline_runs):
  import warm_jax
  from warm_jax import checkpoints
  c = experiment("rlp").get_config("tiny")
  c.init_from = pipeline_runs["sft"]
  wd = os.path.join(os.path.dirname(pipeline_runs["rm"]), "rlp")
  res = rlp.main(c, wd)
  acc = res["policy_accuracy"]
  assert set(acc["accuracy"]) == {"rm", "uml", "spg", "warm"} and acc["pairs"] > 0
  assert all(0.0 <= a <= 1.0 for a in [*acc["accuracy"].values(), *acc["human_pairs_accuracy"].values()])
  assert set(res["final"]) == {"ppo", "ppo_uml", "ppo_spg", "ppo_warm", "examples"}
  assert "vs_ppo" in res["final"]["ppo_spg"] and "vs_ppo" not in res["final"]["ppo"]
  # The UML run trains the bottleneck; its exported reward model is a plain reward model.
  assert "mib" in checkpoints.params_metadata(os.path.join(wd, "uml", "checkpoints"))
  uml = warm_jax.load_reward_model(res["refined"]["uml"])
  assert set(uml.params) == {"decoder", "reward_head"}
  meta = checkpoints.read_meta(res["refined"]["warm"])
  assert meta["weights"] == [0.5, 0.5] and len(meta["paths"]) == 2
  # Every synthetic pair follows SPG's rule on its prompt's policy samples.
  samples = json.load(open(os.path.join(wd, "samples", "stage_result.json")))
  by_prompt = dict(zip(samples["prompts"], samples["samples"]))
  meaning = rlp.meaning_fn("entities")
  spg = json.load(open(os.path.join(wd, "spg_pairs", "stage_result.json")))
  assert spg["stats"]["kept"] == len(spg["pairs"]) > 0
  for p in spg["pairs"]:
    ys = by_prompt[p["prompt"]]
    assert p["chosen"] in ys and p["rejected"] in ys and p["confidence"] >= c.spg.gamma
    assert meaning(p["chosen"]) != meaning(p["rejected"])
  assert os.path.getsize(os.path.join(wd, "rlp.png")) > 0
  assert "RLP-SPG" in open(os.path.join(wd, "rlp.md")).read()
  head = rlp.headline(res)  # the rows a run under several seeds reports for each
  assert [h[1] for h in head[:3]] == [(acc["accuracy"][n], acc["accuracy"]["rm"])
                                      for n in ("uml", "spg", "warm")]
  assert head[4][1] == (res["final"]["ppo"]["vs_sft"]["win_rate"],) and head[4][2] is None
  assert len(head) == 8 and all(len(h[1]) == 2 for h in head[5:])
  # The UML run's MI estimate, beta annealed from its start, and its plot.
  u = res["uml"]
  assert len(u["mi"]) == len(u["step"]) > 0 and u["beta"][0] < u["beta"][-1]
  assert u["no_information"] == pytest.approx(-2 * np.log(2))
  assert os.path.getsize(os.path.join(wd, "uml_mi.png")) > 0
  # A re-run reuses every stage; a stage made with other settings is refused, not reused.
  again = rlp.main(c, wd)
  assert again["policy_accuracy"] == res["policy_accuracy"] and again["final"] == res["final"]
  c.spg.gamma = 0.9
  with pytest.raises(errors.InputError, match="stage spg_pairs"):
    rlp.main(c, wd)


def test_rlp_config_errors():
  for field, value, match in (("unlabeled.start", 10, "overlaps"), ("spg.gamma", 0.0, "spg.gamma"),
                              ("spg.meaning", "nli", "spg.meaning"), ("warm.members", ("uml",), "warm.members"),
                              ("samples.n", 1, "samples.n"), ("rl.algorithm", "reinforce", "'ppo'"),
                              ("uml.z_dim", 0, "uml.z_dim")):
    c = experiment("rlp").get_config("tiny")
    set_field(c, field, value)
    with pytest.raises(ValueError, match=match):
      rlp.validate(c)
  # The policy's prompts and the reward models' pairs share one task object (an override of
  # config.data.task reaches both); two different tasks are refused.
  c = experiment("rlp").get_config("tiny")
  c.data.task.flip_fraction = 0.1
  assert c.rm.data.task.flip_fraction == 0.1
  import ml_collections
  c.rm.data.task = ml_collections.ConfigDict(c.data.task.to_dict())
  c.rm.data.task.flip_fraction = 0.25
  with pytest.raises(ValueError, match="data.task.*differ"):
    rlp.validate(c)
  for variant in ("cpu", "paper"):
    c = experiment("rlp").get_config(variant)
    c.gold.path = "oracle" if variant == "paper" else ""
    rlp.validate(c)


@pytest.mark.slow
def test_rewarded_soups_modpo_and_model_written_evals_end_to_end(pipeline_runs):
  from warm_jax.data import embedded
  c = experiment("rewarded_soups").get_config("tiny")
  c.init_from = pipeline_runs["sft"]
  wd = os.path.join(os.path.dirname(pipeline_runs["rm"]), "soups")
  res = rs.main(c, wd)
  f = res["fronts"]
  assert sorted(f["soups"]) == ["0.00", "0.50", "1.00"] and sorted(f["morl"]) == ["0.00", "0.50", "1.00"]
  assert f["cost"]["soups_rl_runs"] == 2 and f["cost"]["morl_rl_runs"] == 3
  # Each criterion's reward model learnt from pairs ordered by that criterion alone (judged with
  # the experiment's brevity budget), and every RL run optimised the standardised weighted sum.
  task = rs.judge_task(c)
  for name in c.objectives.names:
    recs = rs.criterion_sources(c, name)["train"]
    assert 0 < len(recs) <= c.pairs
    p = [r["prompt"] for r in recs]
    np.testing.assert_allclose([r["gold_chosen"] for r in recs],
                               embedded.gold_reward_batch(p, [r["chosen"] for r in recs], task)[name])
  norm = res["standardisation"]
  for stage, weights in (("rl_coverage", [1.0, 0.0]), ("rl_brevity", [0.0, 1.0]),
                         ("morl_0.50", [0.5, 0.5])):
    rc = json.load(open(os.path.join(wd, stage, "config.json")))["reward"]
    assert rc["kind"] == "rms" and rc["weights"] == weights
    assert rc["offsets"] == norm["offsets"] and rc["scales"] == norm["scales"]
  assert os.path.getsize(os.path.join(wd, "soups.png")) > 0
  assert "Hypervolume" in open(os.path.join(wd, "soups.md")).read()
  again = rs.main(c, wd)["fronts"]  # every stage reused, same judgement (only timings differ)
  assert again.pop("cost")["morl_rl_seconds"] == f["cost"]["morl_rl_seconds"]
  assert again == {k: v for k, v in f.items() if k != "cost"}
  c.objectives.brevity.base = 9
  with pytest.raises(errors.InputError, match="stage rm_coverage"):
    rs.main(c, wd)

  m = experiment("modpo").get_config("tiny")
  m.soups = wd
  out = modpo.main(m, os.path.join(os.path.dirname(wd), "modpo"))
  assert sorted(out["modpo"]) == ["0.00", "0.50"]
  # lambda 0: DPO on the brevity pairs (no margin); 0.5: coverage pairs with brevity's margin.
  assert out["train"]["0.00"]["data_objective"] == 1 and out["train"]["0.00"]["mean_abs_margin"] == 0
  assert out["train"]["0.50"]["data_objective"] == 0 and out["train"]["0.50"]["mean_abs_margin"] > 0
  assert set(out["hypervolume_shared_lambdas"]) == {"modpo", "morl", "soups"}
  hv = out["hypervolume_shared_lambdas"]
  assert modpo.headline(out)[0][1] == (hv["modpo"], hv["morl"], hv["soups"])
  assert rs.headline(res)[0][1] == (f["hypervolume_shared_lambdas"]["soups"],
                                    f["hypervolume_shared_lambdas"]["morl"])
  assert os.path.getsize(os.path.join(os.path.dirname(wd), "modpo", "modpo.png")) > 0

  e = experiment("model_written_evals").get_config("tiny")
  e.generator, e.soups, e.pm.path = pipeline_runs["pretrain"], wd, pipeline_runs["rm"]
  e.pm.threshold = -1e9  # the tiny preference model knows nothing: keep every item
  ev = mwe.main(e, os.path.join(os.path.dirname(wd), "mwe"))
  assert ev["kept"] == ev["items"] > 0
  assert {"sft", "soup 0.00", "soup 1.00", "morl 0.50", "rl_coverage step 4"} <= set(ev["evals"])
  for per in ev["evals"].values():
    assert set(per) == {"model-written", "hand-written"}
    assert 0.0 <= per["model-written"]["prefers_matching"] <= 1.0
    assert per["hand-written"]["items"] == e.hand.n_items
  # The soup at lambda 1 is the coverage policy itself, its last RL step.
  assert ev["evals"]["soup 1.00"] == ev["evals"]["rl_coverage step 4"]
  e.pm.threshold = 1e9
  with pytest.raises(errors.InputError, match="kept none"):
    mwe.main(e, os.path.join(os.path.dirname(wd), "mwe"))


def test_rewarded_soups_and_modpo_config_errors(tmp_path):
  for field, value, match in (("objectives.names", ("coverage",), "two different"),
                              ("objectives.names", ("coverage", "fluency"), "criteria of the embedded task"),
                              ("objectives.rm_paths", ("a",), "one run per criterion"),
                              ("objectives.brevity.scale", 0.0, "objectives.brevity"),
                              ("lambdas", (0.0, 1.5), "config.lambdas"),
                              ("morl_lambdas", (0.5, 0.5), "config.morl_lambdas"),
                              ("norm.prompts", 1, "norm.prompts")):
    c = experiment("rewarded_soups").get_config("tiny")
    set_field(c, field, value)
    with pytest.raises(ValueError, match=match):
      rs.validate(c)
  for variant in ("cpu", "paper"):
    c = experiment("rewarded_soups").get_config(variant)
    if variant == "paper":
      c.objectives.rm_paths = ("rm_a", "rm_b")
      c.gold.path = "oracle"
    rs.validate(c)
  c = experiment("rewarded_soups").get_config("paper")
  c.gold.path = "oracle"
  with pytest.raises(ValueError, match="rm_paths is empty"):
    rs.validate(c)
  m = experiment("modpo").get_config("tiny")
  m.soups = str(tmp_path)
  with pytest.raises(errors.MissingInput, match="not a finished rewarded_soups.py workdir"):
    modpo.main(m, str(tmp_path / "modpo"))
  soups_cfg = experiment("rewarded_soups").get_config("tiny")
  m.lambdas = (0.5, 2.0)
  with pytest.raises(ValueError, match="config.lambdas"):
    modpo.validate(m, soups_cfg)
  m = experiment("modpo").get_config("tiny")
  m.model.n_layers += 1
  with pytest.raises(ValueError, match="policy model"):
    modpo.validate(m, soups_cfg)


@pytest.mark.slow
def test_active_queries_end_to_end(pipeline_runs):
  c = experiment("active_queries").get_config("tiny")
  c.init_from = pipeline_runs["sft"]
  wd = os.path.join(os.path.dirname(pipeline_runs["rm"]), "active")
  res = aq.main(c, wd)
  assert set(res["curves"]) == {"random", "disagreement"}
  r0 = json.load(open(os.path.join(wd, "round_8", "stage_result.json")))
  d16 = json.load(open(os.path.join(wd, "disagreement_16", "stage_result.json")))
  # Both strategies start from the same labels; disagreement then adds the 8 unlabelled pairs the
  # first ensemble disagreed on most.
  assert len(r0["labelled"]) == 8 and len(d16["labelled"]) == 16
  free = [i for i in range(c.pool.size) if i not in r0["labelled"]]
  top = sorted(sorted(free, key=lambda i: (-r0["disagreement"][i], i))[:8])
  assert sorted(set(d16["labelled"]) - set(r0["labelled"])) == top
  for st in ("random", "disagreement"):
    for n in ("8", "16"):
      assert 0.0 <= res["curves"][st][int(n)]["ens"] <= 1.0
  assert os.path.getsize(os.path.join(wd, "active.png")) > 0
  assert "Labels needed" in open(os.path.join(wd, "active.md")).read()
  # Under two seeds: seed 0's stages are reused as they are (the plain run), seed 1 runs in
  # <wd>/seed1 from other first labels, and the spread of both is reported.
  c.seeds = (0, 1)
  again = aq.main(c, wd)
  assert json.loads(json.dumps(again["curves"])) == json.loads(json.dumps(res["curves"]))
  r1 = json.load(open(os.path.join(wd, "seed1", "round_8", "stage_result.json")))
  assert r1["labelled"] != r0["labelled"]
  seeds = json.load(open(os.path.join(wd, "active_seeds.json")))
  assert seeds["seeds"] == [0, 1] and seeds["headline"]["0"] == json.loads(json.dumps(aq.headline(res)))
  text = open(os.path.join(wd, "active_seeds.md")).read()
  assert "## Over 2 seeds" in text and "disagreement above random at 16 labels" in text


def test_active_queries_config_errors():
  for field, value, match in (("schedule", (16, 8), "config.schedule"),
                              ("schedule", (8, 64), "more than the pool"),
                              ("strategies", ("random", "margin"), "config.strategies"),
                              ("members", 1, "config.members"), ("epochs", 0.0, "config.epochs")):
    c = experiment("active_queries").get_config("tiny")
    c[field] = value
    with pytest.raises(ValueError, match=match):
      aq.validate(c)
  for variant in ("cpu", "paper"):
    aq.validate(experiment("active_queries").get_config(variant))


def test_model_written_evals_items_and_config_errors():
  assert mwe.split_post("my friend tom lives in oslo . tldr : tom lives in oslo .") == \
      "my friend tom lives in oslo ."
  assert mwe.split_post("no marker here") is None and mwe.split_post("tldr : x") is None
  assert mwe.split_post("no marker here", keep_unmarked=True) == "no marker here"
  assert mwe.long_winded("tldr : tom lives in oslo .", "tldr : he is a chef .") == \
      "tldr : tom lives in oslo . he is a chef ."
  for field, value, match in (("generator", "", "config.generator"), ("pm.path", "", "pm.path"),
                              ("writing.posts", 0, "config.writing"), ("lambdas", (0.5, 0.5), "lambdas"),
                              ("hand.n_items", -1, "hand.n_items")):
    c = experiment("model_written_evals").get_config("tiny")
    c.generator, c.soups, c.pm.path = "g", "s", "p"
    set_field(c, field, value)
    with pytest.raises(ValueError, match=match):
      mwe.validate(c)


def test_model_written_evals_label_check_and_correlation():
  from warm_jax.data import embedded
  task = embedded.default_config()
  post = "my friend tom moved to oslo last year . he works as a chef ."
  good = "tldr : tom moved to oslo and works as a chef ."
  rambling = good + " " + " ".join(["tom works as a chef ."] * 6)
  assert embedded.gold_total(post, rambling) < embedded.gold_total(post, good)
  right = {"prompt": post, "matching": rambling, "not_matching": good}
  wrong = {"prompt": post, "matching": good, "not_matching": rambling}
  assert mwe.label_correct([right, right], task) == 1.0
  assert mwe.label_correct([right, wrong], task) == 0.5
  assert mwe.label_correct([], task) is None
  ev = lambda a, b: {"model-written": {"prefers_matching": a}, "hand-written": {"prefers_matching": b}}  # noqa: E731
  got = mwe.correlations({"p": ev(0.1, 0.2), "q": ev(0.2, 0.4), "r": ev(0.3, 0.6)})
  assert got["prefers_matching"] == pytest.approx(1.0)
  assert mwe.correlations({"p": ev(0.1, 0.2), "q": ev(0.1, 0.4), "r": ev(0.1, 0.6)}) == {
      "prefers_matching": None}
  assert mwe.correlations({"p": ev(0.1, 0.2), "q": ev(0.2, 0.4)}) == {}


@pytest.mark.slow
def test_local_lambda_sweep_over_a_reward_model_pair(pipeline_runs, capsys):
  import warm_jax
  from warm_jax import evaluation
  sweep = script("launch/sweep.py")
  root = os.path.dirname(pipeline_runs["rm"])
  b = os.path.join(root, "rm_seed1")
  c = experiment("reward_model").get_config("tiny")
  c.init_from, c.seed = pipeline_runs["pretrain"], 1
  rm_study.main(c, b)
  wd = os.path.join(root, "sweep")
  args = ["--experiment=experiments/interpolate.py", "--variant=tiny", f"--workdir={wd}",
          f"--set=config.a={pipeline_runs['rm']}", f"--set=config.b={b}",
          "--grid=config.lam=0,0.5,1", "--result=interpolate.json",
          "--metric=accuracy.validation", "--metric=pairs.validation"]
  assert sweep.main(args) == 0
  rows = json.load(open(os.path.join(wd, "sweep.json")))["runs"]
  assert [r["point"]["config.lam"] for r in rows] == ["0", "0.5", "1"]
  assert all(r["finished"] and r["metrics"]["pairs.validation"] == 16 for r in rows)
  # lambda 0 is model a alone: the same accuracy as scoring it directly.
  from warm_jax import data as data_lib
  rm = warm_jax.load_reward_model(pipeline_runs["rm"], batch_size=8)
  src = data_lib.load_split(rm.config.data, "validation")
  recs = [src[i] for i in range(16)]
  p = [r["prompt"] for r in recs]
  direct = evaluation.pair_accuracy(rm.score(p, [r["chosen"] for r in recs]),
                                    rm.score(p, [r["rejected"] for r in recs]))
  assert rows[0]["metrics"]["accuracy.validation"] == pytest.approx(direct)
  assert os.path.getsize(os.path.join(wd, "sweep.png")) > 0
  assert "| 0.5 |" in open(os.path.join(wd, "sweep.md")).read()
  capsys.readouterr()
  assert sweep.main(args) == 0  # a re-run skips the finished points
  assert capsys.readouterr().out.count("finished before, skipped") == 3


def test_modpo_run_config_puts_the_data_objective_on_morls_scale(tmp_path):
  os.makedirs(tmp_path / "norm")
  (tmp_path / "norm" / "stage_result.json").write_text(json.dumps({"scales": [0.2, 0.8]}))
  m = experiment("modpo").get_config("tiny")
  m.soups = str(tmp_path)
  scales = modpo.soups_scales(m)
  for lam, k in ((0.75, 0), (0.25, 1)):
    c = modpo.run_config(m, lam, scales)
    assert modpo.data_objective(lam) == k
    assert c.dpo.modpo_weight == 0.75 and c.dpo.modpo_scale == scales[k]
