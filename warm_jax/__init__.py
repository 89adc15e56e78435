"""warm_jax: robust reward modelling and alignment in JAX/Flax.

The library is organised as one idea per module (see README.md):
models/, sharding.py, losses.py, data/, train/, checkpoints.py, averaging.py, eval/.
"""

__version__ = "0.1.0"
