"""The embedded offline task: determinism, flips, gold reward, the length shortcut, OOD shift,
the TFDS builder (without TensorFlow) and the sentencepiece tokenizer. Tiny sizes: seconds."""

import sys

import numpy as np
import pytest

from warm_jax.data import embedded as E


def tiny_config(n=24, seed=0, **overrides):
  cfg = E.default_config()
  cfg.seed = seed
  for k in cfg.sizes:
    cfg.sizes[k] = n
  cfg.update(overrides)
  return cfg


# ------------------------------------------------------------------------------------ generation
def test_same_seed_same_records_other_seed_different():
  a = E.preference_records(tiny_config(seed=3), "train")
  b = E.preference_records(tiny_config(seed=3), "train")
  c = E.preference_records(tiny_config(seed=4), "train")
  assert a == b
  assert [r["prompt"] for r in a] != [r["prompt"] for r in c]
  assert list(E.text_records(tiny_config(seed=3), "corpus")) == list(
      E.text_records(tiny_config(seed=3), "corpus"))


def test_record_schema_and_response_excludes_prompt():
  for split in E.PAIR_SPLITS:
    for r in E.preference_records(tiny_config(), split):
      assert set(r) == {"id", "prompt", "chosen", "rejected", "flipped", "gold_chosen",
                        "gold_rejected"}
      assert isinstance(r["flipped"], bool) and isinstance(r["gold_chosen"], float)
      assert r["chosen"] != r["rejected"]
      assert r["prompt"] not in r["chosen"] and r["prompt"] not in r["rejected"]
      assert r["gold_chosen"] == pytest.approx(E.gold_total(r["prompt"], r["chosen"]), abs=1e-6)


def test_flip_count_exact_and_unflipping_gives_the_bradley_terry_labels():
  n = 40
  noisy = E.preference_records(tiny_config(n, flip_fraction=0.25), "train")
  clean = E.preference_records(tiny_config(n, flip_fraction=0.0), "train")
  flipped = [r["id"] for r in noisy if r["flipped"]]
  assert len(flipped) == round(0.25 * n) == 10
  assert flipped == list(E.flip_indices(tiny_config(n, flip_fraction=0.25), n))
  assert not any(r["flipped"] for r in clean)
  assert [E.unflip(r) for r in noisy] == clean
  for r, c in zip(noisy, clean):
    if r["flipped"]:
      assert (r["chosen"], r["rejected"]) == (c["rejected"], c["chosen"])
  # Flips only on train.
  for split in ("validation", "test", "ood"):
    assert not any(r["flipped"] for r in E.preference_records(tiny_config(n), split))


def test_zero_temperature_prefers_higher_gold():
  for r in E.preference_records(tiny_config(40, bt_temperature=0.0, flip_fraction=0.0), "train"):
    assert r["gold_chosen"] >= r["gold_rejected"]


# ------------------------------------------------------------------------------------ gold reward
POST = "my friend tom moved to oslo last year . honestly it has been a long week . he works as a chef ."


def test_key_facts_parsed_from_the_prompt():
  assert E.key_facts(POST) == ["tom", "oslo", "chef"]
  assert set(E.gold_reward(POST, "tldr : tom .")) == set(E.CRITERIA) | {"total"}


def test_gold_criteria_on_hand_written_examples():
  g = E.gold_reward
  perfect = g(POST, "tldr : tom moved to oslo and works as a chef .")
  assert all(perfect[c] == 1.0 for c in E.CRITERIA) and perfect["total"] == pytest.approx(1.0)

  missing = g(POST, "tldr : tom moved to oslo .")
  assert missing["coverage"] == pytest.approx(2 / 3) and missing["total"] < perfect["total"]

  repetitive = g(POST, "tldr : tom moved to oslo , moved to oslo , moved to oslo and works as a chef .")
  assert repetitive["no_repetition"] < 0.6 and repetitive["coverage"] == 1.0

  long = "tldr : " + " , ".join(["tom moved to oslo and works as a chef you know basically"] * 4) + " ."
  assert g(POST, long)["brevity"] < 0.05

  for bad in ("tom moved to oslo and works as a chef .", "tldr : tom moved to oslo and works as a chef",
              "tldr : tom ## moved to oslo and works as a chef ."):
    assert g(POST, bad)["well_formed"] == pytest.approx(2 / 3)
  assert g(POST, "")["well_formed"] == 0.0

  hallucinated = g(POST, "tldr : tom moved to paris and works as a chef .")
  assert hallucinated["faithfulness"] == pytest.approx(2 / 3)
  for v in (missing, repetitive, hallucinated):
    assert all(0.0 <= v[c] <= 1.0 for c in E.CRITERIA)

  batch = E.gold_reward_batch([POST, POST], ["tldr : tom .", "tldr : tom moved to oslo ."])
  assert batch["coverage"].shape == (2,) and batch["total"][1] > batch["total"][0]


def test_reward_hacking_is_possible():
  """In the pairs, longer responses (more fact words) tend to be chosen; off distribution the gold
  reward punishes what that shortcut favours: very long or repetitive responses."""
  cfg = tiny_config(400, flip_fraction=0.0)
  recs = E.preference_records(cfg, "train")
  stats = E.length_preference_stats(recs)
  assert stats["chosen_longer_rate"] > 0.6 and stats["length_label_corr"] > 0.2
  assert stats["fact_words_chosen_more_rate"] > 0.65

  good = [E.gold_total(r["prompt"], r["chosen"]) for r in recs[:50]]
  hack = [E.gold_reward(r["prompt"], E.hacked_response(r["prompt"])) for r in recs[:50]]
  assert np.mean([h["no_repetition"] for h in hack]) < 0.2
  assert np.mean([h["brevity"] for h in hack]) < 0.5
  assert np.mean([h["total"] for h in hack]) < np.mean(good) - 0.2
  # The hack is longer than (almost) every response in the pair data.
  max_len = np.percentile([len(r["chosen"].split()) for r in recs], 99)
  assert np.mean([len(E.hacked_response(r["prompt"]).split()) for r in recs[:50]]) > max_len


def test_response_kinds_rank_as_designed():
  cfg = E.default_config()
  rng = np.random.default_rng(0)
  means = {}
  for kind in E.RESPONSE_KINDS:
    vals = []
    for _ in range(30):
      post = E.sample_post(rng, cfg)
      vals.append(E.gold_total(post.text, E.sample_response(rng, post, kind, cfg)))
    means[kind] = np.mean(vals)
  assert means["good"] == pytest.approx(1.0)
  assert all(means["good"] > means[k] for k in E.RESPONSE_KINDS if k != "good")
  assert means["random"] < min(means[k] for k in ("verbose", "partial", "repetitive"))


# ------------------------------------------------------------------------------------ splits
def test_splits_disjoint_and_ood_shifted():
  cfg = tiny_config(60)
  facts = {s: {tuple(E.key_facts(r["prompt"])) for r in E.preference_records(cfg, s)}
           for s in ("train", "validation", "test")}
  assert not facts["train"] & facts["validation"]
  assert not facts["train"] & facts["test"] and not facts["validation"] & facts["test"]
  heldout = set(E.OOD_NAMES) | set(E.OOD_CITIES)
  ind = [r["prompt"] for s in ("train", "validation", "test") for r in E.preference_records(cfg, s)]
  ind += [r["prompt"] for r in E.text_records(cfg, "corpus")]
  assert not any(set(p.split()) & heldout for p in ind)
  ood = E.preference_records(cfg, "ood")
  assert all(E.key_facts(r["prompt"])[0] in E.OOD_NAMES for r in ood)
  assert min(len(E.key_facts(r["prompt"])) for r in ood) > max(len(E.key_facts(p)) for p in ind)
  assert np.mean([len(r["prompt"].split()) for r in ood]) > np.mean([len(p.split()) for p in ind])


def test_sft_mostly_decent_corpus_all_kinds():
  cfg = tiny_config(200)
  corpus = list(E.text_records(cfg, "corpus"))
  sft = list(E.text_records(cfg, "sft"))
  assert {r["kind"] for r in corpus} == set(E.RESPONSE_KINDS)
  assert np.mean([r["gold"] for r in sft]) > np.mean([r["gold"] for r in corpus]) + 0.03
  assert all(set(r) == {"id", "prompt", "response", "gold", "kind"} for r in sft)


def test_validate_names_the_field():
  cfg = tiny_config(flip_fraction=1.5)
  with pytest.raises(ValueError, match="flip_fraction"):
    E.validate(cfg)
  cfg = tiny_config()
  cfg.mixture.pairs.good = 0.9
  with pytest.raises(ValueError, match="mixture.pairs"):
    E.validate(cfg)


# ------------------------------------------------------------------------------------ TFDS builder
def test_builder_builds_and_load_split_returns_the_schema(tmp_path):
  from warm_jax.data.builders import embedded_tldr as B
  cfg = tiny_config(8)
  cfg.data_dir = str(tmp_path)
  src = B.load_split(cfg, "train")
  assert len(src) == 8
  expected = E.preference_records(cfg, "train")
  assert [src[i] for i in range(8)] == expected  # same values, python types, record i = id i
  assert src[-1] == expected[-1] and src[2:4] == expected[2:4]
  assert src.__getitems__([3, 1]) == [expected[3], expected[1]]
  corpus = B.load_split(cfg, "corpus")
  assert list(corpus) == list(E.text_records(cfg, "corpus"))
  assert "tensorflow" not in sys.modules
  # Another config gets another directory; the same config reuses the build.
  other = tiny_config(8, seed=1)
  other.data_dir = str(tmp_path)
  assert B.builder_config(other).name != B.builder_config(cfg).name
  assert B.builder_config(cfg).name == B.builder_config(tiny_config(8)).name  # data_dir not hashed
  with pytest.raises(ValueError, match="unknown split"):
    B.load_split(cfg, "dev")


def test_half_built_dataset_is_never_read(tmp_path):
  from warm_jax.data.builders import embedded_tldr as B
  cfg = tiny_config(4)
  builder = B.get_builder(cfg, str(tmp_path), prepare=False)
  variant = builder.data_path
  # What a killed build leaves (an incomplete.* dir), plus a variant dir without dataset_info.json.
  stale = variant.parent / f"incomplete.ABCDEF_{B.VERSION}"
  stale.mkdir(parents=True)
  (stale / "embedded_tldr-train.array_record-00000-of-00001").write_bytes(b"junk")
  variant.mkdir()
  (variant / "embedded_tldr-train.array_record-00000-of-00001").write_bytes(b"junk")
  assert not builder.is_prepared()
  src = B.load_split(cfg, "validation", data_dir=str(tmp_path))
  assert list(src) == E.preference_records(cfg, "validation")
  assert not stale.exists() and (variant / "dataset_info.json").exists()


def test_damaged_data_files_are_named_with_the_record(tmp_path):
  import os
  import shutil
  from warm_jax import errors
  from warm_jax.data.builders import embedded_tldr as B
  cfg = tiny_config(8)
  cfg.data_dir = str(tmp_path / "ok")
  expected = list(B.load_split(cfg, "train"))
  name = "embedded_tldr-train.array_record-00000-of-00001"

  def copy(how):
    shutil.copytree(tmp_path / "ok", tmp_path / how)
    c = tiny_config(8)
    c.data_dir = str(tmp_path / how)
    return c, os.path.join(B.get_builder(c, prepare=False).data_dir, name)

  # Truncated: ArrayRecord read it back as 8 records whose every field was None.
  c, path = copy("truncated")
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)
  with pytest.raises(errors.DamagedInput, match=f"data file {path} is not a readable ArrayRecord"):
    B.load_split(c, "train")
  assert list(B.load_split(c, "validation")) == E.preference_records(c, "validation")
  # A chunk overwritten: the record that reads it is named, with the file.
  c, path = copy("overwritten")
  with open(path, "r+b") as f:
    f.seek(1000)
    block = f.read(64)
    f.seek(1000)
    f.write(bytes(255 - b for b in block))
  src = B.load_split(c, "train")
  with pytest.raises(errors.DamagedInput, match=f"data file {path}, record 2: .*hash mismatch"):
    list(src)
  with pytest.raises(errors.DamagedInput, match=f"data file {path}, record 2"):
    src.__getitems__([0, 2])  # a batch read names the record too
  assert src[0] == expected[0]
  # Gone, or a directory in its place.
  c, path = copy("deleted")
  os.remove(path)
  with pytest.raises(errors.MissingInput, match=f"data file {path} is missing"):
    B.load_split(c, "train")
  c, path = copy("directory")
  os.remove(path)
  os.makedirs(path)
  with pytest.raises(errors.DamagedInput, match=f"data file {path} is not a readable"):
    B.load_split(c, "train")
  # The metadata that says the data set is complete, damaged: named, with what to do.
  c, path = copy("info")
  info = os.path.join(os.path.dirname(path), "dataset_info.json")
  with open(info, "r+b") as f:
    f.truncate(100)
  with pytest.raises(errors.DamagedInput, match=f"data set {os.path.dirname(path)}: .*rebuild"):
    B.load_split(c, "train")


def test_records_are_checked_against_the_features_as_they_are_read():
  from warm_jax import errors
  from warm_jax.data.builders import source

  class Instruction:
    filename, skip, take, examples_in_shard = "/data/x.array_record-00000-of-00002", 0, 2, 2

  class Second(Instruction):
    filename, skip = "/data/x.array_record-00001-of-00002", 1

  good = {"id": np.int64(3), "prompt": b"p", "flipped": np.bool_(True), "labels": {"a": np.int64(1)}}
  empty = {"id": None, "prompt": None, "flipped": None, "labels": {"a": None}}
  types = {"id": int, "prompt": str, "flipped": bool, "labels": {"a": int}}
  src = source.Source([good, good, good, empty], [Instruction, Second], types)
  assert src[0] == {"id": 3, "prompt": "p", "flipped": True, "labels": {"a": 1}}
  # Record 3 of the split is record 2 of the second file (which skips one).
  with pytest.raises(errors.DamagedInput,
                     match=r"data file /data/x.array_record-00001-of-00002, record 2: field 'id' is "
                           r"None, not an int"):
    src[3]
  bad_label = dict(good, labels={"a": None})
  with pytest.raises(errors.DamagedInput, match=r"record 0: field 'labels/a' is None"):
    source.Source([bad_label], [Instruction], types)[0]


# ------------------------------------------------------------------------------------ tokenizer
def test_committed_tokenizer_round_trips():
  from warm_jax.data import tokenizer
  tok = tokenizer.load()
  assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2) and tok.vocab_size == 1024
  cfg = tiny_config(5)
  texts = [r["prompt"] + " " + r["chosen"] for r in E.preference_records(cfg, "ood")]
  texts += ["tldr : zoe lives in reykjavik ## é ."]  # held-out words and unseen characters
  for t in texts:
    ids = tok.encode(t)
    assert ids and all(0 <= i < tok.vocab_size for i in ids) and tok.unk_id not in ids
    assert tok.decode(ids) == t
    assert tok.decode([tok.bos_id] + ids + [tok.eos_id, tok.pad_id, tok.pad_id]) == t
  assert tokenizer.load("").vocab_size == 1024


def test_tokenizer_training_is_deterministic(tmp_path):
  from warm_jax.data import tokenizer
  texts = list(E.corpus_texts(tiny_config(200)))
  a = tokenizer.train(texts, str(tmp_path / "a" / "sp"), vocab_size=300)
  b = tokenizer.train(texts, str(tmp_path / "b" / "sp"), vocab_size=300)
  assert (tmp_path / "a" / "sp.model").read_bytes() == (tmp_path / "b" / "sp.model").read_bytes()
  assert a.vocab_size == 300 and a.decode(a.encode(texts[0])) == texts[0]
  import pickle
  assert pickle.loads(pickle.dumps(b)).encode(texts[1]) == b.encode(texts[1])


def test_attacks_keep_the_form_and_lower_gold_reward():
  cfg = E.default_config()
  rng = np.random.default_rng(0)
  for i in range(20):
    post = E.sample_post_for_split(rng, cfg, "validation")
    good = E.sample_response(rng, post, "good", cfg)
    g0 = E.gold_reward(post.text, good, cfg)
    for attack in E.ATTACKS:
      assert E.attack_response(post.text, good, attack, 0) == good
      hacked = E.attack_response(post.text, good, attack, 12, np.random.default_rng(i))
      g = E.gold_reward(post.text, hacked, cfg)
      assert len(hacked.split()) > len(good.split())
      assert g["coverage"] == g0["coverage"] and g["well_formed"] == g0["well_formed"]
      assert g["total"] < g0["total"] - 0.05, (attack, hacked)


def test_attack_rejects_bad_input():
  with pytest.raises(ValueError, match="unknown attack"):
    E.attack_response("p", "tldr : a .", "bogus", 1)
  with pytest.raises(ValueError, match="strength"):
    E.attack_response("p", "tldr : a .", "repeat", -1)
  with pytest.raises(ValueError, match="well-formed"):
    E.attack_response("p", "no marker", "repeat", 1)
