"""Flax models: the shared decoder backbone, the reward model and the language model (policy),
and RLP-UML's bottleneck."""

from warm_jax.models.bottleneck import MultiViewBottleneck
from warm_jax.models.heads import LanguageModel, RewardModel, init_from_lm, last_token_index
from warm_jax.models.transformer import PAD_ID, Decoder

__all__ = ["Decoder", "LanguageModel", "MultiViewBottleneck", "RewardModel", "PAD_ID", "init_from_lm", "last_token_index"]
