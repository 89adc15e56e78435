"""No pickles, no executing data: a static scan of the code that reads files, and restores of
tampered checkpoints / loads of the embedded data set that must never unpickle anything."""

import ast
import contextlib
import glob
import os
import pickle
import sys

import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SCANNED = ("warm_jax", "experiments", "launch", "benchmarks")

BANNED_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve",
                  "marshal"}
BANNED_BUILTINS = {"eval", "exec", "compile"}
# qualified call -> what makes it unsafe ("always", or the keyword that must be a literal True /
# must not be a literal True)
NEEDS_WEIGHTS_ONLY = {"torch.load"}
PICKLE_KWARG = {"numpy.load": "allow_pickle"}
ALWAYS_BANNED_CALLS = {"yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all",
                       "yaml.unsafe_load_all", "yaml.full_load_all", "pandas.read_pickle",
                       "numpy.loads"}


def _dotted(node):
  """'a.b.c' for a Name / Attribute chain, else None."""
  parts = []
  while isinstance(node, ast.Attribute):
    parts.append(node.attr)
    node = node.value
  if isinstance(node, ast.Name):
    parts.append(node.id)
    return ".".join(reversed(parts))
  return None


def _is_true(node):
  return isinstance(node, ast.Constant) and node.value is True


def _is_false(node):
  return isinstance(node, ast.Constant) and node.value is False


def scan_source(source: str, filename: str) -> list[str]:
  """Every offence in one file, as '<file>:<line>: <what>'."""
  tree = ast.parse(source, filename)
  aliases = {}  # local name -> qualified name, from the file's imports
  out = []

  def offence(node, what):
    out.append(f"{filename}:{node.lineno}: {what}")

  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for a in node.names:
        if a.name.split(".")[0] in BANNED_MODULES:
          offence(node, f"imports {a.name}")
        aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
    elif isinstance(node, ast.ImportFrom) and node.module:
      top = node.module.split(".")[0]
      for a in node.names:
        if top in BANNED_MODULES or a.name in BANNED_MODULES:
          offence(node, f"imports {a.name} from {node.module}")
        aliases[a.asname or a.name] = f"{node.module}.{a.name}"
  for node in ast.walk(tree):
    if not isinstance(node, ast.Call):
      continue
    name = _dotted(node.func)
    if name is None:
      continue
    head, _, rest = name.partition(".")
    qual = aliases.get(head, head) + (f".{rest}" if rest else "")
    kwargs = {k.arg: k.value for k in node.keywords if k.arg}
    if name in BANNED_BUILTINS or qual in {f"builtins.{b}" for b in BANNED_BUILTINS}:
      offence(node, f"calls {name}()")
    elif qual in ("__import__", "importlib.import_module"):  # a banned module by its name
      arg = node.args[0] if node.args else None
      if (isinstance(arg, ast.Constant) and isinstance(arg.value, str)
          and arg.value.split(".")[0] in BANNED_MODULES):
        offence(node, f"imports {arg.value} with {name}()")
    elif qual in ALWAYS_BANNED_CALLS or name.endswith("read_pickle"):
      offence(node, f"calls {name}()")
    elif qual in PICKLE_KWARG and not _is_false(kwargs.get(PICKLE_KWARG[qual], ast.Constant(False))):
      offence(node, f"calls {name}() with {PICKLE_KWARG[qual]}={ast.unparse(kwargs[PICKLE_KWARG[qual]])}")
    elif qual in NEEDS_WEIGHTS_ONLY and not _is_true(kwargs.get("weights_only")):
      offence(node, f"calls {name}() without weights_only=True")
  return out


def scanned_files():
  files = []
  for d in SCANNED:
    files += glob.glob(os.path.join(ROOT, d, "**", "*.py"), recursive=True)
  return sorted(files)


def test_no_pickle_or_eval_in_the_code():
  files = scanned_files()
  assert len(files) > 40 and any(f.endswith("checkpoints.py") for f in files), files
  offences = []
  for path in files:
    with open(path, encoding="utf-8") as f:
      offences += scan_source(f.read(), os.path.relpath(path, ROOT))
  assert not offences, "unsafe deserialisation / code execution:\n" + "\n".join(offences)


BAD_SOURCE = '''\
import pickle
import cPickle as cp
from dill import loads
import joblib, shelve
from marshal import loads as mloads
import numpy as np
import numpy
import yaml
import torch
import pandas as pd
from six.moves import cPickle
eval("1")
exec("x = 1")
compile("1", "f", "eval")
np.load("a.npy", allow_pickle=True)
numpy.load("a.npz", allow_pickle=flag)
yaml.load(text)
yaml.unsafe_load(text)
torch.load("w.pt")
torch.load("w.pt", weights_only=False)
pd.read_pickle("x.pkl")
__import__("pickle")
'''
BAD_LINES = {1, 2, 3, 4, 5, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22}
GOOD_SOURCE = '''\
import re
import json
import numpy as np
import yaml
import torch
import jax
x = re.compile("a+")
np.load("a.npy")
np.load("a.npy", allow_pickle=False)
yaml.safe_load(text)
torch.load("w.pt", weights_only=True)
jax.jit(f).lower(1).compile()
json.loads("{}")
__import__("math")
'''


def test_the_scanner_finds_every_kind_of_offence_and_only_those():
  found = scan_source(BAD_SOURCE, "bad.py")
  assert {int(o.split(":")[1]) for o in found} == BAD_LINES, "\n".join(found)
  assert all(o.startswith("bad.py:") for o in found)
  assert scan_source(GOOD_SOURCE, "good.py") == []


# ------------------------------------------------------------------------------------ dynamic
class Unpickled(AssertionError):
  pass


_AUDIT = {"on": False, "events": []}


def _audit(event, args):
  # (marshal.loads is left out: the import system raises it for every .pyc a lazy import reads.)
  if _AUDIT["on"] and event == "pickle.find_class":
    _AUDIT["events"].append((event, repr(args)[:200]))


sys.addaudithook(_audit)  # cannot be removed; records only inside `no_unpickling`


@contextlib.contextmanager
def no_unpickling(monkeypatch):
  """Any unpickling inside the block fails the test: pickle's entry points raise, and the
  interpreter's audit event of an unpickler looking up a global (what a code-running pickle
  needs, whichever binding of pickle made it) is recorded."""
  def refuse(*args, **kwargs):
    raise Unpickled("something tried to unpickle")
  import _pickle
  for mod in (pickle, _pickle):
    for name in ("load", "loads", "Unpickler"):
      monkeypatch.setattr(mod, name, refuse)
  _AUDIT.update(on=True, events=[])
  try:
    yield
  finally:
    _AUDIT["on"] = False
    monkeypatch.undo()
  assert not _AUDIT["events"], f"unpickling happened: {_AUDIT['events']}"


class _Evil:
  def __reduce__(self):
    return (list, ((1, 2),))  # harmless, but unpickling it looks up builtins.list


EVIL = pickle.dumps(_Evil(), protocol=4)


def test_the_guard_catches_unpickling(monkeypatch):
  with pytest.raises(Unpickled):
    with no_unpickling(monkeypatch):
      pickle.loads(EVIL)
  # A loads bound before the guard (as `from pickle import loads` at import time would be) is
  # not patched: the audit event still gives it away.
  with pytest.raises(AssertionError, match="unpickling happened"):
    with no_unpickling(monkeypatch):
      _ORIGINAL_LOADS(EVIL)


_ORIGINAL_LOADS = pickle.loads


def _params():
  return {"dense": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3),
                    "bias": np.ones(3, np.float32)}}


def _check_restored(restored):
  np.testing.assert_array_equal(restored["dense"]["kernel"], _params()["dense"]["kernel"])
  np.testing.assert_array_equal(restored["dense"]["bias"], _params()["dense"]["bias"])


def test_checkpoint_with_a_dropped_pickle_restores_without_unpickling(tmp_path, monkeypatch):
  from warm_jax import checkpoints
  path = str(tmp_path / "ckpt")
  checkpoints.save_params(path, _params(), {"note": "tiny"})
  for d in (path, os.path.join(path, "0"), os.path.join(path, "0", "params"),
            os.path.join(path, "0", "meta")):
    with open(os.path.join(d, "evil.pkl"), "wb") as f:
      f.write(EVIL)
  with no_unpickling(monkeypatch):
    _check_restored(checkpoints.restore_params(path))
    assert checkpoints.read_meta(path)["note"] == "tiny"
    assert checkpoints.complete_steps(path) == [0]


# The file replaced by a pickle -> the reads that need it (and must fail: 'restore' = params,
# 'meta' = the JSON metadata); the other reads must still work.
# What each read needs: a restore checks the arrays against the digests in meta/.
VICTIMS = {"params/_METADATA": {"restore"}, "meta/metadata": {"meta", "restore"},
           "_CHECKPOINT_METADATA": set()}


@pytest.mark.parametrize("protocol", [0, 4])  # 0: an ASCII pickle, which even decodes as text
@pytest.mark.parametrize("victim", sorted(VICTIMS))
def test_checkpoint_metadata_replaced_by_a_pickle_is_never_unpickled(victim, protocol, tmp_path,
                                                                     monkeypatch):
  from warm_jax import checkpoints
  path = str(tmp_path / "ckpt")
  checkpoints.save_params(path, _params(), {"note": "tiny"})
  target = os.path.join(path, "0", *victim.split("/"))
  assert os.path.isfile(target), sorted(os.listdir(os.path.join(path, "0")))
  with open(target, "wb") as f:
    f.write(pickle.dumps(_Evil(), protocol=protocol))
  def read_meta():
    assert checkpoints.read_meta(path)["note"] == "tiny"

  reads = {"restore": lambda: _check_restored(checkpoints.restore_params(path)), "meta": read_meta}
  with no_unpickling(monkeypatch):
    for name, read in reads.items():
      if name in VICTIMS[victim]:
        with pytest.raises(ValueError, match=f"checkpoint {path} step 0 is damaged") as e:
          read()
        assert not isinstance(e.value, Unpickled)
      else:
        read()


def test_loading_embedded_data_never_unpickles(tmp_path, monkeypatch):
  from warm_jax.data import embedded
  from warm_jax.data.builders import embedded_tldr
  cfg = embedded.default_config()
  for k in cfg.sizes:
    cfg.sizes[k] = 8
  cfg.data_dir = str(tmp_path)
  with no_unpickling(monkeypatch):
    built = embedded_tldr.load_split(cfg, "train")  # builds the TFDS data set, then reads it
    again = embedded_tldr.load_split(cfg, "train")  # from the prepared files
    assert [built[i] for i in range(8)] == [again[i] for i in range(8)]
    assert len(embedded_tldr.load_split(cfg, "corpus")) == 8
