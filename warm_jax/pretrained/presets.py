"""Published decoder architectures by name, as the config.json keys that decide their shapes.

    preset_model_config("llama-3-8b", dtype="bfloat16", max_len=512)

Each preset holds the architecture keys of the model's public config.json on the Hugging Face
Hub (sizes, heads, vocabulary, RoPE base, windows, soft-capping); `preset_model_config` reads it
the way an imported checkpoint's config.json is read (`families.model_config_from_hf`), so a
preset names the same warm_jax model a download of that checkpoint would. What they are for:
checking that an experiment fits a TPU slice at that model's size (`python -m warm_jax.aot
--model=...`) without any file. No weights come with them.
"""

from __future__ import annotations

import ml_collections

from warm_jax.errors import InputError
from warm_jax.pretrained import families

PRESETS = {
    # google/gemma-2b
    "gemma-2b": dict(
        model_type="gemma", vocab_size=256000, hidden_size=2048, intermediate_size=16384,
        num_hidden_layers=18, num_attention_heads=8, num_key_value_heads=1, head_dim=256,
        hidden_act="gelu_pytorch_tanh", max_position_embeddings=8192, rms_norm_eps=1e-6,
        rope_theta=10000.0, tie_word_embeddings=True),
    # google/gemma-2-2b: local (4096-token window) and global layers alternate, soft-capping
    "gemma-2-2b": dict(
        model_type="gemma2", vocab_size=256000, hidden_size=2304, intermediate_size=9216,
        num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4, head_dim=256,
        hidden_activation="gelu_pytorch_tanh", max_position_embeddings=8192, rms_norm_eps=1e-6,
        rope_theta=10000.0, query_pre_attn_scalar=256, sliding_window=4096,
        attn_logit_softcapping=50.0, final_logit_softcapping=30.0, tie_word_embeddings=True),
    # meta-llama/Meta-Llama-3-8B
    "llama-3-8b": dict(
        model_type="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336,
        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, hidden_act="silu",
        max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=500000.0,
        tie_word_embeddings=False),
    # Qwen/Qwen2.5-7B
    "qwen2.5-7b": dict(
        model_type="qwen2", vocab_size=152064, hidden_size=3584, intermediate_size=18944,
        num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4, hidden_act="silu",
        max_position_embeddings=131072, rms_norm_eps=1e-6, rope_theta=1000000.0,
        use_sliding_window=False, sliding_window=131072, max_window_layers=28,
        tie_word_embeddings=False),
}


def preset_model_config(name: str, dtype: str = "bfloat16",
                        max_len: int | None = None) -> ml_collections.ConfigDict:
  """The warm_jax model config of a preset (compute `dtype`, decode cache `max_len`: default the
  model's max_position_embeddings); an unknown name raises InputError listing the presets."""
  if name not in PRESETS:
    raise InputError(f"--model={name!r}: not a preset; choose one of {sorted(PRESETS)}")
  hf = dict(PRESETS[name])
  return families.model_config_from_hf(hf, families.family_of(hf, f"preset {name}"),
                                       f"preset {name}", dtype=dtype, max_len=max_len)
