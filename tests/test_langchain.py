"""LangChain integration: the multimodal retriever, the answering chain and the embeddings adapter."""

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

from rag.demo import DEMO_DIR
from rag.langchain import ReT2Embeddings, ReT2Retriever, build_answer_chain


@pytest.fixture(scope="module")
def retriever(tiny_pipeline):
    return ReT2Retriever(pipeline=tiny_pipeline, k=4)


def test_retriever_invoke_text_and_multimodal(retriever, tiny_pipeline):
    docs = retriever.invoke("Eiffel Tower. The Eiffel Tower is a wrought-iron lattice tower")
    assert len(docs) == 4 and all(isinstance(d, Document) for d in docs)
    first = docs[0]
    assert first.metadata["id"] == first.id and set(first.metadata) >= {"id", "title", "score"}
    assert first.page_content == tiny_pipeline.store.retrieve([first.id])[0].payload["text"]

    image = str(DEMO_DIR / "images" / "astronaut.jpg")
    multimodal = retriever.invoke({"question": "Who is this?", "image": image})
    text_only = retriever.invoke("Who is this?")
    expected = tiny_pipeline.retrieve("Who is this?", image, k=4)
    assert [d.id for d in multimodal] == [p.id for p in expected]
    assert [d.metadata["score"] for d in multimodal] != [d.metadata["score"] for d in text_only]


def test_retriever_batch_matches_invoke(retriever):
    queries = ["coffee", {"question": "What is this?", "image": str(DEMO_DIR / "images" / "horse.jpg")}, "rockets"]
    batched = retriever.batch(queries)
    singles = [retriever.invoke(q) for q in queries]
    assert [[d.id for d in docs] for docs in batched] == [[d.id for d in docs] for docs in singles]
    for docs_b, docs_s in zip(batched, singles):
        np.testing.assert_allclose([d.metadata["score"] for d in docs_b], [d.metadata["score"] for d in docs_s],
                                   atol=1e-5)


def test_answer_chain_invoke_and_batch(retriever, tiny_pipeline):
    chain = build_answer_chain(retriever, tiny_pipeline.generator)
    inputs = [{"question": "What is this?", "image": str(DEMO_DIR / "images" / "rocket.jpg")},
              {"question": "Which tower was built for the 1889 World's Fair?"}]
    one = chain.invoke(inputs[0])
    assert set(one) == {"question", "answer", "sources"} and isinstance(one["answer"], str)
    assert [d.id for d in one["sources"]] == [d.id for d in retriever.invoke(inputs[0])]
    both = chain.batch(inputs)
    assert [r["answer"] for r in both] == [chain.invoke(i)["answer"] for i in inputs]
    # the same answers as the pipeline itself
    direct = tiny_pipeline.answer(inputs[0]["question"], inputs[0]["image"], k=4)
    assert one["answer"] == direct.answer


def test_retriever_in_a_users_own_chain(retriever):
    """The README example: our retriever feeding a user's prompt template."""
    prompt = ChatPromptTemplate.from_template("Context:\n{context}\n\nQuestion: {question}")

    def format_docs(docs):
        return "\n".join(f"- {d.metadata['title']}: {d.page_content}" for d in docs)

    chain = {"context": retriever | RunnableLambda(format_docs), "question": RunnableLambda(lambda q: q)} | prompt
    rendered = chain.invoke("Which satellite did a Falcon 9 launch in 2015?").to_string()
    assert rendered.count("\n- ") == 4 and "Question: Which satellite" in rendered


def test_embeddings_adapter(tiny_pipeline):
    emb = ReT2Embeddings(tiny_pipeline.encoder, instruction="")
    docs = emb.embed_documents(["a cat", "a horse"])
    query = emb.embed_query("a cat")
    assert len(docs) == 2 and len(docs[0]) == tiny_pipeline.encoder.embedding_dim
    np.testing.assert_allclose(query, docs[0], atol=1e-6)  # no instruction: query == document text
    with_instruction = ReT2Embeddings(tiny_pipeline.encoder).embed_query("a cat")
    assert not np.allclose(with_instruction, docs[0])
