"""`python -m warm_jax.evaluate`: RewardBench v1 and v2 read from the dummy Parquet files end to
end and scored by tiny reward models (each, WARM, ENS, an imported Hugging Face one), the
embedded task's splits with calibration, length bias and ENS uncertainty, and its bad input."""

import json
import os
import re

import pytest
from conftest import data_dir, make_rm
from test_real_builders import build

from warm_jax import evaluate, rm_eval, scoring
from warm_jax.errors import EXIT_BAD_INPUT

HF_TOKENIZER = os.path.join(os.path.dirname(__file__), "fixtures", "hf", "tokenizer")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  """Two tiny reward models, the two RewardBench dummy builds, and an HF export of a third."""
  root = tmp_path_factory.mktemp("evaluate")
  for name in ("reward_bench", "reward_bench_2"):
    build(name, root / "data")
  from warm_jax import checkpoints
  from warm_jax.pretrained import export_hf
  hf_src = make_rm(root / "hf_src", seed=2, bias=0.0, vocab_size=320)
  cfg = checkpoints.read_meta(hf_src)["config"]
  import ml_collections
  export_hf(checkpoints.restore_params(hf_src), ml_collections.ConfigDict(cfg["model"]),
            str(root / "hf"), tokenizer_dir=HF_TOKENIZER)
  return {"a": make_rm(root / "a", seed=0), "b": make_rm(root / "b", seed=1),
          "hf": str(root / "hf"), "data": str(root / "data"), "root": root}


def _close(got, expected, path="") -> None:
  """Nested dicts / lists equal, numbers to 1e-6 (pytest.approx takes no nesting)."""
  if isinstance(expected, dict):
    assert set(got) == set(expected), path
    for k in expected:
      _close(got[k], expected[k], f"{path}/{k}")
  elif isinstance(expected, (list, tuple)):
    assert len(got) == len(expected), path
    for i, (g, e) in enumerate(zip(got, expected)):
      _close(g, e, f"{path}/{i}")
  elif isinstance(expected, float):
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-6, nan_ok=True), path
  else:
    assert got == expected, path


def test_rewardbench_v1_each_warm_and_ens_match_rm_eval_on_the_scorers_rewards(env, tmp_path):
  out = str(tmp_path / "out")
  assert evaluate.main(["--bench", "rewardbench_v1", "--data_dir", env["data"], "--rm", env["a"],
                        "--rm", env["b"], "--combine", "each", "average", "ensemble",
                        "--batch_size", "8", "--out", out]) == 0
  result = json.load(open(os.path.join(out, "rm_eval.json")))
  assert [m["name"] for m in result["models"]] == ["a", "b", "ENS", "WARM"]
  from warm_jax.data.builders import registry
  recs = list(registry.load_split("reward_bench", "filtered", env["data"]))
  prompts = [r["prompt"] for r in recs]
  members = scoring.load_reward_models([env["a"], env["b"]], batch_size=8)
  rewards = {n: (m.score(prompts, [r["chosen"] for r in recs]),
                 m.score(prompts, [r["rejected"] for r in recs])) for n, m in zip("ab", members)}
  ens = scoring.load_ensemble([env["a"], env["b"]], batch_size=8)
  rewards["ENS"] = tuple(ens.score(prompts, [r[s] for r in recs]) for s in ("chosen", "rejected"))
  warm = scoring.load_averaged([env["a"], env["b"]], batch_size=8)
  rewards["WARM"] = tuple(warm.score(prompts, [r[s] for r in recs]) for s in ("chosen", "rejected"))
  subsets = [r["subset"] for r in recs]
  for name, (rc, rr) in rewards.items():
    got = result["metrics"][name]["filtered"]
    _close(got["rewardbench"], rm_eval.v1_scores(subsets, rc, rr), name)
    assert got["accuracy"] == pytest.approx(rm_eval.pair_results(rc, rr).mean())
    assert got["ece"] == pytest.approx(rm_eval.reliability(rc, rr)["ece"], abs=1e-5)
  assert set(result["uncertainty"]["filtered"]) >= {"auroc_variance", "auroc_margin", "bins"}
  md = open(os.path.join(out, "rm_eval.md")).read()
  assert "### RewardBench v1 (filtered)" in md and "| **Chat Hard** |" in md
  assert os.path.getsize(os.path.join(out, "rm_eval.png")) > 0


def test_rewardbench_v2_with_an_imported_hf_model_and_chat_template(env, tmp_path):
  out = str(tmp_path / "out")
  assert evaluate.main(["--bench", "rewardbench_v2", "--data_dir", env["data"], "--rm",
                        f"HF={env['hf']}", "--chat_template", "--max_len", "48",
                        "--batch_size", "8", "--out", out]) == 0
  result = json.load(open(os.path.join(out, "rm_eval.json")))
  rb = result["metrics"]["HF"]["test"]["rewardbench"]
  assert set(rb["subsets"]) == set(rm_eval.V2_SUBSETS) and rb["missing"] == []
  assert rb["ties"]["ref_prompts"] == rb["ties"]["tied_prompts"] == rb["ties"]["paired_prompts"] == 1
  # The same scores from the scorer by hand: chat-formatted answers, the chosen first.
  from warm_jax.data.builders import registry
  rm = scoring.load_hf_reward_model(env["hf"], max_len=48, batch_size=8)
  recs = list(registry.load_split("reward_bench_2", "test", env["data"]))
  scores = []
  for r in recs:
    pairs = [evaluate.chat_texts(rm.tokenizer, r["prompt"], a) for a in r["chosen"] + r["rejected"]]
    scores.append(rm.score([p for p, _ in pairs], [a for _, a in pairs]))
  expected = rm_eval.v2_scores([r["subset"] for r in recs], [r["id"] for r in recs], scores,
                               [len(r["chosen"]) for r in recs])
  _close(rb, expected)
  assert not os.path.exists(os.path.join(out, "rm_eval.png"))  # no pairwise set: no plot
  head, answer = evaluate.chat_texts(rm.tokenizer, "Hi?", "Hello.")
  assert (head, answer) == ("<|user|>Hi?\n<|assistant|>", "Hello.</s>\n")  # bos left to the scorer


def test_bad_input_is_refused_naming_what(env, tmp_path, capsys):
  common = ["--bench", "rewardbench_v1", "--data_dir", env["data"], "--batch_size", "8"]
  cases = [
      (["--rm", env["a"], "--combine", "average"], "--combine average needs two or more --rm"),
      (["--rm", env["a"], "--rm", f"a={env['b']}"], "two models are labelled 'a'"),
      (["--rm", env["a"], "--rm", env["hf"], "--combine", "ensemble"],
       "--rm hf: its tokenizer .* is not the one of --rm a"),
      (["--rm", env["a"], "--rm", env["hf"], "--combine", "average"],
       "a weight average needs warm_jax checkpoints"),
      (["--rm", str(tmp_path / "nope")], "no such directory"),
      (["--rm", env["a"], "--weights", "1", "2"], "--weights: one weight per --rm"),
      (["--rm", env["a"], "--mesh_shape", "3,1,1"], "--mesh_shape: mesh.shape=\\(3, 1, 1\\)"),
      (["--rm", env["a"], "--store_norm", "test"], "--store_norm 'test': rewardbench_v1 has the one "
       "split 'filtered'"),
  ]
  for argv, match in cases:
    assert evaluate.main(common + argv) == EXIT_BAD_INPUT, argv
    assert re.search(match, capsys.readouterr().err), (argv, match)
  page = tmp_path / "page.md"
  page.write_text("no markers\n")
  assert evaluate.main(common + ["--rm", env["a"], "--out", str(tmp_path / "o"),
                                 "--publish", str(page)]) == EXIT_BAD_INPUT
  assert "the page must hold <!-- rm-eval:begin -->" in capsys.readouterr().err


@pytest.mark.slow
def test_embedded_splits_with_flips_ens_uncertainty_stored_norm_and_publish(tmp_path):
  """The embedded task (tiny): clean and corrupted training pairs, ENS's uncertainty, statistics
  stored with each member, the tables and plot published into a page."""
  from warm_jax import reward_norm
  with data_dir(tmp_path / "data"):
    a, b = make_rm(tmp_path / "a", seed=0), make_rm(tmp_path / "b", seed=1)
    page = tmp_path / "docs" / "rm_eval.md"
    page.parent.mkdir()
    page.write_text(f"# Page\n\ntext\n\n{evaluate.BEGIN}\nold\n{evaluate.END}\n\nafter\n")
    out = str(tmp_path / "out")
    assert evaluate.main(["--bench", "embedded", "--rm", a, "--rm", b, "--combine", "each",
                          "ensemble", "--splits", "validation", "train", "--train_examples", "48",
                          "--batch_size", "16", "--store_norm", "validation", "--out", out,
                          "--publish", str(page), "--extra", f"WARM={a}"]) == 0
    result = json.load(open(os.path.join(out, "rm_eval.json")))
    # an extra model named WARM (a WARM checkpoint) is one row of each table, after ENS
    assert [m["name"] for m in result["models"]] == ["a", "b", "ENS", "WARM"]
    md = open(os.path.join(out, "rm_eval.md")).read()
    assert md.count("\n| WARM |") == md.count("\n| ENS |") > 0
    assert list(result["sets"]) == ["validation", "train_clean", "train_corrupted"]
    assert result["sets"]["train_clean"]["records"] + result["sets"]["train_corrupted"]["records"] == 48
    assert result["sets"]["train_corrupted"]["records"] > 0
    assert set(result["uncertainty"]) == {"validation", "train_clean", "train_corrupted"}
    for path in (a, b):
      norm = reward_norm.read(path)
      assert norm.reference["split"] == "validation" and norm.reference["records"] == 32
      assert result["stored_norm"][os.path.basename(path)]["mean"] == norm.mean
    text = page.read_text()
    assert text.startswith("# Page\n\ntext\n\n<!-- rm-eval:begin -->\n### Reward models on")
    assert "old" not in text and text.endswith("<!-- rm-eval:end -->\n\nafter\n")
    assert "![reliability: confidence vs accuracy](figures/rm_eval_reliability.png)" in text
    assert (tmp_path / "docs" / "figures" / "rm_eval_reliability.png").stat().st_size > 0
