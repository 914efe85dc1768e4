"""Retrieval-augmented answering: the Qdrant store, knowledge-base ingestion, the pipeline, LangChain and the CLI."""
