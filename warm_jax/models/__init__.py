"""Flax models: the shared decoder backbone, the reward model and the language model (policy)."""

from warm_jax.models.heads import (LanguageModel, MultiViewBottleneck, RewardModel, init_from_lm,
                                   last_token_index)
from warm_jax.models.transformer import PAD_ID, Decoder

__all__ = ["Decoder", "LanguageModel", "MultiViewBottleneck", "RewardModel", "PAD_ID", "init_from_lm", "last_token_index"]
