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


def test_bfloat16_models_keep_xlas_defaults():
  """The dots-only flag sends bfloat16 x bfloat16 -> float32 matmuls off the CPU's matrix units:
  it is set for float32 models only."""
  assert xla_flags.default_flags("", (0, 10), "float32") == [FLAG]
  assert xla_flags.default_flags("", (0, 10), "bfloat16") == []
  assert xla_flags.default_flags("", (0, 10), "float16") == []
  env = {}
  assert xla_flags.apply(env, dtype="bfloat16") == []
  assert not env.get("XLA_FLAGS")


def test_the_precision_of_a_config_and_of_a_benchmarks_command_line():
  import ml_collections
  one = ml_collections.ConfigDict({"model": {"dtype": "bfloat16"}, "optim": {"lr": 1.0}})
  assert xla_flags.config_dtype(one) == "bfloat16"
  job = ml_collections.ConfigDict({"sft": {"model": {"dtype": "bfloat16"}},
                                   "rm": {"model": {"dtype": "float32"}}})
  assert xla_flags.config_dtype(job) == "float32"  # mixed: float32's flag
  job.rm.model.dtype = "bfloat16"
  assert xla_flags.config_dtype(job) == "bfloat16"
  assert xla_flags.config_dtype(ml_collections.ConfigDict({"steps": 3})) == "float32"
  assert xla_flags.argv_dtype(["x.py", "--dtype=bfloat16"]) == "bfloat16"
  assert xla_flags.argv_dtype(["x.py", "--dtype", "bfloat16", "--steps=2"]) == "bfloat16"
  assert xla_flags.argv_dtype(["x.py"]) == "float32"


def test_an_experiment_sets_the_defaults_of_its_configs_precision(tmp_path):
  """cli.run reads the config, then sets the flags for its model dtype, before jax starts."""
  exp = tmp_path / "exp.py"
  exp.write_text(
      "import ml_collections\n"
      "def get_config(variant='f32'):\n"
      "  return ml_collections.ConfigDict({'model': {'dtype': 'bfloat16' if variant == 'bf16' "
      "else 'float32'}})\n"
      "if __name__ == '__main__':\n"
      "  import os\n"
      "  from warm_jax import cli\n"
      "  cli.run(lambda config, workdir: print('FLAGS=' + os.environ.get('XLA_FLAGS', '')))\n")
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", xla_flags.OPT_OUT)}
  expected = {"f32": xla_flags.default_flags("", xla_flags._jaxlib_version(), "float32"),
              "bf16": []}
  for variant, flags in expected.items():
    out = subprocess.run([sys.executable, str(exp), f"--config={exp}:{variant}",
                          f"--workdir={tmp_path}"], env=env, cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    line = [x for x in out.splitlines() if x.startswith("FLAGS=")][0]
    assert line[len("FLAGS="):].split() == flags, (variant, line)
