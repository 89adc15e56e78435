"""Generating the embedded task: posts, responses of varied quality, preference pairs (with the
recorded label flips of WARM's corrupted-label setting) and text records, each record drawn from
its own random stream (seed, split, index)."""

from __future__ import annotations

import math
import zlib
from typing import Iterable, Iterator

import numpy as np

from warm_jax.data.embedded.gold import brevity_target, gold_total
from warm_jax.data.embedded.lexicon import (ENTITY_KIND, FILLER_SENTENCES, JUNK_WORDS, KNOWN_WORDS,
                                            MARKER, NAMES, OOD_CITIES, OOD_NAMES, OPENERS,
                                            PAIR_SPLITS, POST_PHRASES, RELATIONS, RESPONSE_FILLERS,
                                            RESPONSE_KINDS, SLOT_WORDS, SLOTS, TEXT_SPLITS,
                                            TLDR_PHRASES)
from warm_jax.data.embedded.task import default_config, fast


class Post:
  """A generated post: its text and structure (name, slot -> entity word, pronouns, relation)."""

  def __init__(self, text, name, facts, pronouns, relation):
    self.text, self.name, self.facts, self.pronouns, self.relation = (
        text, name, facts, pronouns, relation)

  @property
  def key_facts(self) -> list[str]:
    return [self.name] + list(self.facts.values())


def _choice(rng, seq):
  return seq[int(rng.integers(len(seq)))]


def sample_post(rng: np.random.Generator, cfg, ood: bool = False) -> Post:
  p = cfg.ood if ood else cfg.post
  names = OOD_NAMES if ood else NAMES
  name = _choice(rng, tuple(names))
  subj, poss, obj = names[name]
  k = int(rng.integers(p.min_slots, p.max_slots + 1))
  slots = [SLOTS[i] for i in rng.permutation(len(SLOTS))[:k]]
  facts = {}
  for s in slots:
    words = OOD_CITIES if (ood and s == "city") else SLOT_WORDS[s]
    facts[s] = _choice(rng, words)
  rel = _choice(rng, RELATIONS)
  phrases = [_choice(rng, POST_PHRASES[s]).format(x=facts[s]) for s in slots]
  sentences = [_choice(rng, OPENERS).format(rel=rel, name=name) + " " + phrases[0] + " ."]
  i = 1
  while i < len(phrases):
    if i + 1 < len(phrases) and rng.random() < 0.4:
      sentences.append(f"{subj} {phrases[i]} and {subj} {phrases[i + 1]} .")
      i += 2
    else:
      sentences.append(f"{subj} {phrases[i]} .")
      i += 1
  n_fill = int(rng.integers(p.min_fillers, p.max_fillers + 1))
  for _ in range(n_fill):
    filler = _choice(rng, FILLER_SENTENCES).format(subj=subj, obj=obj)
    sentences.insert(int(rng.integers(1, len(sentences) + 1)), filler)
  return Post(" ".join(sentences), name, facts, (subj, poss, obj), rel)


def split_of_post(post: Post, cfg) -> str:
  """'train', 'validation' or 'test' from a hash of the post's key facts (disjoint splits)."""
  h = zlib.crc32("|".join(post.key_facts).encode()) % cfg.split_modulus
  return {0: "validation", 1: "test"}.get(h, "train")


def sample_post_for_split(rng: np.random.Generator, cfg, split: str) -> Post:
  """A post of `split` ('ood' or one of train/validation/test, chosen by rejection on the hash)."""
  if split == "ood":
    return sample_post(rng, cfg, ood=True)
  for _ in range(10_000):
    post = sample_post(rng, cfg)
    if split_of_post(post, cfg) == split:
      return post
  raise RuntimeError(f"could not draw a post of split {split!r}")


def _clauses(rng, post: Post, slots=None) -> list[str]:
  slots = list(post.facts) if slots is None else slots
  order = [slots[i] for i in rng.permutation(len(slots))]
  return [_choice(rng, TLDR_PHRASES[s]).format(x=post.facts[s]) for s in order]


def _join(subject: str, clauses: list[str]) -> str:
  if not clauses:
    return f"tldr : {subject} ."
  if len(clauses) == 1:
    body = clauses[0]
  else:
    body = " , ".join(clauses[:-1]) + " and " + clauses[-1]
  return f"tldr : {subject} {body} ."


def _subject(rng, post: Post, cfg) -> str:
  if rng.random() < cfg.responses.relation_prob:
    return f"my {post.relation} {post.name}"
  return post.name


def sample_response(rng: np.random.Generator, post: Post, kind: str, cfg) -> str:
  """A response of quality `kind` (one of RESPONSE_KINDS) to `post`."""
  r = cfg.responses
  if kind == "good":
    return _join(_subject(rng, post, cfg), _clauses(rng, post))

  if kind == "verbose":
    # Filler phrases inserted between the chunks of a good response (never inside a phrase).
    clauses = _clauses(rng, post)
    chunks = [f"tldr : {_subject(rng, post, cfg)}"]
    for j, cl in enumerate(clauses):
      if j:
        chunks.append("and" if j == len(clauses) - 1 else ",")
      chunks.append(cl)
    target = brevity_target(len(post.key_facts), cfg.brevity)
    want = int(round(target * rng.uniform(*r.verbose_ratio)))
    n_words = sum(len(c.split()) for c in chunks) + 1
    while n_words < want:
      filler = _choice(rng, RESPONSE_FILLERS)
      chunks.insert(int(rng.integers(1, len(chunks) + 1)), filler)
      n_words += len(filler.split())
    return " ".join(chunks) + " ."

  if kind == "partial":
    slots = list(post.facts)
    keep_name = rng.random() < 0.7
    n_keep = int(rng.integers(0, len(slots)))  # drops at least one slot
    kept = [slots[i] for i in sorted(rng.permutation(len(slots))[:n_keep])]
    subject = post.name if keep_name else post.pronouns[0]
    return _join(subject, _clauses(rng, post, kept))

  if kind == "repetitive":
    clauses = _clauses(rng, post)
    rep = _choice(rng, clauses)
    for _ in range(int(rng.integers(1, r.max_repeats + 1))):
      clauses.insert(int(rng.integers(0, len(clauses) + 1)), rep)
    subject = _subject(rng, post, cfg)
    if rng.random() < 0.3:
      subject = f"{post.name} {post.name}"
    return _join(subject, clauses)

  if kind == "malformed":
    base_kind = "good" if rng.random() < 0.6 else "partial"
    words = sample_response(rng, post, base_kind, cfg).split()
    damage = int(rng.integers(1, 8))  # bitmask over: drop marker, drop '.', add junk
    if damage & 1:
      words = words[2:]
    if damage & 2:
      words = words[:-1]
    if damage & 4:
      for _ in range(int(rng.integers(1, r.max_junk + 1))):
        words.insert(int(rng.integers(0, len(words) + 1)), _choice(rng, JUNK_WORDS))
    return " ".join(words)

  if kind == "hallucinated":
    text = sample_response(rng, post, "good", cfg)
    words = text.split()
    facts = post.key_facts
    target = _choice(rng, facts)
    kind_of = ENTITY_KIND[target]
    pool = tuple(NAMES) if kind_of == "name" else SLOT_WORDS[kind_of]
    wrong = _choice(rng, [w for w in pool if w != target])
    return " ".join(wrong if w == target else w for w in words)

  if kind == "random":
    pool = sorted(KNOWN_WORDS - set(MARKER) - {"."} - set(OOD_NAMES) - set(OOD_CITIES))
    n = int(rng.integers(r.random_len[0], r.random_len[1] + 1))
    body = " ".join(_choice(rng, pool) for _ in range(n))
    return f"tldr : {body} ."

  raise ValueError(f"unknown response kind {kind!r}; choose one of {RESPONSE_KINDS}")


def _kind_sampler(mixture) -> tuple[tuple[str, ...], np.ndarray]:
  kinds = tuple(k for k in RESPONSE_KINDS if mixture.get(k, 0.0) > 0)
  probs = np.asarray([mixture[k] for k in kinds], np.float64)
  return kinds, probs / probs.sum()


_SPLIT_CODE = {"train": 1, "validation": 2, "test": 3, "ood": 4, "corpus": 5, "sft": 6,
               "corpus_validation": 7, "sft_validation": 8}
_FLIP_STREAM = 99


def _rng(cfg, split: str, i: int) -> np.random.Generator:
  # One independent stream per record: record i does not depend on the split's size.
  return np.random.default_rng([int(cfg.seed), _SPLIT_CODE[split], int(i)])


def _f32(x: float) -> float:
  # Records store gold values rounded to float32, exactly what the TFDS files hold.
  return float(np.float32(x))


def _sigmoid(x: float) -> float:
  if x >= 0:
    return 1.0 / (1.0 + math.exp(-x))
  e = math.exp(x)
  return e / (1.0 + e)


def make_pair(cfg, split: str, i: int) -> dict:
  """Record i of a preference split, before label flipping."""
  cfg = fast(cfg)
  rng = _rng(cfg, split, i)
  post = sample_post_for_split(rng, cfg, "ood" if split == "ood" else split)
  kinds, probs = _kind_sampler(cfg.mixture.pairs)
  a = sample_response(rng, post, kinds[rng.choice(len(kinds), p=probs)], cfg)
  for _ in range(100):
    b = sample_response(rng, post, kinds[rng.choice(len(kinds), p=probs)], cfg)
    if b != a:
      break
  ga, gb = gold_total(post.text, a, cfg), gold_total(post.text, b, cfg)
  if cfg.bt_temperature > 0:
    a_wins = rng.random() < _sigmoid((ga - gb) / cfg.bt_temperature)
  else:
    a_wins = ga > gb or (ga == gb and rng.random() < 0.5)
  chosen, rejected, gc, gr = (a, b, ga, gb) if a_wins else (b, a, gb, ga)
  return {"id": int(i), "prompt": post.text, "chosen": chosen, "rejected": rejected,
          "flipped": False, "gold_chosen": _f32(gc), "gold_rejected": _f32(gr)}


def flip_indices(cfg, n: int) -> np.ndarray:
  """The sorted indices of the train records whose labels are flipped: round(flip_fraction * n)."""
  k = int(round(cfg.flip_fraction * n))
  rng = np.random.default_rng([int(cfg.seed), _FLIP_STREAM, n])
  return np.sort(rng.choice(n, size=k, replace=False)) if k else np.zeros((0,), np.int64)


def _flip(rec: dict) -> dict:
  return {**rec, "chosen": rec["rejected"], "rejected": rec["chosen"],
          "gold_chosen": rec["gold_rejected"], "gold_rejected": rec["gold_chosen"],
          "flipped": not rec["flipped"]}


def unflip(rec: dict) -> dict:
  """The clean Bradley-Terry record behind a (possibly flipped) record."""
  return _flip(rec) if rec["flipped"] else dict(rec)


def preference_records(cfg, split: str, n: int | None = None) -> list[dict]:
  """All records of a preference split (train/validation/test/ood), flips applied on train."""
  if split not in PAIR_SPLITS:
    raise ValueError(f"unknown preference split {split!r}; choose one of {PAIR_SPLITS}")
  cfg = fast(cfg)
  n = cfg.sizes[split] if n is None else n
  recs = [make_pair(cfg, split, i) for i in range(n)]
  if split == "train":
    for i in flip_indices(cfg, n):
      recs[i] = _flip(recs[i])
  return recs


def make_text(cfg, split: str, i: int) -> dict:
  """Record i of a text split ('corpus': all kinds of responses, 'sft': mostly decent ones, on
  train-bucket posts; 'corpus_validation' / 'sft_validation': the same mixtures on validation-bucket
  posts, for held-out LM losses)."""
  cfg = fast(cfg)
  rng = _rng(cfg, split, i)
  base, _, held_out = split.partition("_")
  post = sample_post_for_split(rng, cfg, "validation" if held_out else "train")
  kinds, probs = _kind_sampler(cfg.mixture[base])
  kind = kinds[rng.choice(len(kinds), p=probs)]
  resp = sample_response(rng, post, kind, cfg)
  return {"id": int(i), "prompt": post.text, "response": resp,
          "gold": _f32(gold_total(post.text, resp, cfg)), "kind": kind}


def text_records(cfg, split: str = "corpus", n: int | None = None) -> Iterator[dict]:
  if split not in TEXT_SPLITS:
    raise ValueError(f"unknown text split {split!r}; choose one of {TEXT_SPLITS}")
  cfg = fast(cfg)
  n = cfg.sizes[split] if n is None else n
  for i in range(n):
    yield make_text(cfg, split, i)


def records(cfg, split: str) -> Iterable[dict]:
  return preference_records(cfg, split) if split in PAIR_SPLITS else text_records(cfg, split)


def corpus_texts(cfg=None, n: int | None = None) -> Iterator[str]:
  """'prompt response' texts of the corpus split (what the tokenizer is trained on)."""
  cfg = cfg or default_config()
  for r in text_records(cfg, "corpus", n):
    yield r["prompt"] + " " + r["response"]
