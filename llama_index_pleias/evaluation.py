"""``CitationGroundingEvaluator``: are the citations of an answer grounded? No judge LLM."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llama_index.core.base.response.schema import (
    RESPONSE_TYPE,
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.bridge.pydantic import Field
from llama_index.core.evaluation import BaseEvaluator, EvaluationResult
from llama_index.core.prompts.mixin import PromptDictType
from llama_index.core.schema import MetadataMode

from pleias_rag import Source, StreamParser, parse_response
from pleias_rag.errors import InvalidArgument
from pleias_rag.verify import locate_quote

from ._convert import PLEIAS_METADATA_KEY
from .llms import PleiasLLM

_MARKER = re.compile(r"\[\d+\]")
_MARKERS_AFTER_STOP = re.compile(r"([.!?。！？]+)((?:\s*\[\d+\])+)")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")


class GroundingResult(EvaluationResult):
    """An ``EvaluationResult`` with one check per citation in ``checks``.

    Each check has ``number``, ``source_id``, ``quote``, ``grounded`` (bool), ``reason``,
    ``cited`` (the node ids or context indexes cited), ``match``, ``start``/``end`` (the quote in
    the cited text, when found) and ``found_in`` (where else the quote is, when misattributed).

    ``sentences`` is the number of answer sentences, ``uncited_sentences`` how many carry no
    ``[n]`` citation marker and ``uncited_share`` their share (None for an empty answer). They
    are reported, not scored: the score stays the grounded fraction of citations.
    """

    checks: list[dict[str, Any]] = Field(default_factory=list)
    sentences: int = 0
    uncited_sentences: int = 0
    uncited_share: float | None = None


@dataclass
class _Item:
    number: int
    source_id: str
    quote: str
    cited: list[tuple[str, str | None]]  # (label, text); empty when the id is no source
    found_in: list[str]


class CitationGroundingEvaluator(BaseEvaluator):
    """Deterministic grounding check of cited answers: no judge LLM, no network.

    A citation is grounded when its id is a real source and its quote is in that source
    word for word (exact, normalized, or every piece of an ``(…)`` elision: what makes a
    citation ``verified``), or, with ``fuzzy=True``, close to it (``approximate``: never a
    change to a number, a unit or a negation).
    The score is the grounded fraction of citations; the result passes when the score reaches
    ``threshold`` (an answer without citations passes only with ``require_citations=False``).
    ``feedback`` has one line per citation, and ``checks`` the same as data.

    ``feedback`` ends with a line giving the share of answer sentences that carry no ``[n]``
    marker (``uncited sentences: 1 of 3 (33%)``), also in ``uncited_share``.

    Two inputs work:

    - ``evaluate_response(response=...)`` with a ``Response`` of a query engine (what
      ``BatchEvalRunner`` passes; a ``StreamingResponse`` is read to its end first, an
      ``AsyncStreamingResponse`` by ``aevaluate_response``). The citations come from
      ``response.metadata["citations"]`` (:class:`PleiasSynthesizer`,
      :class:`PleiasQueryEngine`), else from the source nodes' ``metadata["pleias_citations"]``
      (nodes annotated by a Pleias synthesizer or reranker), else from ``<ref>`` tags left in
      the response text (checked against the source nodes in order). Every citation's node
      ids must be among ``response.source_nodes``, and the quote must be found again in that
      node's body (``get_content(MetadataMode.NONE)``), independently of what was recorded;
    - ``evaluate(response=raw_output, contexts=[...])`` with the model's raw output (its
      ``<ref>`` tags) and the source texts in prompt order.

    A raw output is parsed in the dialect the evaluator knows: ``evaluate(..., dialect=...)``,
    else ``dialect`` given here, else the response metadata's (``evaluate_response``), else
    that of ``llm`` (a :class:`PleiasLLM` whose dialect is given or whose backend is); only
    when none is known is it detected from the output.

    Args:
        fuzzy: also accept approximate quotes (small word changes that leave numbers,
            units and negations alone).
        require_citations: an answer with no citation fails (score 0) instead of passing.
        threshold: the score needed to pass (1.0: every citation grounded).
        dialect: the dialect of the raw outputs (``hash``, ``numbered`` or ``markdown``).
        llm: the :class:`PleiasLLM` that wrote them, to read their dialect from.

    Examples:
        >>> from llama_index_pleias import CitationGroundingEvaluator
        >>> text = "The Eiffel Tower was completed in 1889."
        >>> from pleias_rag import source_id
        >>> raw = (
        ...     "<|source_analysis_end|><|answer_start|>In 1889"
        ...     f'<ref name="{source_id(text)}">"completed in 1889"</ref>.<|answer_end|>'
        ... )
        >>> result = CitationGroundingEvaluator().evaluate(response=raw, contexts=[text])
        >>> result.passing, result.score
        (True, 1.0)
    """

    def __init__(
        self,
        *,
        fuzzy: bool = False,
        require_citations: bool = True,
        threshold: float = 1.0,
        dialect: str | None = None,
        llm: PleiasLLM | None = None,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise InvalidArgument("threshold must be between 0 and 1")
        if dialect is not None:
            StreamParser(dialect=dialect)  # an unknown dialect is refused here, not per call
        self.fuzzy = fuzzy
        self.require_citations = require_citations
        self.threshold = threshold
        self.dialect = dialect
        self.llm = llm

    def _dialect(self, given: object = None) -> str | None:
        """The dialect to parse a raw output in (see the class), None to detect it."""
        if isinstance(given, str):
            return given
        if self.dialect is not None:
            return self.dialect
        return None if self.llm is None else self.llm.known_dialect

    def _get_prompts(self) -> PromptDictType:
        return {}

    def _update_prompts(self, prompts_dict: PromptDictType) -> None:
        pass

    # -- entry points (synchronous work; the async ones run it in a worker thread) --

    def evaluate(
        self,
        query: str | None = None,
        response: str | None = None,
        contexts: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> GroundingResult:
        """Check a raw Pleias output (with its ``<ref>`` tags) against the source texts."""
        if response is None or contexts is None:
            return _invalid(query, response, "give the raw model output and the contexts")
        sources = [Source(c) for c in contexts if c.strip()]
        labels = {id(s): str(i) for i, s in enumerate(sources)}
        dialect = self._dialect(kwargs.get("dialect"))
        answer = parse_response(response, sources, dialect, query=query or "")
        items = [
            _Item(
                c.number,
                c.source_id,
                c.quote,
                [(labels[id(s)], s.text) for s in c.sources],
                [labels[id(s)] for s in c.found_in],
            )
            for c in answer.citations
        ]
        return self._result(query, answer.answer, list(contexts), items)

    async def aevaluate(
        self,
        query: str | None = None,
        response: str | None = None,
        contexts: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> GroundingResult:
        """Grade how well ``response`` is grounded in ``contexts`` by its checked citations
        (the quote checks are CPU work: in a worker thread, off the event loop)."""
        return await asyncio.to_thread(self.evaluate, query, response, contexts, **kwargs)

    def evaluate_response(
        self, query: str | None = None, response: RESPONSE_TYPE | None = None, **kwargs: Any
    ) -> GroundingResult:
        """Check a query engine's ``Response`` against its source nodes (see the class)."""
        if isinstance(response, StreamingResponse):
            response = response.get_response()
        if not isinstance(response, Response):
            return _invalid(query, None, "give a Response of a query engine")
        bodies = {
            n.node.node_id: n.node.get_content(metadata_mode=MetadataMode.NONE)
            for n in response.source_nodes
        }
        citations = _response_citations(response)
        if citations is None:
            text = response.response or ""
            if "<ref" in text:
                known = kwargs.get("dialect") or (response.metadata or {}).get("dialect")
                return self.evaluate(query, text, list(bodies.values()), dialect=known)
            return _invalid(query, text, "the response has no Pleias citations")
        items = []
        for c in citations:
            ids = list(c.get("node_ids") or [])
            cited = [(i, bodies.get(i)) for i in ids]
            found_in = [str(i) for i in c.get("found_in_node_ids") or []]
            items.append(
                _Item(int(c["number"]), str(c["written_id"]), str(c["quote"]), cited, found_in)
            )
        return self._result(query, response.response, list(bodies.values()), items)

    async def aevaluate_response(
        self, query: str | None = None, response: RESPONSE_TYPE | None = None, **kwargs: Any
    ) -> GroundingResult:
        """:meth:`evaluate_response`; an ``AsyncStreamingResponse`` is read to its end first."""
        if isinstance(response, AsyncStreamingResponse):
            response = await response.get_response()
        return await asyncio.to_thread(self.evaluate_response, query, response, **kwargs)

    # -- the check --

    def _check(self, item: _Item) -> dict[str, Any]:
        check: dict[str, Any] = {
            "number": item.number,
            "source_id": item.source_id,
            "quote": item.quote,
            "cited": [label for label, _ in item.cited],
            "grounded": False,
            "match": "none",
            "start": None,
            "end": None,
            "found_in": item.found_in,
        }
        texts = [(label, text) for label, text in item.cited if text is not None]
        if not item.cited:
            check["reason"] = f"id {item.source_id!r} is not one of the sources"
            return check
        if not item.quote.strip():
            check["reason"] = "empty quote"
            return check
        missing = [label for label, text in item.cited if text is None]
        problem = ""
        if not missing:
            label, text = texts[0]
            match = locate_quote(item.quote, text, fuzzy=self.fuzzy)
            if match.verbatim or (match.kind == "fuzzy" and not match.problem):
                check.update(grounded=True, match=match.kind, start=match.start, end=match.end)
                check["reason"] = f"quote found ({match.kind}, {match.score:.2f}) in {label}"
                return check
            problem = match.problem
        if item.found_in:
            where = ", ".join(item.found_in)
            check["reason"] = f"misattributed: the quote is in {where}, not in the one cited"
        elif missing:
            check["reason"] = f"cited node(s) {missing} are not in the response's source nodes"
        else:
            check["reason"] = f"quote not found in {texts[0][0]}" + (
                f": {problem}" if problem else ""
            )
        return check

    def _result(
        self, query: str | None, answer: str | None, contexts: list[str], items: list[_Item]
    ) -> GroundingResult:
        checks = [self._check(item) for item in items]
        grounded = sum(1 for c in checks if c["grounded"])
        if checks:
            score = grounded / len(checks)
            passing = score >= self.threshold
        else:
            score = 0.0 if self.require_citations else 1.0
            passing = not self.require_citations
        lines = [
            f"[{c['number']}] {'grounded' if c['grounded'] else 'NOT grounded'}: "
            f"{c['quote']!r}: {c['reason']}"
            for c in checks
        ] or ["no citations"]
        total, uncited = _sentence_counts(answer or "")
        share = uncited / total if total else None
        if share is not None:
            lines.append(f"uncited sentences: {uncited} of {total} ({share:.0%})")
        return GroundingResult(
            query=query,
            response=answer,
            contexts=contexts,
            passing=passing,
            score=score,
            feedback="\n".join(lines),
            checks=checks,
            sentences=total,
            uncited_sentences=uncited,
            uncited_share=share,
        )


def _response_citations(response: Response) -> list[dict[str, Any]] | None:
    """The citation dicts of a response: its metadata's, else its annotated nodes'."""
    listed = (response.metadata or {}).get("citations")
    if isinstance(listed, list):
        return listed
    by_number: dict[int, dict[str, Any]] = {}
    found = False
    for n in response.source_nodes:
        info = n.node.metadata.get(PLEIAS_METADATA_KEY)
        if not isinstance(info, dict) or not isinstance(info.get("citations"), list):
            continue
        found = True
        for c in info["citations"]:
            by_number.setdefault(int(c["number"]), c)
    return [by_number[k] for k in sorted(by_number)] if found else None


def _sentence_counts(answer: str) -> tuple[int, int]:
    """(sentences, sentences without a ``[n]`` marker) of an answer text; a marker written
    just after the sentence's final punctuation still belongs to that sentence."""
    text = _MARKERS_AFTER_STOP.sub(lambda m: m.group(2) + m.group(1), answer)
    sentences = [s for s in _SENTENCE_END.split(text.strip()) if s.strip()]
    return len(sentences), sum(1 for s in sentences if not _MARKER.search(s))


def _invalid(query: str | None, response: str | None, reason: str) -> GroundingResult:
    return GroundingResult(
        query=query,
        response=response,
        passing=False,
        score=0.0,
        invalid_result=True,
        invalid_reason=reason,
        feedback=reason,
    )
