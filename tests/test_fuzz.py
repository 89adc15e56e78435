"""Fuzzed configs and fuzzed data records (hypothesis): every bad value is refused with a message
naming it, every good one is accepted.

Configs: the `tiny` variant of each trainer's and each study's experiment, one field replaced by a
drawn value (ints incl. 0, negatives and huge ones; floats incl. nan, inf, -0.0; bools; strings;
None; lists), then its validation. What each field accepts is declared once, as the `Rule`s of
`warm_jax.configs` that the trainers and studies validate with (`train.reward_model.RULES`, ...):
the oracle is those rules. What is tested is that validation applies them and nothing else, that
every rule is total (a value of any type is refused with `InputError`, never a TypeError from
`None < 0` or a ZeroDivisionError), that the message names the changed field (a rule that reads
another field names both), that every field of every config has a rule (or is read elsewhere, and
listed here with where), and that no field accepts a value of no meaning (None, a list, a dict)
unless its rule says so. ml_collections' ConfigDict is type-safe: an assignment it refuses raises
TypeError naming the field itself (as a `--config.x=v` override of the wrong type does), which
counts as a rejection when the rules agree.

Records: `warm_jax.data.schema.validate_record` and the raw readers (JSON lines / arrays, plain or
compressed), against an oracle written from the schema module's docstring.
"""

import bz2
import copy
import gzip
import json
import lzma
import os

import pytest
from conftest import experiment
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from warm_jax import configs, errors
from warm_jax.data import schema
from warm_jax.studies import active_queries, best_of_n, dpo as dpo_study, model_written_evals
from warm_jax.studies import merge_methods, modpo, rewarded_soups, rl as rl_study, rlp, warp
from warm_jax.studies.warm import bon, label_noise, rl as warm_rl
from warm_jax.train import lm
from warm_jax.train import reward_model as rm_train
from warm_jax.train import rlp as rlp_train

# Examples per run (hypothesis stops at max_examples): CONFIG_EXAMPLES fuzzed values for each of
# the configs below, RECORD_EXAMPLES records (+ the explicit @examples), FILE_EXAMPLES JSON-lines
# files and FILE_EXAMPLES JSON-array files.
CONFIG_EXAMPLES = 400
RECORD_EXAMPLES = 2000
FILE_EXAMPLES = 300


# =============================================================================== config oracle
def _rl_ppo():
  c = experiment("rl").get_config("tiny")
  c.rl.algorithm = "ppo"
  return c


def _rl_grpo_ema():  # GRPO's and the EMA anchor's fields, which no experiment's tiny config holds
  c = experiment("rl").get_config("tiny")
  c.rl.algorithm = "grpo"
  c.rl.grpo_std, c.rl.anchor, c.rl.ema_rate = True, "ema", 0.1
  return c


def _dpo_ema():
  c = experiment("dpo").get_config("tiny")
  c.dpo.anchor, c.dpo.ema_rate = "ema", 0.1
  return c


def _tiny(name):
  return lambda: experiment(name).get_config("tiny")


# name -> (tiny config, its rules, the validation the code runs on it)
BASES = {
    "pretrain": (_tiny("pretrain"), lm.RULES, lm.validate_config),
    "reward_model": (_tiny("reward_model"), rm_train.RULES, rm_train.validate_config),
    # its optional fields, absent from the experiment configs (their fingerprints stay)
    "reward_model_options": (lambda: _rm_options(experiment("reward_model").get_config("tiny")),
                             rm_train.RULES, rm_train.validate_config),
    "dpo": (_tiny("dpo"), dpo_study.rules(), dpo_study.validate),
    "rl": (_tiny("rl"), rl_study.rules(), rl_study.validate),
    "rl_ppo": (_rl_ppo, rl_study.rules(), rl_study.validate),
    "rl_grpo_ema": (_rl_grpo_ema, rl_study.rules(), rl_study.validate),
    "dpo_ema": (_dpo_ema, dpo_study.rules(), dpo_study.validate),
    "warp": (_tiny("warp"), warp.RULES, warp.validate),
    "merge_methods": (_tiny("merge_methods"), merge_methods.RULES,
                      lambda c: configs.check(c, merge_methods.RULES)),
    "rlp_uml": (lambda: rlp.uml_config(experiment("rlp").get_config("tiny")), rlp_train.RULES,
                rlp_train.validate_config),
    "rlp": (_tiny("rlp"), rlp.rules(), lambda c: configs.check(c, rlp.rules())),
    "best_of_n": (lambda: _reward(experiment("best_of_n").get_config("tiny")), best_of_n.RULES,
                  best_of_n.validate),
    "warm_label_noise": (_tiny("warm_label_noise"), label_noise.RULES,
                         lambda c: configs.check(c, label_noise.RULES)),
    "warm_bon": (_tiny("warm_bon"), bon.RULES, lambda c: configs.check(c, bon.RULES)),
    "warm_rl": (_tiny("warm_rl"), warm_rl.RULES, lambda c: configs.check(c, warm_rl.RULES)),
    "rewarded_soups": (_tiny("rewarded_soups"), rewarded_soups.rules(),
                       lambda c: configs.check(c, rewarded_soups.rules())),
    "modpo": (_tiny("modpo"), modpo.rules(), lambda c: configs.check(c, modpo.rules())),
    "active_queries": (_tiny("active_queries"), active_queries.rules(), active_queries.validate),
    "model_written_evals": (lambda: _paths(experiment("model_written_evals").get_config("tiny")),
                            model_written_evals.rules(), model_written_evals.validate),
}


def _reward(c):
  c.reward.paths = ("runs/rm",)
  return c


def _rm_options(c):
  c.train.center_rewards = 0.01
  c.train.store_norm = "validation"
  c.init_head = ""
  return c


def _paths(c):
  c.generator, c.soups, c.pm.path = "runs/pretrain", "runs/soups", "runs/rm"
  return c


# Leaves no rule owns here (read elsewhere, or free text), so the fuzzer leaves them out.
NOT_VALIDATED_HERE = {
    "variant": "checked by get_config",
    "init_step": "the reward-model study",
    "data.name": "registry, at load time", "data.tokenizer": "a path, at load time",
    "data.train_split": "at load time", "data.task": "warm_jax.data.embedded.validate, at load time",
    "data.data_dir": "at load time",
    "mesh.axes": "build_setup / sharding", "mesh.shape": "build_setup / sharding",
    "sharding.rules": "sharding.validate_rules", "train.eval_splits": "at load time",
    "gold.path": "a path (its rule: with kind 'rm')",
    "reward.kind": "the RL study", "reward.path": "the RL study", "reward.paths": "the RL study",
    "reward.weights": "the RL study", "reward.offsets": "multi_objective",
    "reward.scales": "multi_objective", "reward.name": "free text (best-of-N's label)",
    "label_noise": "a path, read by the study", "soups": "a path, read by the study",
    "rm": "the reward-model rules, applied with the prefix 'rm.' (fuzzed as reward_model)",
    "objectives.rm_paths": "paths (their count has a rule)",
}


_CACHE = {}


def base_config(name):
  if name not in _CACHE:
    _CACHE[name] = BASES[name][0]()
  return _CACHE[name]


def leaves(c, prefix=""):
  out = {}
  for k, v in c.items():
    if hasattr(v, "items") and f"{prefix}{k}" not in NOT_VALIDATED_HERE:
      out.update(leaves(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def fields(name):
  """The fields of a base config that a rule owns (those present in it)."""
  present = leaves(base_config(name))
  return sorted({r.field for r in BASES[name][1] if r.field in present})


# A value of no meaning to any field: refused everywhere unless the rules say otherwise.
MEANINGLESS = (None, [], {}, {"a": 1})
# ... except where it has one.
MEANINGFUL = {"optim.clip_norm": (None,),  # no clipping
              "morl_lambdas": ([],), "lambdas": ([],),  # no MORL runs; no soups to evaluate
              "warm.members": ([],),  # no WARM of the refined models
              "objectives.rm_paths": ([],),  # train the criteria's reward models
              "merges.ties_densities": ([],), "merges.dare_drops": ([],)}  # no TIES, DARE rows

ENUM_WORDS = ("float32", "bfloat16", "float16", "adamw", "rmsprop", "stop", "skip", "pretrain",
              "sft", "sigmoid", "ipo", "modpo", "reinforce", "rloo", "ppo", "grpo", "init", "ema",
              "random",
              "disagreement", "entities", "text", "single", "average", "ensemble", "embedded", "rm",
              "coverage", "brevity", "uml", "spg")
SPECIAL_VALUES = (
    0, 1, 2, 3, 4, 6, 8, 16, 32, 48, 64, -1, -2, 2**31, 2**32 - 1, 2**32, 2**63, -2**63, 10**30,
    0.0, -0.0, 0.5, 0.4999, 1.0, 0.999, 1e-12, -1e-12, 1e308, float("nan"), float("inf"),
    float("-inf"), True, False, None, "", " ", "x", "ünï", "0", "nan", "None", "ADAMW", " adamw",
    *ENUM_WORDS, [], [1], (1, 2), (2, 4), (0.0, 0.5), (0.5, 0.5), ("uml", "spg"), ("uml",),
    ("coverage", "brevity"), (16, 8), {}, {"a": 1})
VALUES = st.one_of(
    st.sampled_from(SPECIAL_VALUES), st.integers(), st.integers(-3, 130), st.floats(),
    st.floats(-0.5, 1.5), st.booleans(), st.none(), st.text(max_size=8),
    st.lists(st.integers(), max_size=2), st.lists(st.floats(-0.5, 1.5), max_size=3))


def _assign(cfg, path, value):
  """cfg.<path> = value, as a `--config.<path>=...` override sets it (ConfigDict's type check
  included); returns the TypeError ConfigDict raised, or None."""
  *parents, leaf = path.split(".")
  node = cfg
  for p in parents:
    node = node[p]
  try:
    node[leaf] = value
  except TypeError as e:
    return e
  return None


@pytest.mark.parametrize("name", sorted(BASES))
def test_every_field_has_a_rule_and_tiny_configs_are_valid(name):
  c = base_config(name)
  BASES[name][2](copy.deepcopy(c))  # the unmodified tiny config passes
  owned = set(fields(name))
  missing = [p for p in leaves(c) if p not in owned and p not in NOT_VALIDATED_HERE]
  assert not missing, f"fields of {name} with no rule: {missing}"


@pytest.mark.parametrize("name", sorted(BASES))
def test_no_field_accepts_a_meaningless_value(name):
  for path in fields(name):
    for value in MEANINGLESS:
      if value in MEANINGFUL.get(path, ()):
        continue
      cfg = copy.deepcopy(base_config(name))
      if _assign(cfg, path, value) is None:
        with pytest.raises(errors.InputError, match=f"config.{path}"):
          BASES[name][2](cfg)


@pytest.mark.parametrize("name", sorted(BASES))
@settings(max_examples=CONFIG_EXAMPLES, deadline=None, derandomize=False,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_config_field_is_accepted_or_rejected_by_name(name, data):
  base = base_config(name)
  rules = BASES[name][1]
  path = data.draw(st.sampled_from(fields(name)), label="field")
  value = data.draw(VALUES, label="value")
  cfg = copy.deepcopy(base)
  refused = _assign(cfg, path, value)
  leaf = path.rsplit(".", 1)[-1]
  if refused is not None:  # ConfigDict's own type check: must name the field, and be right
    assert f"'{leaf}'" in str(refused), refused
    probe = copy.deepcopy(base)
    with probe.unlocked():  # what the rules would say of the value, were it stored
      *parents, last = path.split(".")
      node = probe
      for k in parents:
        node = node[k]
      object.__getattribute__(node, "_fields")[last] = value
    assert configs.violation(probe, rules), (
        f"config.{path}={value!r} is valid by its rules but ConfigDict refuses it: {refused}")
    return
  why = configs.violation(cfg, rules)  # raises nothing for a value of any type (total rules)
  validate = BASES[name][2]
  if why is None:
    validate(cfg)  # any exception fails the test
  else:
    with pytest.raises(errors.InputError) as e:
      validate(cfg)
    assert str(e.value) == why
    assert f"config.{path}=" in why, f"config.{path}={value!r} rejected without naming it: {why}"


# =============================================================================== record oracle
# From warm_jax/data/schema.py's docstring: preference records need id, prompt, chosen, rejected;
# prompt records id, prompt (+ an optional response); each a str that is not empty or whitespace
# only. `labels` (preference records only) maps objective names (non-blank str) to the int 0 or 1
# (not a bool). The kind, when not given, is 'preference' iff the record has 'chosen' or
# 'rejected'. Ranking records (only when asked for) need id, prompt as above and chosen, rejected
# as non-empty lists of such str; no labels. Other keys are free.
def good_text(v):
  return isinstance(v, str) and bool(v.strip())


def good_texts(v):
  return isinstance(v, list) and bool(v) and all(good_text(x) for x in v)


def bad_fields(record, kind):
  """None for a non-dict record, else the set of fields that make the record invalid."""
  if not isinstance(record, dict):
    return None
  kind = kind or ("preference" if ("chosen" in record or "rejected" in record) else "prompt")
  required = ("id", "prompt", "chosen", "rejected") if kind == "preference" else ("id", "prompt")
  bad = {f for f in required if f not in record or not good_text(record[f])}
  if kind == "ranking":
    bad |= {f for f in ("chosen", "rejected") if f not in record or not good_texts(record[f])}
  if kind == "prompt" and "response" in record and not good_text(record["response"]):
    bad.add("response")
  if "labels" in record:
    labels = record["labels"]
    if (kind != "preference" or not isinstance(labels, dict)
        or any(not good_text(o) or type(v) is not int or v not in (0, 1)
               for o, v in labels.items())):
      bad.add("labels")
  return bad


TEXTS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", " ", "\t\n", "\u2003", "\u200b", "ok", "ünïcödé ✓", "\x00", "\r\n x"]))
GOOD_TEXTS = st.text(min_size=1, max_size=12).filter(lambda s: bool(s.strip()))
ANY_VALUES = st.one_of(
    TEXTS, st.integers(), st.floats(), st.none(), st.booleans(),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
FIELD_VALUES = st.one_of(GOOD_TEXTS, GOOD_TEXTS, GOOD_TEXTS, ANY_VALUES)
LABEL_KEYS = st.one_of(st.sampled_from(["better", "safer", "helpful"]), st.sampled_from(["", " "]),
                       st.text(max_size=6), st.integers(0, 2), st.none())
LABEL_VALUES = st.one_of(st.sampled_from([0, 1]),
                         st.sampled_from([True, False, 2, -1, 0.0, 1.0, "0", None, [0]]))
PRESENT = st.sampled_from([True, True, True, True, True, False])
ANSWER_LISTS = st.one_of(st.lists(GOOD_TEXTS, min_size=1, max_size=3),
                         st.lists(FIELD_VALUES, max_size=3))  # a ranking record's answers


@st.composite
def records(draw):
  rec = {}
  for name in ("id", "prompt", "chosen", "rejected", "response"):
    if draw(PRESENT if name in ("id", "prompt") else st.booleans()):
      rec[name] = draw(ANSWER_LISTS if name in ("chosen", "rejected") and draw(st.booleans())
                       else FIELD_VALUES)
  if draw(st.booleans()):
    rec["labels"] = draw(st.one_of(st.dictionaries(LABEL_KEYS, LABEL_VALUES, max_size=3),
                                   st.dictionaries(LABEL_KEYS, LABEL_VALUES, max_size=3),
                                   ANY_VALUES))
  if draw(st.booleans()):  # a builder's extra typed field: free
    rec[draw(st.sampled_from(["sentiment", "is_chosen_safe", "batch"]))] = draw(ANY_VALUES)
  return rec


SOURCES = st.sampled_from(["train.jsonl", "comparisons/batch3.json.gz", "data/ünï.json"])


_PAIR = {"id": "a", "prompt": "p", "chosen": "c", "rejected": "r"}


@settings(max_examples=RECORD_EXAMPLES, deadline=None)
@example(record={**_PAIR, "labels": {" ": 0}}, kind=None, source="x.jsonl", index=3)
@example(record={**_PAIR, "labels": {"safer": True}}, kind=None, source="x.jsonl", index=3)
@example(record={**_PAIR, "labels": {"safer": 1, "better": 0}}, kind=None, source="x.jsonl",
         index=3)
@example(record={"id": "a", "prompt": "p", "response": " \n"}, kind=None, source="x", index=0)
@example(record={**_PAIR, "chosen": ["c", "d"], "rejected": []}, kind="ranking", source="x", index=1)
@example(record={**_PAIR, "chosen": ["c", " "], "rejected": ["r"]}, kind="ranking", source="x",
         index=1)
@example(record={**_PAIR, "chosen": ["c"], "rejected": ["r"]}, kind="ranking", source="x", index=1)
@given(record=st.one_of(records(), records(), records(), ANY_VALUES),
       kind=st.sampled_from([None, None, "preference", "prompt", "ranking"]), source=SOURCES,
       index=st.integers(0, 10**6))
def test_fuzzed_record_passes_unchanged_or_is_named(record, kind, source, index):
  before = repr(record)
  bad = bad_fields(record, kind)
  if bad == set():
    assert schema.validate_record(record, source=source, index=index, kind=kind) is record
    assert repr(record) == before
    return
  with pytest.raises(ValueError) as e:
    schema.validate_record(record, source=source, index=index, kind=kind)
  msg = str(e.value)
  assert msg.startswith(f"{source}, record {index}: "), msg
  if bad is None:
    assert "dict" in msg, msg
  else:
    assert any(f"'{f}'" in msg or f"'{f}/" in msg for f in bad), (bad, msg)
  assert repr(record) == before


# ----------------------------------------------------------------------------- raw files
_COMPRESS = {"plain": lambda b: b, "gzip": gzip.compress, "xz": lzma.compress,
             "bz2": bz2.compress}
_MAGICS = (b"\x1f\x8b", b"\xfd7zXZ\x00", b"BZh")
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TEXTS),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=8)
DEEP = b"[" * 100_000 + b"]" * 100_000  # valid JSON, too deep for python's parser


@st.composite
def raw_lines(draw):
  """One line of a JSON-lines file (no newline in it)."""
  kind = draw(st.sampled_from(["record"] * 4 + ["value", "truncated", "garbage", "blank", "deep"]))
  if kind == "record":
    return json.dumps(draw(records()), ensure_ascii=draw(st.booleans())).encode()
  if kind == "value":
    return json.dumps(draw(JSON_VALUES)).encode()
  if kind == "truncated":
    text = json.dumps(draw(records())).encode()
    return text[:draw(st.integers(1, max(1, len(text) - 1)))]
  if kind == "garbage":
    return draw(st.binary(min_size=1, max_size=16).filter(
        lambda b: b"\n" not in b and b"\r" not in b))
  if kind == "blank":
    return draw(st.sampled_from([b"", b" ", b"\t", b"  \t "]))
  return DEEP


def expected_lines(lines):
  """[(line, object)] before the first bad line, and that line (None: the file is good)."""
  out, pending = [], None
  for n, b in enumerate(lines, start=1):
    try:
      text = b.decode("utf-8")
    except UnicodeDecodeError:
      text = None
    if text is not None and not text.strip():
      pending = pending or n
      continue
    if pending is not None:
      return out, pending
    if text is None:
      return out, n
    try:
      out.append((n, json.loads(text)))
    except (ValueError, RecursionError):
      return out, n
  return out, None


def _write(directory, name, content, compression, cut):
  data = _COMPRESS[compression](content)
  if cut is not None:
    data = data[:max(6, min(cut, len(data) - 1))]
  path = os.path.join(directory, name)
  with open(path, "wb") as f:
    f.write(data)
  return path


def _read_all(reader, path):
  items = []
  try:
    for item in reader(path):
      items.append(item)
  except ValueError as e:
    return items, str(e)
  return items, None


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("fuzz_files"))


@settings(max_examples=FILE_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(lines=st.lists(raw_lines(), max_size=6), trailing=st.sampled_from([b"", b"\n", b"\n\n \n"]),
       compression=st.sampled_from(sorted(_COMPRESS)), cut=st.one_of(st.none(), st.integers(0, 400)))
def test_fuzzed_json_lines_file_is_read_or_refused_naming_file_and_line(fuzz_dir, lines, trailing,
                                                                         compression, cut):
  content = b"\n".join(lines) + (trailing if lines else b"")
  cut = None if compression == "plain" else cut
  path = _write(fuzz_dir, "data.jsonl", content, compression, cut)
  items, err = _read_all(schema.iter_json_lines, path)
  want, bad_line = expected_lines(content.split(b"\n") if content else [])
  assert repr(items) == repr(want[:len(items)]), "yielded records differ from the file's"
  if cut is not None or (compression == "plain" and content.startswith(_MAGICS)):
    # A truncated stream (or plain bytes that look compressed): refused, naming the file.
    assert err is not None and err.startswith(f"{path}, record "), err
  elif bad_line is None:
    assert err is None, err
    assert len(items) == len(want)
  else:
    assert err is not None and err.startswith(f"{path}, record {bad_line}: "), (bad_line, err)
    assert len(items) == len(want)


@st.composite
def array_files(draw):
  values = draw(st.lists(st.one_of(records(), JSON_VALUES), max_size=4))
  text = json.dumps(values, indent=draw(st.sampled_from([None, 1]))).encode()
  kind = draw(st.sampled_from(["valid", "valid", "not_list", "truncated", "garbage", "deep",
                               "empty"]))
  if kind == "not_list":
    return json.dumps(draw(JSON_VALUES)).encode()
  if kind == "truncated":
    return text[:draw(st.integers(0, len(text) - 1))]
  if kind == "garbage":
    at = draw(st.integers(0, len(text)))
    return text[:at] + draw(st.binary(min_size=1, max_size=8)) + text[at:]
  if kind == "deep":
    return DEEP
  if kind == "empty":
    return b""
  return text


@settings(max_examples=FILE_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(content=array_files(), compression=st.sampled_from(sorted(_COMPRESS)),
       cut=st.one_of(st.none(), st.integers(0, 400)))
def test_fuzzed_json_array_file_is_read_or_refused_naming_file_and_line(fuzz_dir, content,
                                                                         compression, cut):
  cut = None if compression == "plain" else cut
  path = _write(fuzz_dir, "data.json", content, compression, cut)
  items, err = _read_all(schema.iter_json_array, path)
  if cut is not None or (compression == "plain" and content.startswith(_MAGICS)):
    assert err is not None and err.startswith(f"{path}: "), err
    return
  try:
    text = content.decode("utf-8")
  except UnicodeDecodeError as e:
    line = content[:e.start].count(b"\n") + 1
    assert err is not None and err.startswith(f"{path}: ") and f"line {line}" in err, (line, err)
    return
  try:
    data = json.loads(text)
  except json.JSONDecodeError as e:
    assert err is not None and err.startswith(f"{path}: ") and f"line {e.lineno}" in err, err
    return
  except RecursionError:
    assert err is not None and err.startswith(f"{path}: "), err
    return
  if not isinstance(data, list):
    assert err is not None and err.startswith(f"{path}: "), err
    return
  assert err is None, err
  assert repr(items) == repr(list(enumerate(data)))
