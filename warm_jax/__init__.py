"""warm_jax: robust reward modelling and alignment in JAX/Flax.

The library is organised as one idea per module (see README.md and docs/architecture.md):
models/, sharding.py, losses.py, data/, train/, checkpoints.py, averaging/, ensemble.py,
sampling.py, best_of_n.py, scoring.py, stages.py, studies/. For notebooks the top level
re-exports the loaders of `warm_jax.scoring`:

    rm = warm_jax.load_reward_model("runs/rm0")
    warm = warm_jax.load_averaged(["runs/rm0", "runs/rm1"], weights=[0.5, 0.5])
    rm.score(prompts, responses)

Importing warm_jax changes nothing in the process (no environment variable, no jax backend);
the command-line entry points set warm_jax's XLA defaults themselves (`warm_jax.xla_flags`).
"""

__version__ = "0.1.0"

_SCORING_API = ("load_reward_model", "load_reward_models", "load_averaged", "load_ensemble")


def __getattr__(name):
  # Lazy, so `import warm_jax` (e.g. by setup tooling) does not import jax.
  if name in _SCORING_API:
    from warm_jax import scoring
    return getattr(scoring, name)
  raise AttributeError(f"module 'warm_jax' has no attribute {name!r}")


def __dir__():
  return sorted([*globals(), *_SCORING_API])
