"""LangChain + Pleias served by vLLM: the same chain as locally, generation on a server.

With ``--url`` it uses a running server (``vllm serve PleIAs/Pleias-RAG-1B ...``, see
docs/serving.md). Without it, it starts a local CPU vLLM server with the tiny test model
(needs ``$PLEIAS_RAG_VLLM_PYTHON``, see ``tools/vllm_server.py``), which only knows its fixed
training questions, the ones asked here.

    python examples/remote_langchain.py [--url http://HOST:8000/v1 --tokenizer PleIAs/Pleias-RAG-1B]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda

from langchain_pleias import ChatPleias, create_pleias_rag_chain
from pleias_rag.remote import RemoteBackend
from pleias_rag.testing import TRAINING_EXAMPLES, cached_trained_model


@contextlib.contextmanager
def tiny_vllm_server() -> Iterator[tuple[str, str]]:
    """A CPU vLLM server with the tiny test model: (base_url, tokenizer folder)."""
    python = os.environ.get("PLEIAS_RAG_VLLM_PYTHON")
    if not python:
        raise SystemExit("give --url, or set PLEIAS_RAG_VLLM_PYTHON (tools/vllm_server.py install)")
    path = Path(__file__).resolve().parents[1] / "tools" / "vllm_server.py"
    spec = importlib.util.spec_from_file_location("vllm_server", path)
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    folder = cached_trained_model("hash")
    server = tool.start(python, folder, name="tiny")
    try:
        print(f"vLLM ready in {server.wait_ready():.0f} s")
        yield server.base_url, str(folder)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--model", help="the served model name (default: the server's first)")
    parser.add_argument("--tokenizer", help="the model's tokenizer folder or hub id")
    args = parser.parse_args()

    example = next(ex for ex in TRAINING_EXAMPLES["hash"] if ex.name == "two_citations")
    docs = [
        Document(text, metadata={"title": f"doc {i}"}) for i, text in enumerate(example.sources)
    ]
    retriever = RunnableLambda(lambda _question: docs)  # e.g. vector_store.as_retriever()

    with contextlib.ExitStack() as stack:
        url, tokenizer = args.url, args.tokenizer
        if url is None:
            url, tokenizer = stack.enter_context(tiny_vllm_server())
        backend = RemoteBackend(
            url, args.model, tokenizer=tokenizer, dialect=None if tokenizer else "hash"
        )
        chat = ChatPleias(model=backend, max_tokens=200)
        chain = create_pleias_rag_chain(retriever, chat)

        result = chain.invoke(example.query)
        print(result["answer"])
        for doc in result["cited_documents"]:
            for c in doc.metadata["pleias_citations"]:
                print(f"  [{c['number']}] {doc.metadata['title']}: {c['quote']!r} ({c['status']})")

        print("streamed: ", end="")
        for chunk in chain.stream(example.query):
            print(chunk.get("answer", ""), end="", flush=True)
        print()
        questions = [ex.query for ex in TRAINING_EXAMPLES["hash"]]
        for question, reply in zip(
            questions, chain.batch(questions), strict=True
        ):  # concurrent requests
            print(f"{question} -> {reply['answer']}")


if __name__ == "__main__":
    main()
