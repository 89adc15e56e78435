"""The gold reward of the embedded task (the oracle): named criteria in [0, 1] and their weighted
total; see the package docstring for each criterion's definition."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from warm_jax.data.embedded.lexicon import CRITERIA, ENTITY_WORDS, KNOWN_WORDS, MARKER
from warm_jax.data.embedded.task import DEFAULT


def key_facts(prompt: str) -> list[str]:
  """The post's key facts: its entity words, in order of first appearance."""
  seen, out = set(), []
  for w in prompt.split():
    if w in ENTITY_WORDS and w not in seen:
      seen.add(w)
      out.append(w)
  return out


def brevity_target(n_facts: int, brevity_cfg) -> float:
  return float(brevity_cfg.base + brevity_cfg.per_fact * n_facts)


def gold_reward(prompt: str, response: str, cfg=None) -> dict[str, float]:
  """Gold (oracle) reward of `response` to `prompt`: the criteria of the module docstring + total."""
  cfg = cfg or DEFAULT
  facts = key_facts(prompt)
  words = response.split()
  n = len(words)
  word_set = set(words)

  coverage = (sum(f in word_set for f in facts) / len(facts)) if facts else 1.0

  ent_tokens = [w for w in words if w in ENTITY_WORDS]
  ent_distinct = set(ent_tokens)
  fact_set = set(facts)
  faithfulness = (1.0 - len(ent_distinct - fact_set) / len(ent_distinct)) if ent_distinct else 1.0

  target = brevity_target(len(facts), cfg.brevity)
  excess = max(0.0, n - target)
  brevity = math.exp(-(excess / (cfg.brevity.scale * target)) ** 2)

  bigrams = list(zip(words, words[1:]))
  d2 = len(set(bigrams)) / len(bigrams) if bigrams else 1.0
  dfact = len(ent_distinct) / len(ent_tokens) if ent_tokens else 1.0
  no_repetition = d2 * dfact

  if n == 0:
    well_formed = 0.0
  else:
    checks = (tuple(words[:2]) == MARKER, words[-1] == ".", all(w in KNOWN_WORDS for w in words))
    well_formed = sum(checks) / 3.0

  out = {"coverage": coverage, "faithfulness": faithfulness, "brevity": brevity,
         "no_repetition": no_repetition, "well_formed": well_formed}
  out["total"] = float(sum(cfg.weights[c] * out[c] for c in CRITERIA))
  return out


def gold_total(prompt: str, response: str, cfg=None) -> float:
  return gold_reward(prompt, response, cfg)["total"]


def gold_reward_batch(prompts: Sequence[str], responses: Sequence[str], cfg=None
                      ) -> dict[str, np.ndarray]:
  """Criteria (and total) of each (prompt, response) pair, as float32 arrays of shape [len]."""
  if len(prompts) != len(responses):
    raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
  rows = [gold_reward(p, r, cfg) for p, r in zip(prompts, responses)]
  keys = (*CRITERIA, "total")
  return {k: np.asarray([r[k] for r in rows], np.float32) for k in keys}
