"""Trainers: one module per trainer (reward model now; LM pre-training/SFT, policy RL and DPO build on
the same `state` machinery)."""
