r"""Sentencepiece tokenizer of the embedded task (and any other sentencepiece model).

    tok = tokenizer.load()            # the committed model warm_jax/data/assets/embedded_sp.model
    ids = tok.encode("tldr : tom moved to oslo .")
    tok.decode(ids)                   # -> 'tldr : tom moved to oslo .'

Ids: pad=0, bos=1, eos=2, unk=3 (set explicitly at training, checked at load for the committed model).
`encode` adds neither bos nor eos: the input pipeline places them. Byte fallback is on, so words the
model never saw (the ood split's held-out names, junk) still tokenise into byte pieces and decode
back exactly.

Regenerate the committed model (deterministic: one thread, all sentences, no sampling) with

    python -m warm_jax.data.tokenizer --out warm_jax/data/assets/embedded_sp

which trains on the `corpus` split of `embedded.default_config()` (prompt + response texts).
"""

from __future__ import annotations

import argparse
import os
from typing import Iterable, Sequence

import sentencepiece as spm

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
DEFAULT_MODEL = os.path.join(ASSETS, "embedded_sp.model")
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
DEFAULT_VOCAB_SIZE = 1024


class Tokenizer:
  """A thin wrapper of a sentencepiece model: python lists of ints in and out."""

  def __init__(self, model_proto: bytes, path: str | None = None):
    self.path = path
    self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
    self._proto = model_proto
    self.pad_id = self._sp.pad_id()
    self.bos_id = self._sp.bos_id()
    self.eos_id = self._sp.eos_id()
    self.unk_id = self._sp.unk_id()
    self.vocab_size = self._sp.get_piece_size()

  def encode(self, text: str) -> list[int]:
    return list(self._sp.encode(text, out_type=int))

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return [list(x) for x in self._sp.encode(list(texts), out_type=int)]

  def decode(self, ids: Iterable[int]) -> str:
    """Text of `ids`; pad, bos and eos ids are dropped (so padded rows decode cleanly)."""
    special = {self.pad_id, self.bos_id, self.eos_id}
    return self._sp.decode([int(i) for i in ids if int(i) not in special])

  def id_to_piece(self, i: int) -> str:
    return self._sp.id_to_piece(int(i))

  def piece_to_id(self, piece: str) -> int:
    return self._sp.piece_to_id(piece)

  # Picklable (for multiprocess input pipelines): the model travels as its serialized proto.
  def __getstate__(self):
    return {"proto": self._proto, "path": self.path}

  def __setstate__(self, state):
    self.__init__(state["proto"], state["path"])

  def __repr__(self):
    return f"Tokenizer(vocab_size={self.vocab_size}, path={self.path!r})"


def load(path: str | None = None) -> Tokenizer:
  """The sentencepiece model at `path` ('.model' may be left out); None or '' = the committed one."""
  path = path or DEFAULT_MODEL
  if not path.endswith(".model") and not os.path.exists(path):
    path += ".model"
  if not os.path.exists(path):
    hint = ("; regenerate it with `python -m warm_jax.data.tokenizer --out "
            "warm_jax/data/assets/embedded_sp`" if path == DEFAULT_MODEL else "")
    raise FileNotFoundError(f"no sentencepiece model at {path}{hint}")
  with open(path, "rb") as f:
    tok = Tokenizer(f.read(), path)
  if path == DEFAULT_MODEL:
    got = (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id)
    if got != (PAD_ID, BOS_ID, EOS_ID, UNK_ID):
      raise ValueError(f"{path}: special ids (pad, bos, eos, unk) are {got}, expected "
                       f"{(PAD_ID, BOS_ID, EOS_ID, UNK_ID)}")
  return tok


def train(texts: Iterable[str], out_prefix: str, vocab_size: int = DEFAULT_VOCAB_SIZE,
          model_type: str = "bpe") -> Tokenizer:
  """Trains a sentencepiece model on `texts`, writes `out_prefix`.model/.vocab, returns it.

  Deterministic for the same texts: one thread, every sentence used in the given order.
  Normalisation is the identity (the task's text is already lower-case ASCII), which also keeps the
  model file small (no normalisation table).
  """
  out_dir = os.path.dirname(os.path.abspath(out_prefix))
  os.makedirs(out_dir, exist_ok=True)
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(list(texts)),
      model_prefix=out_prefix,
      vocab_size=vocab_size,
      model_type=model_type,
      pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID, unk_id=UNK_ID,
      pad_piece="<pad>", bos_piece="<s>", eos_piece="</s>", unk_piece="<unk>",
      byte_fallback=True,
      character_coverage=1.0,
      normalization_rule_name="identity",
      add_dummy_prefix=True,
      remove_extra_whitespaces=True,
      split_digits=True,
      num_threads=1,
      input_sentence_size=0,
      shuffle_input_sentence=False,
      max_sentence_length=8192,
      minloglevel=2,
  )
  # The trainer records the output path in the model; keep only the base name so that the file's
  # bytes do not depend on where it was written.
  from sentencepiece import sentencepiece_model_pb2
  proto = sentencepiece_model_pb2.ModelProto()
  with open(out_prefix + ".model", "rb") as f:
    proto.ParseFromString(f.read())
  proto.trainer_spec.model_prefix = os.path.basename(out_prefix)
  with open(out_prefix + ".model", "wb") as f:
    f.write(proto.SerializeToString())
  return load(out_prefix + ".model")


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default=os.path.join(ASSETS, "embedded_sp"),
                      help="output prefix: writes PREFIX.model and PREFIX.vocab")
  parser.add_argument("--vocab_size", type=int, default=DEFAULT_VOCAB_SIZE)
  parser.add_argument("--num_texts", type=int, default=None,
                      help="texts of the corpus split to train on (default: the whole split)")
  args = parser.parse_args(argv)
  from warm_jax.data import embedded
  cfg = embedded.default_config()
  tok = train(embedded.corpus_texts(cfg, args.num_texts), args.out, args.vocab_size)
  print(f"wrote {args.out}.model ({os.path.getsize(args.out + '.model')} bytes), "
        f"vocab_size={tok.vocab_size}")


if __name__ == "__main__":
  main()
