"""warm_jax: robust reward modelling and alignment in JAX/Flax.

The library is organised as one idea per module (see README.md):
models/, sharding.py, losses.py, data/, train/, checkpoints.py, averaging.py, ensemble.py,
sampling.py. For notebooks the top level re-exports the loaders of notebook_api.py:

    rm = warm_jax.load_reward_model("runs/rm0")
    warm = warm_jax.load_averaged(["runs/rm0", "runs/rm1"], weights=[0.5, 0.5])
    rm.score(prompts, responses)
"""

__version__ = "0.1.0"

from warm_jax import xla_flags as _xla_flags  # noqa: E402

_xla_flags.apply()  # before any jax backend starts; see xla_flags.py

_NOTEBOOK_API = ("load_reward_model", "load_reward_models", "load_averaged", "load_ensemble")


def __getattr__(name):
  # Lazy, so `import warm_jax` (e.g. by setup tooling) does not import jax.
  if name in _NOTEBOOK_API:
    from warm_jax import notebook_api
    return getattr(notebook_api, name)
  raise AttributeError(f"module 'warm_jax' has no attribute {name!r}")


def __dir__():
  return sorted([*globals(), *_NOTEBOOK_API])
