"""Marker numbers chosen by the caller: ``[n]`` made the number the caller gave each source.

The parser numbers markers in order of first citation (``[1]`` is the first source cited).
A caller whose readers already see numbered sources (a framework's numbered source list, the
calls of an agent) renumbers them: :func:`renumber` rewrites a finished answer,
:class:`Numbering` an answer and its stream the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import replace

from .answer import Citation, PleiasAnswer
from .parser import AnswerDelta, CitationCompleted, Event, Finished


def renumber(answer: PleiasAnswer, number_of: Callable[[Citation], int]) -> PleiasAnswer:
    """``answer`` with each citation's ``[n]`` marker (text and ``number``) made
    ``[number_of(citation)]``, the offsets of every citation moved to match."""
    if not answer.citations:
        return answer
    text = answer.answer
    new = {c.number: number_of(c) for c in answer.citations}
    spans = sorted({(c.start, c.end, c.number) for c in answer.citations})
    pieces: list[str] = []
    moved: dict[tuple[int, int], tuple[int, int]] = {}
    pos = shift = 0
    for start, end, number in spans:
        if start < pos or text[start:end] != f"[{number}]":
            continue  # overlapping or not a marker: left as it is
        marker = f"[{new[number]}]"
        pieces.append(text[pos:start])
        moved[start, end] = (start + shift, start + shift + len(marker))
        pieces.append(marker)
        shift += len(marker) - (end - start)
        pos = end
    pieces.append(text[pos:])
    citations = tuple(
        replace(
            c,
            number=new[c.number],
            start=moved.get((c.start, c.end), (c.start, c.end))[0],
            end=moved.get((c.start, c.end), (c.start, c.end))[1],
        )
        for c in answer.citations
    )
    return replace(answer, answer="".join(pieces), citations=citations)


class Numbering:
    """Each source's marker number, by source id; for one answer (it keeps what it chose).

    A citation's marker becomes the number of the source it names; a marker naming no given
    source (an unknown id) gets the next number after all the given ones, so that it never
    names one of them.
    """

    def __init__(self, numbers: Mapping[str, int]) -> None:
        self._numbers = dict(numbers)
        self._next = max(self._numbers.values(), default=0) + 1
        self._chosen: dict[int, int] = {}

    def number(self, citation: Citation) -> int:
        """The marker number of ``citation`` (the same for every citation of one marker)."""
        chosen = self._chosen.get(citation.number)
        if chosen is None:
            source = citation.source
            chosen = None if source is None else self._numbers.get(source.id)
            if chosen is None:
                chosen, self._next = self._next, self._next + 1
            self._chosen[citation.number] = chosen
        return chosen

    def answer(self, answer: PleiasAnswer) -> PleiasAnswer:
        """``answer`` renumbered."""
        return renumber(answer, self.number)

    def events(self, events: Iterable[Event]) -> Iterator[Event]:
        """A stream renumbered: the deltas (each held back one event, until the citation of a
        marker it ends with is known), citations and the final answer."""
        stream = _Renumbering(self)
        for event in events:
            yield from stream.step(event)
        yield from stream.flush()

    async def aevents(self, events: AsyncIterable[Event]) -> AsyncIterator[Event]:
        """:meth:`events` of an async stream."""
        stream = _Renumbering(self)
        async for event in events:
            for out in stream.step(event):
                yield out
        for out in stream.flush():
            yield out


class _Renumbering:
    """The stream state of :meth:`Numbering.events`.

    The parser puts out a marker's delta just before its ``CitationCompleted`` (the marker is
    written as the ref ends), so holding the last delta one event is enough to rewrite it.
    """

    def __init__(self, numbering: Numbering) -> None:
        self._numbering = numbering
        self._held: AnswerDelta | None = None
        self._held_start = 0  # where the held delta starts in the parser's answer text
        self._length = 0  # the parser's answer text put out so far, the held delta included
        self._shift = 0  # how much longer the renumbered text is than the parser's
        self._moved: dict[tuple[int, int], tuple[int, int]] = {}

    def step(self, event: Event) -> list[Event]:
        if isinstance(event, AnswerDelta):
            out = self.flush()
            self._held, self._held_start = event, self._length
            self._length += len(event.text)
            return out
        if isinstance(event, CitationCompleted):
            c = event.citation
            number = self._numbering.number(c)
            held, span = self._held, (c.start, c.end)
            if span not in self._moved and held is not None and self._held_start <= c.start:
                # the held delta is in the parser's coordinates until it is rewritten here
                start, end = c.start - self._held_start, c.end - self._held_start
                if c.end <= self._length and held.text[start:end] == c.marker:
                    marker = f"[{number}]"
                    self._held = AnswerDelta(held.text[:start] + marker + held.text[end:])
                    new_start = c.start + self._shift
                    self._moved[span] = (new_start, new_start + len(marker))
                    self._shift += len(marker) - len(c.marker)
            start, end = self._moved.get(span, (c.start + self._shift, c.end + self._shift))
            moved = replace(c, number=number, start=start, end=end)
            return [*self.flush(), CitationCompleted(moved)]
        if isinstance(event, Finished):
            return [*self.flush(), Finished(self._numbering.answer(event.answer))]
        return [*self.flush(), event]

    def flush(self) -> list[Event]:
        held, self._held = self._held, None
        return [] if held is None else [held]
