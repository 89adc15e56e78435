"""Tokenizers of Hugging Face model directories, with the interface of warm_jax's own
`warm_jax.data.tokenizer.Tokenizer` (encode without specials, decode dropping pad/bos/eos,
pad_id / bos_id / eos_id / unk_id / vocab_size) plus the directory's chat template.

    tok = load_tokenizer("path/to/Llama-3.2-1B-Instruct", model_vocab_size=128256)
    ids = tok.encode("hello")                      # no bos / eos: the pipeline places them
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}])

The backend follows what the directory holds: `tokenizer.json` through the `tokenizers` package
(fast tokenizers: Llama 3, Qwen, Gemma, Mistral), else a sentencepiece `tokenizer.model` (Llama 2,
older Gemma/Mistral uploads). Special tokens come from tokenizer_config.json, then
special_tokens_map.json, then config.json's *_token_id, then the sentencepiece model. A missing pad
falls back to eos (the usual choice for Llama/Mistral), and a missing bos is -1; each fallback is
recorded in `tok.notes` and logged, since with pad = eos only an explicit mask tells padding from
an eos that ends a sequence. The chat template (tokenizer_config.json's `chat_template`, or
chat_template.jinja as transformers 5 writes it) is rendered with jinja2's sandbox the way
transformers renders it (trim_blocks, lstrip_blocks, loop controls, `raise_exception`, `tojson`,
`strftime_now`; bos_token / eos_token / pad_token / unk_token in scope).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from typing import Any, Iterable, Sequence

from warm_jax.errors import InputError

SPECIAL_KEYS = ("bos", "eos", "pad", "unk")


class TokenizerError(InputError):
  """A tokenizer directory warm_jax cannot use as asked: names the file and what is wrong."""


def _read_json(path: str) -> dict:
  if not os.path.exists(path):
    return {}
  try:
    with open(path) as f:
      out = json.load(f)
  except json.JSONDecodeError as e:
    raise TokenizerError(f"{path}: not valid JSON ({e})") from None
  if not isinstance(out, dict):
    raise TokenizerError(f"{path}: a JSON {type(out).__name__}, not an object")
  return out


def _token_text(value) -> str | None:
  """A special token as tokenizer_config / special_tokens_map write it: a string or an AddedToken
  dict with 'content'."""
  if isinstance(value, dict):
    value = value.get("content")
  return value if isinstance(value, str) and value else None


class _FastBackend:
  """A tokenizer.json through the `tokenizers` package."""

  def __init__(self, path: str):
    from tokenizers import Tokenizer as FastTokenizer
    try:
      self._tok = FastTokenizer.from_file(path)
    except Exception as e:  # the Rust side raises its own exception types
      raise TokenizerError(f"{path}: the tokenizers package cannot read it ({e})") from None
    self.path = path

  def encode(self, text: str) -> list[int]:
    return list(self._tok.encode(text, add_special_tokens=False).ids)

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return [list(e.ids) for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

  def decode(self, ids: list[int]) -> str:
    return self._tok.decode(ids, skip_special_tokens=False)

  def token_to_id(self, token: str) -> int | None:
    return self._tok.token_to_id(token)

  def id_to_token(self, i: int) -> str | None:
    return self._tok.id_to_token(i)

  def vocab_size(self) -> int:
    """Ids used: base vocabulary and added tokens (the largest id + 1)."""
    vocab = self._tok.get_vocab(with_added_tokens=True)
    return max(vocab.values()) + 1 if vocab else 0

  def special_ids(self) -> dict[str, int]:
    return {}


class _SentencepieceBackend:
  """A sentencepiece tokenizer.model."""

  def __init__(self, path: str):
    import sentencepiece as spm
    with open(path, "rb") as f:
      proto = f.read()
    try:
      self._sp = spm.SentencePieceProcessor(model_proto=proto)
    except Exception as e:  # sentencepiece raises RuntimeError / OSError on a bad proto
      raise TokenizerError(f"{path}: not a sentencepiece model ({e})") from None
    self.path = path

  def encode(self, text: str) -> list[int]:
    return list(self._sp.encode(text, out_type=int))

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return [list(x) for x in self._sp.encode(list(texts), out_type=int)]

  def decode(self, ids: list[int]) -> str:
    return self._sp.decode(ids)

  def token_to_id(self, token: str) -> int | None:
    i = self._sp.piece_to_id(token)
    return None if i == self._sp.unk_id() and token != self._sp.id_to_piece(i) else i

  def id_to_token(self, i: int) -> str | None:
    return self._sp.id_to_piece(i) if 0 <= i < self._sp.get_piece_size() else None

  def vocab_size(self) -> int:
    return self._sp.get_piece_size()

  def special_ids(self) -> dict[str, int]:
    ids = {"bos": self._sp.bos_id(), "eos": self._sp.eos_id(), "pad": self._sp.pad_id(),
           "unk": self._sp.unk_id()}
    return {k: v for k, v in ids.items() if v >= 0}


class HFTokenizer:
  """A Hugging Face directory's tokenizer with warm_jax's Tokenizer interface."""

  def __init__(self, backend, path: str, special: dict[str, int], tokens: dict[str, str],
               chat_template: str | None, notes: list[str]):
    self._backend = backend
    self.path = path
    self.bos_id = special.get("bos", -1)
    self.eos_id = special.get("eos", -1)
    self.pad_id = special.get("pad", -1)
    self.unk_id = special.get("unk", -1)
    self.special_tokens = dict(tokens)  # 'bos_token' -> its text, for templates
    self.chat_template = chat_template
    self.notes = list(notes)
    self.vocab_size = backend.vocab_size()

  def encode(self, text: str) -> list[int]:
    """Ids of `text` without bos/eos (the input pipeline places those)."""
    return self._backend.encode(text)

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return self._backend.encode_batch(texts)

  def decode(self, ids: Iterable[int]) -> str:
    """Text of `ids`; pad, bos and eos ids are dropped (so padded rows decode cleanly)."""
    special = {self.pad_id, self.bos_id, self.eos_id}
    return self._backend.decode([int(i) for i in ids if int(i) not in special])

  def id_to_piece(self, i: int) -> str | None:
    return self._backend.id_to_token(int(i))

  def piece_to_id(self, piece: str) -> int | None:
    return self._backend.token_to_id(piece)

  def apply_chat_template(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True,
                          **kwargs) -> str:
    """The chat template rendered for `messages` (dicts with 'role' and 'content'); with
    add_generation_prompt, ending where the assistant's answer starts. Extra keyword arguments
    reach the template (they override the special tokens, as in transformers)."""
    if not self.chat_template:
      raise TokenizerError(f"{self.path}: no chat template (neither tokenizer_config.json's "
                           "chat_template nor chat_template.jinja)")
    template = _compile(self.chat_template)
    return template.render(messages=_plain(messages), tools=None, documents=None,
                           add_generation_prompt=add_generation_prompt,
                           **{**self.special_tokens, **kwargs})

  def __repr__(self):
    return (f"HFTokenizer(vocab_size={self.vocab_size}, bos={self.bos_id}, eos={self.eos_id}, "
            f"pad={self.pad_id}, path={self.path!r})")


def _plain(messages) -> list[dict]:
  if not isinstance(messages, (list, tuple)) or not all(isinstance(m, dict) for m in messages):
    raise TypeError(f"messages must be a list of dicts with 'role' and 'content', got {messages!r}")
  return [{k: v for k, v in m.items() if v is not None} for m in messages]


def _compile(source: str):
  """The template compiled in jinja2's immutable sandbox with transformers' helpers."""
  import jinja2
  import jinja2.ext
  from jinja2.sandbox import ImmutableSandboxedEnvironment

  def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)

  def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)

  env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                      extensions=[jinja2.ext.loopcontrols])
  env.filters["tojson"] = tojson
  env.globals["raise_exception"] = raise_exception
  env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
  return env.from_string(source)


def _backend(path: str):
  fast, sp = os.path.join(path, "tokenizer.json"), os.path.join(path, "tokenizer.model")
  if os.path.exists(fast):
    return _FastBackend(fast)
  if os.path.exists(sp):
    return _SentencepieceBackend(sp)
  raise TokenizerError(f"{path}: no tokenizer.json or tokenizer.model")


def _chat_template(path: str, tok_config: dict) -> str | None:
  jinja = os.path.join(path, "chat_template.jinja")
  if os.path.exists(jinja):
    with open(jinja) as f:
      return f.read()
  template = tok_config.get("chat_template")
  if isinstance(template, list):  # named templates: the default one
    named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
    template = named.get("default")
  return template if isinstance(template, str) else None


def _config_id(value) -> int | None:
  """A *_token_id of config.json: an int, or the first of a list (Llama 3.1's several eos)."""
  if isinstance(value, list):
    value = value[0] if value else None
  return value if isinstance(value, int) and not isinstance(value, bool) else None


def load_tokenizer(path: str, model_vocab_size: int | None = None,
                   config_path: str | None = None) -> HFTokenizer:
  """The tokenizer of an HF directory (see the module docstring for the sources of its special
  ids). `model_vocab_size`: the model's; a tokenizer producing ids beyond it is an error naming
  both. `config_path`: the config.json holding *_token_id (default: the directory's)."""
  backend = _backend(path)
  tok_config = _read_json(os.path.join(path, "tokenizer_config.json"))
  special_map = _read_json(os.path.join(path, "special_tokens_map.json"))
  model_config = _read_json(config_path or os.path.join(path, "config.json"))
  notes: list[str] = []
  special, tokens = {}, {}
  for key in SPECIAL_KEYS:
    text = _token_text(tok_config.get(f"{key}_token")) or _token_text(special_map.get(f"{key}_token"))
    where = "tokenizer_config.json / special_tokens_map.json"
    if text is not None:
      i = backend.token_to_id(text)
      if i is None:
        raise TokenizerError(f"{path}: {key}_token {text!r} ({where}) is not in the vocabulary of "
                             f"{backend.path}")
      special[key], tokens[f"{key}_token"] = i, text
      continue
    i = _config_id(model_config.get(f"{key}_token_id"))
    if i is None:
      i = backend.special_ids().get(key)
    if i is not None:
      special[key] = i
      piece = backend.id_to_token(i)
      if piece is not None:
        tokens[f"{key}_token"] = piece
  if "pad" not in special and "eos" in special:
    special["pad"] = special["eos"]
    tokens.setdefault("pad_token", tokens.get("eos_token"))
    notes.append(f"no pad token in {path} (tokenizer_config.json, special_tokens_map.json, "
                 f"config.json): pad_id falls back to eos_id={special['eos']}; pass explicit masks, "
                 "since eos is also a real token")
  for key in ("bos", "eos", "pad"):
    if key not in special:
      notes.append(f"no {key} token in {path}: {key}_id is -1")
  for note in notes:
    logging.warning("warm_jax.pretrained.tokenizer: %s", note)
  tokens = {k: v for k, v in tokens.items() if v is not None}
  tok = HFTokenizer(backend, path, special, tokens, _chat_template(path, tok_config), notes)
  if model_vocab_size is not None and tok.vocab_size > model_vocab_size:
    raise TokenizerError(f"{backend.path}: the tokenizer's vocabulary has {tok.vocab_size} ids "
                         f"but the model's vocab_size is {model_vocab_size}: ids "
                         f"{model_vocab_size}..{tok.vocab_size - 1} would index past its embedding")
  for key, i in special.items():
    if model_vocab_size is not None and not 0 <= i < model_vocab_size:
      raise TokenizerError(f"{path}: {key}_id={i} is outside the model's vocab_size "
                           f"{model_vocab_size}")
  return tok
