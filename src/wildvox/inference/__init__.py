"""Inference: exported models and batched embedding extraction."""
