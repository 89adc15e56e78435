"""warm_jax: robust reward modelling and alignment in JAX/Flax."""

import pathlib
import re

from setuptools import find_packages, setup

_HERE = pathlib.Path(__file__).parent
_VERSION = re.search(r'__version__ = "([^"]+)"', (_HERE / "warm_jax" / "__init__.py").read_text()).group(1)

setup(
    name="warm_jax",
    version=_VERSION,
    description="Weight-averaged reward models, reward learning on policy and alignment in JAX/Flax.",
    long_description=(_HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["warm_jax", "warm_jax.*"]),
    package_data={"warm_jax": ["data/assets/*.model", "data/assets/*.vocab", "data/assets/*.md",
                            "data/builders/*_checksums.tsv"]},
    install_requires=[
        "jax>=0.7",
        "flax>=0.11",
        "optax>=0.2.4",
        "orbax-checkpoint>=0.11",
        "tensorflow-datasets>=4.9.8",
        "array_record>=0.7",
        "ml_collections>=1.0",
        "sentencepiece>=0.2",
        # warm_jax.pretrained: Hugging Face tokenizer.json files, chat templates (jinja2's
        # sandbox, >= 3.1.6 like transformers), bfloat16 safetensors data (ml_dtypes)
        "tokenizers>=0.19",
        "jinja2>=3.1.6",
        "ml_dtypes",
        "absl-py",
        "numpy",
        "tensorboardX",
        "matplotlib",
    ],
    extras_require={"test": ["pytest>=8", "pytest-timeout", "pytest-xdist", "hypothesis>=6.100",
                             "nbclient", "nbformat", "ipykernel"],
                    # `python -m warm_jax.aot`: compiling for TPU topologies on any machine
                    # (jax's own extra: the libtpu its version was built with)
                    "tpu": ["jax[tpu]"]},
)
