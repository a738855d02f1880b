"""Attention maps derived from raw attentions: CLS rows, rollout, mean received."""
