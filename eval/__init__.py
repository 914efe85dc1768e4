"""Benchmarks and official metrics: E-VQA and InfoSeek loaders, answer metrics, retrieval recall@k."""
