"""The embedded task's words: names, cities and the other entity lists, templates, response kinds,
criteria and splits. Entity words are single words, appear in no template and in exactly one list,
so a text's facts are its entity words (`warm_jax.data.embedded.gold.key_facts`)."""

from __future__ import annotations

MARKER = ("tldr", ":")

NAMES = {  # name -> (subject, possessive, object) pronouns
    **{n: ("he", "his", "him") for n in
       ("tom", "ben", "sam", "joe", "max", "leo", "dan", "jack", "paul", "mark", "luke", "adam")},
    **{n: ("she", "her", "her") for n in
       ("anna", "lisa", "mia", "kate", "eva", "emma", "sara", "lucy", "nora", "jane", "ruth", "amy")},
}
OOD_NAMES = {
    **{n: ("he", "his", "him") for n in ("omar", "ivan", "raj", "hugo", "felix", "theo")},
    **{n: ("she", "her", "her") for n in ("zoe", "ines", "yara", "maya", "iris", "olga")},
}
CITIES = ("oslo", "paris", "rome", "lima", "cairo", "tokyo", "berlin", "madrid", "dublin", "vienna",
          "prague", "boston", "denver", "seattle", "sydney", "lisbon")
OOD_CITIES = ("quito", "hanoi", "nairobi", "tbilisi", "reykjavik", "kyoto", "havana", "manila")
SLOT_WORDS = {
    "city": CITIES,
    "pet": ("dog", "cat", "parrot", "rabbit", "hamster", "turtle", "goldfish", "puppy"),
    "job": ("chef", "nurse", "pilot", "teacher", "baker", "lawyer", "farmer", "plumber", "dentist",
            "carpenter", "journalist", "mechanic"),
    "hobby": ("jazz", "chess", "tennis", "hiking", "yoga", "surfing", "knitting", "gardening",
              "poetry", "football", "cycling", "photography"),
    "food": ("pizza", "sushi", "pasta", "tacos", "curry", "noodles", "pancakes", "burgers"),
    "instrument": ("guitar", "piano", "drums", "violin", "flute", "cello", "trumpet", "banjo"),
}
SLOTS = tuple(SLOT_WORDS)
RELATIONS = ("friend", "brother", "sister", "cousin", "neighbour", "boss", "roommate", "colleague")

# Post phrasings per slot ({x} = the entity word), and the TL;DR phrasings.
POST_PHRASES = {
    "city": ("moved to {x} last year", "lives in {x} now", "just moved to {x}",
             "has been living in {x} for a while"),
    "pet": ("has a {x}", "adopted a {x}", "got a {x} recently", "takes care of a {x}"),
    "job": ("works as a {x}", "is a {x}", "got a job as a {x}", "has been a {x} for years"),
    "hobby": ("loves {x}", "is really into {x}", "spends every weekend on {x}",
              "is obsessed with {x}"),
    "food": ("eats {x} every day", "cannot stop eating {x}", "makes great {x}"),
    "instrument": ("plays the {x}", "is learning the {x}", "practises the {x} every night"),
}
TLDR_PHRASES = {
    "city": ("moved to {x}", "lives in {x}", "is in {x}"),
    "pet": ("has a {x}", "got a {x}"),
    "job": ("works as a {x}", "is a {x}"),
    "hobby": ("loves {x}", "likes {x}", "is into {x}"),
    "food": ("eats {x}", "likes {x}"),
    "instrument": ("plays the {x}", "plays {x}"),
}
OPENERS = ("my {rel} {name}", "so my {rel} {name}", "my {rel} {name}", "ok so my {rel} {name}")
FILLER_SENTENCES = (
    "honestly it has been a long week .", "anyway i just wanted to share this .",
    "i think that is pretty cool .", "we talked about it yesterday .",
    "not sure what to think about it .", "it was a big surprise for everyone .",
    "i saw {obj} last weekend .", "life is funny sometimes .", "we have known each other forever .",
    "{subj} told me all about it over coffee .", "i am happy for {obj} .",
)
RESPONSE_FILLERS = ("basically", "i think", "you know", "to be honest", "pretty much",
                    "as far as i know", "which is nice", "these days", "a lot", "really",
                    "and stuff", "or so", "at the moment", "if i remember right")
JUNK_WORDS = ("##", "@@", "~~", "qq", "zx", "&&", "<br>", "xq")

RESPONSE_KINDS = ("good", "verbose", "partial", "repetitive", "malformed", "hallucinated", "random")
CRITERIA = ("coverage", "faithfulness", "brevity", "no_repetition", "well_formed")
PAIR_SPLITS = ("train", "validation", "test", "ood")
TEXT_SPLITS = ("corpus", "sft", "corpus_validation", "sft_validation")
SPLITS = PAIR_SPLITS + TEXT_SPLITS

ENTITY_KIND: dict[str, str] = {}
for _n in (*NAMES, *OOD_NAMES):
  ENTITY_KIND[_n] = "name"
for _s, _ws in SLOT_WORDS.items():
  for _w in _ws:
    ENTITY_KIND[_w] = _s
for _w in OOD_CITIES:
  ENTITY_KIND[_w] = "city"
ENTITY_WORDS = frozenset(ENTITY_KIND)


def _template_words() -> set[str]:
  words = set(MARKER) | {".", ","}
  texts = [*OPENERS, *FILLER_SENTENCES, *RESPONSE_FILLERS, *RELATIONS, "and"]
  for table in (POST_PHRASES, TLDR_PHRASES):
    for phrases in table.values():
      texts.extend(phrases)
  for pron in (*NAMES.values(), *OOD_NAMES.values()):
    texts.extend(pron)
  for t in texts:
    words.update(w for w in t.split() if not w.startswith("{"))
  return words


TEMPLATE_WORDS = frozenset(_template_words())
assert not TEMPLATE_WORDS & ENTITY_WORDS, TEMPLATE_WORDS & ENTITY_WORDS
assert not set(JUNK_WORDS) & (TEMPLATE_WORDS | ENTITY_WORDS)
KNOWN_WORDS = TEMPLATE_WORDS | ENTITY_WORDS
LEXICON = {"names": tuple(NAMES), "ood_names": tuple(OOD_NAMES), "ood_cities": OOD_CITIES,
           **SLOT_WORDS}
