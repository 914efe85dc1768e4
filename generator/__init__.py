"""Multimodal LLM answer generation through ``transformers`` image-text-to-text models."""
