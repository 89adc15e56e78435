"""Experiment configs: every variant validates, big_vision-style --config=path.py:variant overrides."""

import glob
import importlib.util
import os

import pytest
from absl import flags
from ml_collections import config_flags

ROOT = os.path.join(os.path.dirname(__file__), "..")
# Experiment files are those with a config; the rest of experiments/ are analysis scripts
# (plots, checks) that read runs.
EXPERIMENTS = sorted(p for p in glob.glob(os.path.join(ROOT, "experiments", "*.py"))
                     if "def get_config(" in open(p).read())


def _load(path):
  spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def test_reward_model_variants_validate():
  from warm_jax.train import reward_model
  mod = _load(os.path.join(ROOT, "experiments", "reward_model.py"))
  for variant in ("tiny", "cpu", "paper"):
    reward_model.validate_config(mod.get_config(variant))
  with pytest.raises(ValueError, match="unknown variant 'huge'"):
    mod.get_config("huge")


@pytest.mark.parametrize("path", EXPERIMENTS, ids=os.path.basename)
def test_every_experiment_has_cpu_and_paper_variants(path):
  mod = _load(path)
  for variant in ("cpu", "paper"):
    assert mod.get_config(variant).variant == variant


def test_command_line_selects_variant_and_overrides_fields():
  # As under app.run: the override flags are registered from argv when --config is defined.
  path = os.path.join(ROOT, "experiments", "reward_model.py")
  argv = ["prog", f"--config={path}:tiny", "--config.optim.lr=0.5", "--config.mesh.shape=(2,2,2)",
          "--config.model.dropout_rate=0.25"]
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True, sys_argv=argv)
  fv(argv)
  assert fv.config.variant == "tiny"
  assert fv.config.optim.lr == 0.5
  assert tuple(fv.config.mesh.shape) == (2, 2, 2)
  assert fv.config.model.dropout_rate == 0.25
  bad = ["prog", f"--config={path}:tiny", "--config.optim.no_such_field=1"]
  fv2 = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=fv2, lock_config=True, sys_argv=bad)
  with pytest.raises(Exception, match="no_such_field"):
    fv2(bad)
