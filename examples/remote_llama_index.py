"""LlamaIndex + Pleias served by vLLM: the synthesizer and the LLM on a remote backend.

With ``--url`` it uses a running server (see docs/serving.md); without it, it starts a local
CPU vLLM server with the tiny test model (needs ``$PLEIAS_RAG_VLLM_PYTHON``).

    python examples/remote_llama_index.py [--url http://HOST:8000/v1 --tokenizer FOLDER_OR_ID]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from llama_index.core.schema import NodeWithScore, TextNode
from remote_langchain import tiny_vllm_server

from llama_index_pleias import PleiasLLM, PleiasSynthesizer
from pleias_rag.remote import RemoteBackend
from pleias_rag.testing import TRAINING_EXAMPLES


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--model", help="the served model name (default: the server's first)")
    parser.add_argument("--tokenizer", help="the model's tokenizer folder or hub id")
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        url, tokenizer = args.url, args.tokenizer
        if url is None:
            url, tokenizer = stack.enter_context(tiny_vllm_server())
        backend = RemoteBackend(
            url, args.model, tokenizer=tokenizer, dialect=None if tokenizer else "hash"
        )
        synthesizer = PleiasSynthesizer(PleiasLLM(backend, max_new_tokens=200))

        examples = TRAINING_EXAMPLES["hash"][:3]
        responses = await asyncio.gather(  # concurrent requests, batched by the server
            *(
                synthesizer.asynthesize(
                    ex.query, [NodeWithScore(node=TextNode(text=t), score=1.0) for t in ex.sources]
                )
                for ex in examples
            )
        )
        for ex, response in zip(examples, responses, strict=True):
            print(f"{ex.query}\n  {response}")
            for n in response.source_nodes:
                text = n.node.get_content()
                for c in n.node.metadata["pleias_citations"]["citations"]:
                    where = text[c["node_start"] : c["node_end"]]
                    print(f"  [{c['number']}] {c['status']}: {where!r}")


if __name__ == "__main__":
    asyncio.run(main())
