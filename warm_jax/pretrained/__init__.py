"""Hugging Face checkpoints in and out of warm_jax (Gemma 1/2/3, Llama 2/3.x, Mistral, Qwen2/2.5,
Qwen3): `load_hf` imports a local directory onto a mesh, `export_hf` writes a reward model or a
policy in the layout transformers, TRL, vLLM and mergekit read, `load_tokenizer` reads its
tokenizer. No torch or transformers is needed: safetensors and config.json are read here."""

from warm_jax.pretrained.convert import (HF_PREFIX, Pretrained, export_hf, export_run, hf_dir,
                                         load_hf, read_spec)
from warm_jax.pretrained.families import FAMILIES, ConfigError, infer_family
from warm_jax.pretrained.safetensors_io import CheckpointError
from warm_jax.pretrained.tokenizer import HFTokenizer, TokenizerError, load_tokenizer

__all__ = ["CheckpointError", "ConfigError", "FAMILIES", "HFTokenizer", "HF_PREFIX", "Pretrained",
           "TokenizerError", "export_hf", "export_run", "hf_dir", "infer_family", "load_hf", "load_tokenizer",
           "read_spec"]
