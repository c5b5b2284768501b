"""LlamaIndex: a chat engine whose follow-up questions are made standalone before answering.

    python examples/llama_index_followup.py [--model PleIAs/Pleias-RAG-350M]

Runs offline on the tiny test model unless ``--model`` names a real one (see ``_offline.py``).
A Pleias model answers one question; it does not read the conversation. A separate condense
LLM rewrites each follow-up with the conversation first. Here it is scripted (a small
``CustomLLM``); use any LLM, e.g. ``OpenAI(model="gpt-4.1-mini")``.
"""

from __future__ import annotations

from typing import Any

from _offline import llama_index_embedding, model_from_args, training_example
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.llms.types import (
    ChatMessage,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_completion_callback

from llama_index_pleias import PLEIAS_METADATA_KEY, PleiasQueryEngine, condense_chat_engine


class ScriptedRewriter(CustomLLM):
    """A scripted condense LLM: every prompt gets the same rewrite."""

    rewrite: str

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=4096, num_output=64, model_name="scripted-rewriter")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self.rewrite)

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        yield CompletionResponse(text=self.rewrite, delta=self.rewrite)


def main() -> None:
    model = model_from_args(__doc__)
    example = training_example("cited")  # the Eiffel Tower question and two short texts

    documents = [
        Document(
            text=text,
            metadata={"title": title},
            excluded_llm_metadata_keys=["title"],  # for the reader, not the model
        )
        for text, title in zip(example.sources, ["Eiffel Tower", "Louvre"], strict=True)
    ]
    index = VectorStoreIndex.from_documents(documents, embed_model=llama_index_embedding())
    engine = PleiasQueryEngine.from_index(
        index, model=model, similarity_top_k=2, max_new_tokens=512
    )

    # The conversation so far, and a chat engine that rewrites follow-ups with it.
    history = [
        ChatMessage(role=MessageRole.USER, content="Tell me about the Eiffel Tower."),
        ChatMessage(
            role=MessageRole.ASSISTANT,
            content="The Eiffel Tower is a wrought-iron lattice tower in Paris.",
        ),
    ]
    condense_llm = ScriptedRewriter(rewrite=example.query)
    chat = condense_chat_engine(engine, condense_llm, chat_history=history)

    follow_up = "When was it completed?"
    response = chat.chat(follow_up)
    print("User:", follow_up)
    print("  standalone question:", chat.standalone_question(response))
    print("Assistant:", response)  # the answer, with [n] markers
    for n in response.source_nodes:  # the cited nodes, with their checked quotes
        for c in n.node.metadata[PLEIAS_METADATA_KEY]["citations"]:
            print(f"  [{c['number']}] {n.node.metadata['title']}: {c['quote']!r} ({c['status']})")

    # Streaming: the cited nodes come once the answer is complete.
    follow_up = "And when exactly was it finished?"
    streaming = chat.stream_chat(follow_up)
    print("User:", follow_up)
    print("  standalone question:", chat.standalone_question(streaming))
    print("Assistant: ", end="")
    for piece in streaming.response_gen:
        print(piece, end="", flush=True)
    print()
    print("  cited nodes:", [n.node.metadata["title"] for n in streaming.source_nodes])
    print("Memory (what the user said, not the rewrites):")
    for m in chat.chat_history[-4:]:
        print(f"  {m.role.value}: {m.content}")


if __name__ == "__main__":
    main()
