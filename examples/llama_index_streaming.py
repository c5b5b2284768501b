"""LlamaIndex: stream a cited answer, sync and async; the cited nodes come when it ends.

    python examples/llama_index_streaming.py [--model PleIAs/Pleias-RAG-350M]

Runs offline on the tiny test model unless ``--model`` names a real one (see ``_offline.py``).
"""

from __future__ import annotations

import asyncio

from _offline import llama_index_embedding, model_from_args, training_example
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.response.schema import AsyncStreamingResponse, StreamingResponse

from llama_index_pleias import PLEIAS_METADATA_KEY, PleiasQueryEngine


def show_cited(response: StreamingResponse | AsyncStreamingResponse) -> None:
    for n in response.source_nodes:  # filled once the answer is complete
        for c in n.node.metadata[PLEIAS_METADATA_KEY]["citations"]:
            print(f"  [{c['number']}] {c['status']}: {c['quote']!r}")


async def main() -> None:
    model = model_from_args(__doc__)
    example = training_example("two_citations")
    index = VectorStoreIndex.from_documents(
        [Document(text=text) for text in example.sources], embed_model=llama_index_embedding()
    )
    engine = PleiasQueryEngine.from_index(
        index, model=model, similarity_top_k=3, streaming=True, max_new_tokens=512
    )
    print("Q:", example.query)

    response = engine.query(example.query)  # a StreamingResponse
    assert isinstance(response, StreamingResponse)
    print("A: ", end="")
    for text in response.response_gen:  # the clean answer text, [n] markers included
        print(text, end="", flush=True)
    print()
    show_cited(response)

    response = await engine.aquery(example.query)  # an AsyncStreamingResponse
    assert isinstance(response, AsyncStreamingResponse)
    print("A (async): ", end="")
    async for text in response.async_response_gen():
        print(text, end="", flush=True)
    print()
    show_cited(response)


if __name__ == "__main__":
    asyncio.run(main())
