"""Tokenizers of Hugging Face directories (warm_jax.pretrained.tokenizer): a tokenizer.json
checked against what transformers produced for it (tests/fixtures/hf/tokenizer, written by
benchmarks/make_hf_fixtures.py), tokenizers trained here in a second, a sentencepiece
tokenizer.model, special-token sources and fallbacks, chat templates and the errors."""

import json
import os
import shutil

import pytest

from warm_jax.pretrained import export_hf, load_hf
from warm_jax.pretrained.tokenizer import TokenizerError, load_tokenizer

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "hf")


def _read(path):
  with open(path) as f:
    return json.load(f)


def test_tokenizer_json_matches_transformers():
  d = os.path.join(FIXTURES, "tokenizer")
  e = _read(os.path.join(d, "expected.json"))
  tok = load_tokenizer(d)
  assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.vocab_size) == (e["bos_id"], e["eos_id"],
                                                                  e["pad_id"], e["vocab_size"])
  assert [tok.encode(t) for t in e["texts"]] == e["ids"]
  assert tok.encode_batch(e["texts"]) == e["ids"]
  assert [tok.decode(i) for i in e["ids"]] == e["decoded"]
  assert tok.decode([tok.bos_id] + e["ids"][0] + [tok.eos_id, tok.pad_id]) == e["decoded"][0]
  assert tok.apply_chat_template(e["messages"]) == e["chat"]
  assert tok.apply_chat_template(e["messages"][:3], add_generation_prompt=False) == e["chat_no_prompt"]
  assert tok.notes == []


def _train_tokenizer(d, special=("<pad>", "<s>", "</s>")):
  """A word-level tokenizer.json trained here in a second (no download)."""
  from tokenizers import Tokenizer, models, pre_tokenizers, trainers
  tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.Whitespace()
  tok.train_from_iterator(["the cat sat on the mat", "a dog ate the cat food"],
                          trainers.WordLevelTrainer(special_tokens=["<unk>", *special]))
  os.makedirs(d, exist_ok=True)
  tok.save(os.path.join(d, "tokenizer.json"))
  return tok


def test_trained_tokenizer_specials_from_config_and_pad_fallback(tmp_path):
  d = tmp_path / "tok"
  trained = _train_tokenizer(str(d), special=("<s>", "</s>"))
  (d / "config.json").write_text(json.dumps({"bos_token_id": trained.token_to_id("<s>"),
                                             "eos_token_id": [trained.token_to_id("</s>"), 99]}))
  tok = load_tokenizer(str(d))
  assert tok.encode("the cat sat") == trained.encode("the cat sat").ids
  assert tok.decode(tok.encode("the cat sat")) == "the cat sat"
  assert tok.bos_id == trained.token_to_id("<s>") and tok.eos_id == trained.token_to_id("</s>")
  assert tok.pad_id == tok.eos_id and "pad_id falls back to eos_id" in tok.notes[0]
  (d / "tokenizer_config.json").write_text(json.dumps(
      {"pad_token": {"content": "<unk>", "special": True}, "eos_token": "<s>",
       "chat_template": "{% for m in messages %}{{ m.role }}: {{ m.content }}|{% endfor %}"
                        "{{ eos_token }}"}))
  tok = load_tokenizer(str(d))
  assert (tok.pad_id, tok.eos_id, tok.notes) == (trained.token_to_id("<unk>"),
                                                 trained.token_to_id("<s>"), [])
  assert tok.apply_chat_template([{"role": "user", "content": "hi"}]) == "user: hi|<s>"
  with pytest.raises(TokenizerError, match=r"tokenizer\.json: the tokenizer's vocabulary has \d+ "
                     r"ids but the model's vocab_size is 4"):
    load_tokenizer(str(d), model_vocab_size=4)
  (d / "tokenizer_config.json").write_text(json.dumps({"pad_token": "<nope>"}))
  with pytest.raises(TokenizerError, match=r"pad_token '<nope>' .* is not in the vocabulary"):
    load_tokenizer(str(d))


def test_sentencepiece_tokenizer_model_and_missing_files(tmp_path):
  from warm_jax.data import tokenizer as sp_tokenizer
  d = tmp_path / "sp"
  d.mkdir()
  shutil.copyfile(sp_tokenizer.DEFAULT_MODEL, d / "tokenizer.model")
  tok, ref = load_tokenizer(str(d)), sp_tokenizer.load()
  text = "tldr : tom moved to oslo ."
  assert tok.encode(text) == ref.encode(text) and tok.decode(tok.encode(text)) == text
  assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.vocab_size) == (ref.pad_id, ref.bos_id,
                                                                  ref.eos_id, ref.vocab_size)
  with pytest.raises(TokenizerError, match="no chat template"):
    tok.apply_chat_template([{"role": "user", "content": "hi"}])
  with pytest.raises(TokenizerError, match=r"empty: no tokenizer\.json or tokenizer\.model"):
    (tmp_path / "empty").mkdir()
    load_tokenizer(str(tmp_path / "empty"))


def test_export_copies_tokenizer_files(tmp_path):
  pre = load_hf(os.path.join(FIXTURES, "llama", "causal_lm"))
  out = export_hf(pre.params, pre.model_cfg, str(tmp_path / "with_tok"), hf_config=pre.hf_config,
                  tokenizer_dir=os.path.join(FIXTURES, "tokenizer"))
  for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
    assert os.path.exists(os.path.join(out, name))
  assert load_tokenizer(out).vocab_size == load_tokenizer(os.path.join(FIXTURES, "tokenizer")).vocab_size
