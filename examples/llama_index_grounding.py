"""LlamaIndex: check that every citation of an answer is grounded in the node it names.

    python examples/llama_index_grounding.py [--model PleIAs/Pleias-RAG-350M]

CitationGroundingEvaluator needs no judge LLM: it finds each quote again in the cited node.
Runs offline on the tiny test model unless ``--model`` names a real one (see ``_offline.py``).
"""

from __future__ import annotations

from _offline import model_from_args, training_example
from llama_index.core.schema import NodeWithScore, TextNode

from llama_index_pleias import CitationGroundingEvaluator, PleiasSynthesizer


def main() -> None:
    synthesizer = PleiasSynthesizer(model_from_args(__doc__), max_new_tokens=512)
    evaluator = CitationGroundingEvaluator()  # threshold=1.0: every citation must be grounded

    # The tiny model answers the first question right, attributes the second answer's quote
    # to the wrong source, and cites a made-up source id in the third.
    for name in ("cited", "misattributed", "unknown_id"):
        example = training_example(name)
        nodes = [
            NodeWithScore(node=TextNode(id_=f"{name}-{i}", text=text), score=1.0)
            for i, text in enumerate(example.sources, 1)
        ]
        response = synthesizer.synthesize(example.query, nodes)  # e.g. retrieved nodes
        result = evaluator.evaluate_response(query=example.query, response=response)
        print(f"Q: {example.query}\nA: {response}")
        print(f"   passing={result.passing} score={result.score}")
        for check in result.checks:
            print(f"   [{check['number']}] grounded={check['grounded']}: {check['reason']}")


if __name__ == "__main__":
    main()
