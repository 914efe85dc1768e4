"""LangChain's own standard test suites (``langchain-tests``), run on our classes built the README way.

Every retriever, embeddings object and vector store here is built from a YAML config file
(``from_config`` / ``config=``), like a user would, not from one shared pipeline object:
the suites build a new one per test, several per test for ``test_k_constructor_param``,
so the collection must be shareable within the process (``rag.store.open_shared``).
"""

from __future__ import annotations

import uuid

import pytest
import yaml
from langchain_tests.integration_tests import (
    EmbeddingsIntegrationTests,
    RetrieversIntegrationTests,
    VectorStoreIntegrationTests,
)
from langchain_tests.unit_tests import EmbeddingsUnitTests

from rag.demo import DEMO_DIR, KB_FILE
from rag.langchain import ReT2Embeddings, ReT2Retriever, ReT2VectorStore

_PATHS: dict[str, str] = {}


def write_config(path, store: dict, instruction: str | None = None) -> str:
    """A configs/tiny.yaml-style file (tiny random encoder and generator) with ``store`` settings."""
    config = {
        "encoder": {"name_or_path": "tiny-random/clip", "revision": "seed0", "batch_size": 32, "device": "cpu"},
        "store": {"hnsw": {"m": 16, "ef_construct": 64, "hnsw_ef": 64}, **store},
        "ingest": {"batch_size": 64, "image_root": str(DEMO_DIR)},
        "generator": {"model": "tiny-random/qwen2_vl", "dtype": "float32", "device_map": "cpu", "max_new_tokens": 6},
        "retrieval": {"k": 3, **({} if instruction is None else {"instruction": instruction})},
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module", autouse=True)
def demo_kb_config(tmp_path_factory):
    """The bundled demo KB indexed into a temporary store; the config file's path."""
    from rag.config import load_pipeline_config
    from rag.ingest.indexer import build_index

    root = tmp_path_factory.mktemp("lc-standard")
    path = write_config(root / "tiny.yaml", {"backend": "edge", "path": str(root / "qdrant"), "collection": "kb"})
    build_index(load_pipeline_config(path), KB_FILE, "jsonl", show_progress=False)
    _PATHS["kb"] = path
    yield path


class TestReT2RetrieverStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self):
        return ReT2Retriever.from_config

    @property
    def retriever_constructor_params(self) -> dict:
        return {"config": _PATHS["kb"]}

    @property
    def retriever_query_example(self) -> str:
        return "Which satellite did a Falcon 9 launch in 2015?"

    @pytest.fixture
    def retriever(self):
        with self.retriever_constructor(**self.retriever_constructor_params) as retriever:
            yield retriever


class _EmbeddingsFromConfig:
    """What both embeddings suites construct: ``ReT2Embeddings(config=<the demo KB's config file>)``."""

    @property
    def embeddings_class(self):
        return ReT2Embeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"config": _PATHS["kb"]}


class TestReT2EmbeddingsUnit(_EmbeddingsFromConfig, EmbeddingsUnitTests):
    pass


class TestReT2EmbeddingsIntegration(_EmbeddingsFromConfig, EmbeddingsIntegrationTests):
    pass


class TestReT2VectorStoreEdge(VectorStoreIntegrationTests):
    """An empty embedded collection per test, created by ``ReT2VectorStore.from_config``."""

    @pytest.fixture
    def vectorstore(self, tmp_path):
        # No query instruction: a query embeds like the identical document text, so "bar" finds "bar" first.
        path = write_config(tmp_path / "tiny.yaml", {"backend": "edge", "path": str(tmp_path / "qdrant"),
                                                     "collection": "lc"}, instruction="")
        with ReT2VectorStore.from_config(path) as store:
            yield store


class TestReT2VectorStoreServer(VectorStoreIntegrationTests):
    """The same suite on the server backend (qdrant-client's local mode)."""

    @pytest.fixture
    def vectorstore(self, tmp_path):
        path = write_config(tmp_path / "tiny.yaml", {"backend": "server", "url": ":memory:",
                                                     "collection": f"lc-{uuid.uuid4().hex[:8]}"}, instruction="")
        with ReT2VectorStore.from_config(path) as store:
            yield store
