"""TFDS builders of the papers' real data sets, built from small dummy files in the real formats.

The download is mocked the way TFDS's own `DatasetBuilderTestCase` does it (which needs TensorFlow,
so it is not used itself): `DownloadManager.download` / `download_and_extract` are patched to
return, for each requested URL, the dummy file of the same published name under
`tests/dummy_data/<data set>/` (the `DUMMY` rules below play the part of `DL_EXTRACT_RESULT`).
Everything else is the real TFDS path: `download_and_prepare(file_format='array_record')`, then
`as_data_source` through `registry.load_split`. Malformed files are written in tmp dirs.
"""

import gzip
import json
import lzma
import os
import sys
from unittest import mock

import pytest
import tensorflow_datasets as tfds

from warm_jax.data import schema
from warm_jax.data.builders import alpaca_farm, base, hh_rlhf, registry, tldr_comparisons

DUMMY_ROOT = os.path.join(os.path.dirname(__file__), "dummy_data")

# url -> path of the dummy file, relative to tests/dummy_data/<data set>/.
DUMMY = {
    "tldr_comparisons": lambda url: url.rsplit("/", 1)[1],
    "tldr_sft": lambda url: url.rsplit("/", 1)[1],
    "hh_rlhf": lambda url: url.split(f"/resolve/{hh_rlhf.REVISION}/", 1)[1],
    "alpaca_farm": lambda url: url.split(f"/resolve/{alpaca_farm.REVISION}/", 1)[1],
    "imdb": lambda url: url.rsplit("/", 1)[1],
    # <repo name>/<path in the repo>, the revision dropped
    "beavertails": lambda url: "/".join(
        [url.split("PKU-Alignment/", 1)[1].split("/", 1)[0]] + url.split("/resolve/", 1)[1].split("/")[1:]),
    "reward_bench": lambda url: url.rsplit("/", 1)[1],
    "reward_bench_2": lambda url: url.rsplit("/", 1)[1],
}

# The dummy TL;DR batches (the builder lists all 20 real ones).
TLDR_DUMMY_BATCHES = ("batch3", "batch10", "batch22")

EXPECTED = {  # name -> {split: number of dummy records}
    "tldr_comparisons": {"train": 4, "valid1": 2, "valid2": 2},
    "tldr_sft": {"train": 3, "valid": 2, "test": 2},
    "hh_rlhf/helpful_base": {"train": 3, "test": 2},
    "alpaca_farm/human_preference": {"train": 3},
    "alpaca_farm/instructions": {"sft": 2, "preference": 2, "unlabeled": 2, "val": 2,
                                 "evaluation": 2},
    "imdb": {"train": 3, "test": 2, "unsupervised": 2},
    "beavertails/safe_rlhf_10k": {"train": 4},
    "beavertails/safe_rlhf_alpaca7b_safer": {"train": 2, "test": 2},
    "reward_bench": {"filtered": 6},
    "reward_bench_2": {"test": 7},
}


class FakeDownloads:
  """Stands in for the network: maps each requested URL to a file under `root`."""

  def __init__(self, dataset, root=None):
    self.rule = DUMMY[dataset]
    self.root = root or os.path.join(DUMMY_ROOT, dataset)
    self.urls = []

  def _one(self, url):
    self.urls.append(url)
    path = os.path.join(self.root, self.rule(url))
    if not os.path.exists(path):
      raise FileNotFoundError(f"no dummy file {path} for {url}")
    return tfds.core.Path(path)

  def __call__(self, url_or_urls):
    if isinstance(url_or_urls, dict):
      return {k: self._one(u) for k, u in url_or_urls.items()}
    if isinstance(url_or_urls, (list, tuple)):
      return [self._one(u) for u in url_or_urls]
    return self._one(url_or_urls)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
  monkeypatch.setattr(base, "VERIFY_SHA256", False)  # dummy files are not the published ones
  monkeypatch.setattr(tldr_comparisons, "URLS",
                      {b: tldr_comparisons.URLS[b] for b in TLDR_DUMMY_BATCHES})


def build(name, data_dir, root=None):
  """Prepares `name` from dummy files into `data_dir`; returns the URLs the builder asked for."""
  fake = FakeDownloads(name.split("/")[0], root)
  def patched(dl_manager, url_or_urls):  # a plain function, so it binds as a method
    del dl_manager
    return fake(url_or_urls)
  with mock.patch.multiple(tfds.download.DownloadManager, download=patched,
                           download_and_extract=patched):
    registry.get_builder(name, str(data_dir))
  return fake.urls


# ------------------------------------------------------------------------------- every builder
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_builds_from_dummy_files_into_array_record_and_loads_common_schema(name, tmp_path):
  urls = build(name, tmp_path)
  assert urls and all(u.startswith(("https://", "http://")) for u in urls)
  builder = registry.get_builder(name, str(tmp_path), prepare=False)
  assert builder.is_prepared()
  assert builder.info.file_format == tfds.core.file_adapters.FileFormat.ARRAY_RECORD
  assert any(f.endswith(".array_record") or ".array_record-" in f
             for f in os.listdir(builder.data_dir))
  assert {s: builder.info.splits[s].num_examples for s in builder.info.splits} == EXPECTED[name]
  kind = builder.KIND
  ids = set()
  for split, n in EXPECTED[name].items():
    src = registry.load_split(name, split, str(tmp_path))
    assert len(src) == n
    records = list(src)
    assert records == src[0:n] == src.__getitems__(range(n))
    for i, r in enumerate(records):
      assert schema.validate_record(r, source=name, index=i, kind=kind) is r
      assert all(isinstance(v, (str, int, bool, dict, list)) for v in r.values()), r
      for f in schema.REQUIRED_FIELDS[kind]:
        assert isinstance(r[f], str) and r[f].strip()
      ids.add(r["id"])
  assert len(ids) == sum(EXPECTED[name].values())  # ids unique across splits


def test_no_tensorflow_needed_to_build_and_read(tmp_path):
  build("hh_rlhf/helpful_base", tmp_path)
  registry.load_split("hh_rlhf/helpful_base", "train", str(tmp_path))[0]
  assert "tensorflow" not in sys.modules


# ------------------------------------------------------------------------------- content checks
def test_tldr_comparisons_choice_prompt_and_splits(tmp_path):
  urls = build("tldr_comparisons", tmp_path)
  assert urls == [tldr_comparisons.BASE_URL + f"{b}.json" for b in TLDR_DUMMY_BATCHES]
  r = registry.load_split("tldr_comparisons", "train", str(tmp_path))[1]  # batch3 line 2, choice 1
  assert r["id"] == "batch3.json:2"
  assert r["prompt"].startswith("SUBREDDIT: r/cats\n\nTITLE: Shy new cat, question 1\n\nPOST: ")
  assert r["prompt"].endswith("\n\nTL;DR:")
  assert r["chosen"] == "I have a cat. (1)" and r["rejected"].startswith("New cat hides")
  assert r["batch"] == "batch3" and r["confidence"] == -1
  v2 = registry.load_split("tldr_comparisons", "valid2", str(tmp_path))
  assert [x["id"] for x in v2] == ["batch22.json:1", "batch22.json:2"]


def test_tldr_sft_prompt_and_response(tmp_path):
  build("tldr_sft", tmp_path)
  r = registry.load_split("tldr_sft", "valid", str(tmp_path))[0]
  assert r["id"] == "valid.jsonl:1" and r["post_id"] == "t3_sft3"
  assert r["subreddit"] == "relationships"
  assert r["prompt"].startswith("SUBREDDIT: r/relationships\n\nTITLE:") and "5 meetups" in r["prompt"]
  assert r["response"].startswith("Friend cancels plans")


def test_hh_rlhf_splits_shared_dialogue_from_final_reply(tmp_path):
  urls = build("hh_rlhf/helpful_base", tmp_path)
  assert sorted(urls) == sorted(hh_rlhf.url("helpful-base", s) for s in ("train", "test"))
  r = registry.load_split("hh_rlhf", "train", str(tmp_path))[1]  # default config: helpful_base
  assert r["id"] == "helpful-base/train.jsonl.gz:2"
  assert r["prompt"] == ("Human: What is a good name for a goldfish? (1)\n\nAssistant: How about "
                         "Bubbles?\n\nHuman: Something less common, please.\n\nAssistant:")
  assert r["chosen"] == "Maybe Captain Fin, or Marigold. (1)" and r["rejected"] == "I don't know."


def test_hh_rlhf_all_reads_the_four_subsets(tmp_path):
  # Every subset mapped onto the helpful-base dummy files (same format).
  rule = lambda url: "helpful-base/" + url.rsplit("/", 1)[1]  # noqa: E731
  with mock.patch.dict(DUMMY, {"hh_rlhf": rule}):
    urls = build("hh_rlhf/all", tmp_path)
  assert sorted(urls) == sorted(hh_rlhf.url(s, x) for s in hh_rlhf.SUBSETS for x in ("train", "test"))
  train = registry.load_split("hh_rlhf/all", "train", str(tmp_path))
  assert len(train) == 12 and len({r["id"] for r in train}) == 12
  assert train[11]["id"] == "helpful-rejection-sampled/train.jsonl.gz:3"


def test_known_checksums_are_checked_during_the_build(tmp_path, monkeypatch):
  monkeypatch.setattr(base, "VERIFY_SHA256", True)
  with pytest.raises(ValueError, match=r"train.jsonl.gz \(downloaded from https://huggingface.co/"
                                       r".*\) has SHA-256 [0-9a-f]{64}, expected 518a5bf2"):
    build("hh_rlhf/helpful_base", tmp_path)


def test_alpaca_farm_preference_2_means_output_2(tmp_path):
  build("alpaca_farm/human_preference", tmp_path)
  src = registry.load_split("alpaca_farm/human_preference", "train", str(tmp_path))
  assert (src[0]["chosen"], src[1]["chosen"]) == ("Joyful (0)", "Sad (1)")
  assert "### Input:\nUse one word." in src[0]["prompt"] and "### Input:" not in src[1]["prompt"]
  assert src[0]["prompt"].endswith("### Response:")


def test_beavertails_labels_follow_the_primary_objective(tmp_path):
  build("beavertails/safe_rlhf_10k", tmp_path)
  build("beavertails/safe_rlhf_10k_safer", tmp_path)
  better = registry.load_split("beavertails/safe_rlhf_10k", "train", str(tmp_path))
  safer = registry.load_split("beavertails/safe_rlhf_10k_safer", "train", str(tmp_path))
  # dummy (better_id, safer_id): (0,0) (1,0) (1,1) (0,1)
  assert [r["labels"] for r in better] == [{"better": 0, "safer": s} for s in (0, 1, 0, 1)]
  assert [r["labels"] for r in safer] == [{"better": b, "safer": 0} for b in (0, 1, 0, 1)]
  assert better[1]["chosen"].startswith("Try common default") and safer[1]["chosen"].startswith("Ask")
  assert (better[1]["is_chosen_safe"], better[1]["is_rejected_safe"]) == (False, True)


def test_imdb_prefix_prompts_with_sentiment(tmp_path):
  build("imdb", tmp_path)
  train = {r["id"]: r for r in registry.load_split("imdb", "train", str(tmp_path))}
  assert set(train) == {"train/pos/0_9", "train/pos/1_8", "train/neg/2_1"}
  r = train["train/pos/0_9"]
  assert r["prompt"] == "A warm, funny film with a great cast."
  assert r["response"].startswith("I laughed") and "<br" not in r["response"]
  assert (r["sentiment"], r["rating"]) == (1, 9) and train["train/neg/2_1"]["sentiment"] == 0
  short = registry.load_split("imdb", "test", str(tmp_path))
  assert {x["prompt"] for x in short} >= {"Too long"}  # 5 words: 2-word prefix, rest as response
  assert {x["sentiment"] for x in registry.load_split("imdb", "unsupervised", str(tmp_path))} == {-1}


def test_reward_bench_v1_records_carry_their_subset(tmp_path):
  urls = build("reward_bench", tmp_path)
  from warm_jax.data.builders import reward_bench
  assert urls == [reward_bench.V1_URL]
  src = registry.load_split("reward_bench", "filtered", str(tmp_path))
  assert [r["subset"] for r in src] == ["alpacaeval-easy", "mt-bench-hard", "xstest-should-respond",
                                         "xstest-should-refuse", "math-prm", "hep-python"]
  r = src[4]
  assert (r["id"], r["prompt"], r["chosen"], r["rejected"]) == (
      "34", "What is 12 * 12?", "12 * 12 = 144.", "12 * 12 = 124.")
  assert (r["chosen_model"], r["rejected_model"]) == ("GPT4-Turbo", "Llama-2-7b-chat")


def test_reward_bench_2_ranking_records_keep_their_lists(tmp_path):
  urls = build("reward_bench_2", tmp_path)
  from warm_jax.data.builders import reward_bench
  assert urls == [reward_bench.V2_URL]
  src = registry.load_split("reward_bench_2", "test", str(tmp_path))
  by_id = {r["id"]: r for r in src}
  assert by_id["tied:1"] == {"id": "tied:1", "prompt": "Name a color of the rainbow.",
                             "chosen": ["Red", "Green", "Blue"], "rejected": ["Pink", "Brown"],
                             "subset": "Ties"}
  assert by_id["f-1"]["chosen"] == ["William Shakespeare wrote Hamlet."]
  assert len(by_id["f-1"]["rejected"]) == 3
  for i, r in enumerate(src):
    assert schema.validate_record(r, source="rb2", index=i, kind=schema.RANKING) is r


def _reward_bench_rows(version):
  from conftest import script
  make = script("tests/dummy_data/make_reward_bench.py")
  return (make.v1_table() if version == 1 else make.v2_table()).to_pylist()


def _write_parquet(path, rows):
  import pyarrow as pa
  import pyarrow.parquet as pq
  os.makedirs(os.path.dirname(path), exist_ok=True)
  pq.write_table(pa.Table.from_pylist(rows), path)
  return path


def _set(i, **fields):
  """An edit of the dummy rows: row i's fields set (None: a null in the column)."""
  def edit(rows):
    rows[i].update(fields)
    return rows
  return edit


def _every(field, fn):
  """An edit of the dummy rows: `field` of every row replaced by fn(value) (a column of another
  type: Parquet columns have one type)."""
  return lambda rows: [{**r, field: fn(r[field])} for r in rows]


@pytest.mark.parametrize("version, edit, message", [
    (1, _set(2, subset=None), "record 2: field 'subset' must be str, got NoneType"),
    (1, _set(2, subset="chat-hard"), "record 2: field 'subset'='chat-hard' is not one"),
    (1, _set(2, chosen=""), "record 2: field 'chosen' is empty"),
    (1, _every("id", str), "record 0: field 'id' must be int, got str"),
    (2, _every("chosen", lambda v: v[0]), "record 0: field 'chosen' must be list, got str"),
    (2, _set(2, rejected=[]), "record 2: field 'rejected' is an empty list"),
    (2, _set(2, rejected=["Pink", " "]), "record 2: field 'rejected/1' is empty"),
    (2, _set(2, num_correct=2), "record 2: field 'num_correct'=2 but len(chosen) is 1"),
    (2, _set(2, subset="ties"), "record 2: field 'subset'='ties' is not one"),
])
def test_malformed_reward_bench_rows_name_file_record_and_field(tmp_path, version, edit, message):
  name = "reward_bench" if version == 1 else "reward_bench_2"
  fname = "filtered-00000-of-00001.parquet" if version == 1 else "test-00000-of-00001.parquet"
  bad = _write_parquet(str(tmp_path / "raw" / fname), edit(_reward_bench_rows(version)))
  with pytest.raises(ValueError) as e:
    build(name, tmp_path / "data", root=str(tmp_path / "raw"))
  assert f"{bad}, {message}" in str(e.value)


def test_reward_bench_file_that_is_not_parquet_or_lacks_a_column(tmp_path):
  bad = _write(str(tmp_path / "raw" / "test-00000-of-00001.parquet"), b'{"id": "x"}\n')
  with pytest.raises(ValueError, match=rf"{bad}: not a readable Parquet file"):
    build("reward_bench_2", tmp_path / "d1", root=str(tmp_path / "raw"))
  rows = [{k: v for k, v in r.items() if k != "num_incorrect"} for r in _reward_bench_rows(2)]
  _write_parquet(bad, rows)
  with pytest.raises(ValueError, match=rf"{bad}, record 0: field 'num_incorrect' is missing"):
    build("reward_bench_2", tmp_path / "d2", root=str(tmp_path / "raw"))


def test_ranking_records_are_validated_as_asked():
  ok = {"id": "a", "prompt": "p", "chosen": ["c"], "rejected": ["r1", "r2"]}
  assert schema.validate_record(ok, source="f", index=3, kind="ranking") is ok
  for rec, msg in [
      ({**ok, "chosen": "c"}, "field 'chosen' must be a list of str, got str"),
      ({**ok, "rejected": []}, "field 'rejected' is an empty list"),
      ({**ok, "chosen": ["c", 3]}, "field 'chosen/1' must be a str, got int"),
      ({k: v for k, v in ok.items() if k != "rejected"}, "field 'rejected' is missing"),
      ({**ok, "labels": {"x": 0}}, "field 'labels' is only allowed on preference records")]:
    with pytest.raises(ValueError, match=f"f, record 3: {msg}"):
      schema.validate_record(rec, source="f", index=3, kind="ranking")
  # Never inferred: a record with lists is not a preference record.
  with pytest.raises(ValueError, match="field 'chosen' must be a str, got list"):
    schema.validate_record(ok, source="f", index=3)


# ------------------------------------------------------------------------------- malformed records
def _write(path, data: bytes):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(data)
  return path


def _jl(rows):
  return "".join(json.dumps(r) + "\n" for r in rows).encode()


HH_OK = {"chosen": "\n\nHuman: Hi?\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hi?\n\nAssistant: Go."}


@pytest.mark.parametrize("bad, field", [
    ({"chosen": HH_OK["chosen"]}, "'rejected' is missing"),
    ({"chosen": "\n\nHuman: Hi?\n\nAssistant:   ", "rejected": HH_OK["rejected"]}, "'chosen' is empty"),
    ({"chosen": HH_OK["chosen"], "rejected": 3}, "'rejected' must be str"),
    ({"chosen": HH_OK["chosen"], "rejected": "\n\nHuman: Bye?\n\nAssistant: Go."}, "'rejected' does not share"),
])
def test_malformed_hh_record_names_file_record_and_field(tmp_path, bad, field):
  root = tmp_path / "raw"
  _write(str(root / "helpful-base/test.jsonl.gz"), gzip.compress(_jl([HH_OK])))
  train = _write(str(root / "helpful-base/train.jsonl.gz"), gzip.compress(_jl([HH_OK, HH_OK, bad])))
  with pytest.raises(ValueError) as e:
    build("hh_rlhf/helpful_base", tmp_path / "data", root=str(root))
  assert f"{train}, record 3: field {field}" in str(e.value)
  assert not registry.get_builder("hh_rlhf/helpful_base", str(tmp_path / "data"),
                                  prepare=False).is_prepared()


def test_filtered_hh_config_drops_malformed_pairs_and_lists_them(tmp_path):
  root = tmp_path / "raw"
  _write(str(root / "helpful-base/test.jsonl.gz"), gzip.compress(_jl([HH_OK])))
  bad = {"chosen": "\n\nHuman: Hi?\n\nAssistant:", "rejected": HH_OK["rejected"]}
  train = _write(str(root / "helpful-base/train.jsonl.gz"), gzip.compress(_jl([HH_OK, bad, HH_OK])))
  build("hh_rlhf/helpful_base_filtered", tmp_path / "data", root=str(root))
  src = registry.load_split("hh_rlhf/helpful_base_filtered", "train", str(tmp_path / "data"))
  assert [r["id"] for r in src] == ["helpful-base/train.jsonl.gz:1", "helpful-base/train.jsonl.gz:3"]
  assert registry.skipped("hh_rlhf/helpful_base_filtered", str(tmp_path / "data")) == [
      f"{train}, record 2: field 'chosen' is empty"]
  assert registry.skipped("hh_rlhf/helpful_base_filtered", str(tmp_path / "data"))  # reloaded


def test_malformed_tldr_comparison_wrong_type_and_bad_json(tmp_path):
  good = json.loads(open(os.path.join(DUMMY_ROOT, "tldr_comparisons/batch3.json")).readline())
  root = tmp_path / "raw"
  for b in ("batch10", "batch22"):
    _write(str(root / f"{b}.json"), _jl([good]))
  bad = _write(str(root / "batch3.json"), _jl([good, {**good, "choice": "1"}]))
  with pytest.raises(ValueError, match=rf"{bad}, record 2: field 'choice' must be int, got str"):
    build("tldr_comparisons", tmp_path / "d1", root=str(root))
  _write(bad, _jl([good]) + b"{not json\n")
  with pytest.raises(ValueError, match=rf"{bad}, record 2: not valid JSON"):
    build("tldr_comparisons", tmp_path / "d2", root=str(root))
  no_post = json.loads(json.dumps(good))
  del no_post["info"]["post"]
  _write(bad, _jl([no_post]))
  with pytest.raises(ValueError, match=rf"{bad}, record 1: field 'info/post' is missing"):
    build("tldr_comparisons", tmp_path / "d3", root=str(root))


def test_malformed_alpaca_and_beavertails(tmp_path):
  root = tmp_path / "alpaca"
  rows = json.loads(open(os.path.join(DUMMY_ROOT, "alpaca_farm/alpaca_human_preference.json")).read())
  rows[2]["output_2"] = ""
  rows[2]["preference"] = 2
  bad = _write(str(root / "alpaca_human_preference.json"), json.dumps(rows).encode())
  with pytest.raises(ValueError, match=rf"{bad}, record 2: field 'output_2' is empty"):
    build("alpaca_farm/human_preference", tmp_path / "d1", root=str(root))

  root = tmp_path / "bt"
  good = json.loads(lzma.decompress(open(os.path.join(
      DUMMY_ROOT, "beavertails/PKU-SafeRLHF-10K/round0/train.jsonl.xz"), "rb").read()).splitlines()[0])
  missing = {k: v for k, v in good.items() if k != "safer_response_id"}
  bad = _write(str(root / "PKU-SafeRLHF-10K/round0/train.jsonl.xz"), lzma.compress(_jl([good, missing])))
  with pytest.raises(ValueError, match=rf"{bad}, record 2: field 'safer_response_id' is missing"):
    build("beavertails/safe_rlhf_10k", tmp_path / "d2", root=str(root))


# ------------------------------------------------------------------------------- schema & registry
def test_validate_record_messages():
  ok = {"id": "a", "prompt": "p", "chosen": "c", "rejected": "r", "labels": {"safer": 1}}
  assert schema.validate_record(ok, source="f.jsonl", index=1) is ok
  cases = [
      ({k: v for k, v in ok.items() if k != "chosen"}, "f.jsonl, record 4: field 'chosen' is missing"),
      ({**ok, "rejected": " \n"}, "f.jsonl, record 4: field 'rejected' is empty"),
      ({**ok, "prompt": b"p"}, "f.jsonl, record 4: field 'prompt' must be a str, got bytes"),
      ({**ok, "labels": {"safer": 2}}, "f.jsonl, record 4: field 'labels/safer' must be the int 0 or 1"),
      ({**ok, "labels": {"safer": True}}, "field 'labels/safer' must be the int 0 or 1"),
      (["not", "a", "dict"], "f.jsonl, record 4: expected a dict record, got list"),
  ]
  for rec, msg in cases:
    with pytest.raises(ValueError, match=msg.replace("(", r"\(")):
      schema.validate_record(rec, source="f.jsonl", index=4)
  with pytest.raises(ValueError, match="field 'response' is empty"):
    schema.validate_record({"id": "a", "prompt": "p", "response": ""}, source="f", index=0,
                           kind="prompt")
  with pytest.raises(ValueError, match="field 'chosen' is missing"):
    schema.validate_record({"id": "a", "prompt": "p"}, source="f", index=0, kind="preference")


def test_sha256_check(tmp_path):
  p = _write(str(tmp_path / "x.json"), b"[]")
  base.verify_sha256(p, base.sha256_of(p), "https://example/x.json")
  with pytest.raises(ValueError, match="x.json.*has SHA-256 .* expected 00"):
    base.verify_sha256(p, "00", "https://example/x.json")


def test_registry_names_and_errors(tmp_path):
  names = registry.names()
  assert {"tldr_comparisons", "tldr_sft", "imdb", "hh_rlhf/helpful_base", "hh_rlhf/all",
          "alpaca_farm/instructions", "beavertails/safe_rlhf_10k_safer"} <= set(names)
  assert registry.parse_name("hh_rlhf") == ("hh_rlhf", "helpful_base")
  assert registry.parse_name("imdb") == ("imdb", None)
  with pytest.raises(ValueError, match="unknown data set 'nope'"):
    registry.parse_name("nope")
  with pytest.raises(ValueError, match="unknown config 'x' of hh_rlhf"):
    registry.parse_name("hh_rlhf/x")
  build("tldr_sft", tmp_path)
  with pytest.raises(ValueError, match="unknown split 'validation' of tldr_sft"):
    registry.load_split("tldr_sft", "validation", str(tmp_path))
  assert len(registry.load_split("tldr_sft", "train[1:]", str(tmp_path))) == 2  # TFDS slicing
  # The data package's dispatcher reaches this registry for any name but the embedded task.
  from warm_jax.data import load_split
  import ml_collections
  cfg = ml_collections.ConfigDict({"name": "tldr_sft", "data_dir": str(tmp_path)})
  assert len(load_split(cfg, "train")) == 3


def test_a_damaged_array_record_file_is_named(tmp_path):
  from warm_jax import errors
  build("hh_rlhf/helpful_base", tmp_path)
  builder = registry.get_builder("hh_rlhf/helpful_base", str(tmp_path), prepare=False)
  (path,) = [os.path.join(builder.data_dir, f) for f in os.listdir(builder.data_dir)
             if "-train.array_record" in f]
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)  # was read as records whose every field is None
  with pytest.raises(errors.DamagedInput, match=f"data file {path} is not a readable ArrayRecord"):
    registry.load_split("hh_rlhf/helpful_base", "train", str(tmp_path))
  assert len(list(registry.load_split("hh_rlhf/helpful_base", "test", str(tmp_path)))) == 2


def test_each_builder_has_its_own_checksums_file_and_imdb_knows_its_archive():
  paths = {registry.builder_class(d)._checksums_path.name for d in registry._MODULES}
  assert paths == {f"{d}_checksums.tsv" for d in registry._MODULES}
  from warm_jax.data.builders import imdb
  info = registry.builder_class("imdb").url_infos[imdb.URL]
  assert (info.size, info.checksum) == (imdb.SIZE, imdb.SHA256)
