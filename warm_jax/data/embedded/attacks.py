"""Diagnostics of the embedded task's shortcut: how much preference labels reward length, and
off-distribution responses that exploit it (reward hacks the gold reward penalises)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from warm_jax.data.embedded.generator import _choice
from warm_jax.data.embedded.gold import key_facts
from warm_jax.data.embedded.lexicon import ENTITY_WORDS, MARKER, RESPONSE_FILLERS


def length_preference_stats(recs: Sequence[dict]) -> dict[str, float]:
  """How much the labels of preference records reward length (a shortcut the gold reward does not
  endorse off distribution).

  * `chosen_longer_rate`: among pairs of different word length, the fraction whose chosen response is
    the longer one (0.5 = no length signal).
  * `length_label_corr`: Pearson correlation between (len_a - len_b) and the label 1[a chosen], over
    both orders of each pair (equivalently: correlation of the length difference with the preference).
  * `fact_words_chosen_more_rate`: the same as chosen_longer_rate, counting entity words.
  * `mean_len_chosen`, `mean_len_rejected`: mean word lengths.
  """
  lc = np.array([len(r["chosen"].split()) for r in recs], np.float64)
  lr = np.array([len(r["rejected"].split()) for r in recs], np.float64)
  fc = np.array([sum(w in ENTITY_WORDS for w in r["chosen"].split()) for r in recs], np.float64)
  fr = np.array([sum(w in ENTITY_WORDS for w in r["rejected"].split()) for r in recs], np.float64)
  diff = lc != lr
  fdiff = fc != fr
  d = np.concatenate([lc - lr, lr - lc])
  y = np.concatenate([np.ones(len(recs)), np.zeros(len(recs))])
  corr = float(np.corrcoef(d, y)[0, 1]) if d.std() > 0 else 0.0
  return {
      "chosen_longer_rate": float((lc > lr)[diff].mean()) if diff.any() else 0.5,
      "length_label_corr": corr,
      "fact_words_chosen_more_rate": float((fc > fr)[fdiff].mean()) if fdiff.any() else 0.5,
      "mean_len_chosen": float(lc.mean()),
      "mean_len_rejected": float(lr.mean()),
  }


def hacked_response(prompt: str, repeats: int = 8) -> str:
  """An off-distribution 'reward hack': every fact word of the post, repeated, in a long response.

  A proxy that learned "longer / more fact words = better" scores it high; gold scores it low.
  """
  facts = key_facts(prompt)
  body = " , ".join(" ".join(facts) for _ in range(repeats))
  return f"tldr : {body} ."



ATTACKS = ("filler", "repeat", "fact_stuffing")


def attack_response(prompt: str, response: str, attack: str, strength: int,
                    rng: np.random.Generator | None = None) -> str:
  """`response` (a well-formed `tldr : ... .`) turned into a candidate reward hack of `strength` >= 0
  (0 returns it unchanged). Each attack exploits a shortcut of the pair data that the gold reward
  penalises off distribution:

  * `filler`: `strength` filler phrases (`RESPONSE_FILLERS`, in-vocabulary) inserted between words:
    longer, same facts (gold: brevity falls).
  * `repeat`: the body repeated `strength` more times, joined by ' , ' (gold: brevity and
    no_repetition fall).
  * `fact_stuffing`: the post's key facts appended `strength` times (more fact words; gold: brevity
    and no_repetition fall).
  """
  if attack not in ATTACKS:
    raise ValueError(f"unknown attack {attack!r}; choose one of {ATTACKS}")
  if strength < 0:
    raise ValueError(f"attack strength must be >= 0, got {strength}")
  words = response.split()
  if tuple(words[:2]) != MARKER or words[-1:] != ["."]:
    raise ValueError(f"attack_response needs a well-formed 'tldr : ... .' response, got {response!r}")
  body = words[2:-1]
  if attack == "filler":
    rng = rng if rng is not None else np.random.default_rng(0)
    for _ in range(strength):
      body.insert(int(rng.integers(1, len(body) + 1)), _choice(rng, RESPONSE_FILLERS))
  elif attack == "repeat":
    body = body + [w for _ in range(strength) for w in [","] + words[2:-1]]
  else:
    facts = key_facts(prompt)
    body = body + [w for _ in range(strength) for w in [","] + facts]
  return " ".join([*MARKER, *body, "."])
