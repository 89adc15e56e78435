import os
import subprocess
import sys

from warm_jax import xla_flags

FLAG = "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_default_added_to_the_users_flags(monkeypatch):
  monkeypatch.setattr(xla_flags, "_jaxlib_version", lambda: (0, 10))
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  assert xla_flags.apply(env) == [FLAG]
  assert env["XLA_FLAGS"] == "--xla_force_host_platform_device_count=8 " + FLAG
  assert xla_flags.apply(env) == [] and env["XLA_FLAGS"].count(FLAG) == 1  # idempotent
  env = {}
  assert xla_flags.apply(env) == [FLAG] and env["XLA_FLAGS"] == FLAG


def test_users_own_value_and_opt_out_are_respected():
  mine = "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_ELTWISE"
  assert xla_flags.default_flags(mine, (0, 10)) == []
  env = {"XLA_FLAGS": "", xla_flags.OPT_OUT: "0"}
  assert xla_flags.apply(env) == [] and env["XLA_FLAGS"] == ""


def test_only_for_the_measured_jaxlib_versions():
  assert xla_flags.default_flags("", (0, 10)) == [FLAG]
  assert xla_flags.default_flags("", (0, 9)) == []
  assert xla_flags.default_flags("", (0, 11)) == []
  assert xla_flags.default_flags("", None) == []


def test_import_changes_nothing_and_jax_accepts_the_flag_an_entry_point_sets():
  code = ("import os, warm_jax, warm_jax.scoring, warm_jax.studies.rl; "
          "print(os.environ.get('XLA_FLAGS', '<unset>')); "
          "from warm_jax import xla_flags; xla_flags.apply(); "
          "import jax, jax.numpy as jnp; "
          "print(float(jnp.ones((4, 4)) @ jnp.ones(4) @ jnp.ones(4))); print(os.environ['XLA_FLAGS'])")
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", xla_flags.OPT_OUT)}
  out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                       text=True, check=True).stdout.split("\n")
  assert out[0] == "<unset>"
  assert out[1] == "16.0"
  assert out[2].split() == xla_flags.default_flags("", xla_flags._jaxlib_version())
