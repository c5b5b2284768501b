"""LangChain: ChatPleias answers from documents, its checked citations as standard annotations.

    python examples/langchain_chat_documents.py [--model PleIAs/Pleias-RAG-350M]

Runs offline on the tiny test model unless ``--model`` names a real one (see ``_offline.py``).
"""

from __future__ import annotations

from _offline import model_from_args, training_example
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, HumanMessage

from langchain_pleias import ChatPleias


def show(reply: AIMessage) -> None:
    print("A:", reply.text)  # the answer, with [n] markers
    reasoning, text = reply.content_blocks  # the model's source analysis, then the answer
    print("   reasoning:", reasoning["reasoning"].replace("\n", " "))
    for c in text.get("annotations", []):  # standard LangChain citations
        x = c["extras"]  # how the quote was checked against the document
        holder = (x["found_in"] or [x["cited_id"]])[0]  # the source that holds the quote
        print(f"   [{x['number']}] {c.get('title', holder)}: {c['cited_text']!r} -> {x['status']}")
        if x["status"] == "verified":
            print(f"       found ({x['match']}) at {x['source_start']}:{x['source_end']}")
        elif x["status"] == "misattributed":
            print(f"       the model named {x['cited_id']}; the quote is in {holder}")
        elif x["note"]:
            print(f"       {x['note']}")


def main() -> None:
    chat = ChatPleias(model=model_from_args(__doc__), max_tokens=512)  # loads on first use

    # Sources as a call argument: any LangChain documents, e.g. from a retriever.
    example = training_example("two_citations")
    docs = [
        Document(text, metadata={"title": f"document {i}", "source": f"https://example.org/{i}"})
        for i, text in enumerate(example.sources, 1)
    ]
    print("Q:", example.query)
    reply = chat.invoke(example.query, documents=docs)
    show(reply)
    print("   usage:", reply.usage_metadata)

    # Or as standard text-plain blocks of the message. This time the model cites the wrong
    # source: the citation is flagged, and points at the document the quote is really in.
    example = training_example("misattributed")
    sources = [
        {"type": "text-plain", "text": t, "mime_type": "text/plain"} for t in example.sources
    ]
    message = HumanMessage(content_blocks=[{"type": "text", "text": example.query}, *sources])
    print("\nQ:", example.query)
    show(chat.invoke([message]))


if __name__ == "__main__":
    main()
