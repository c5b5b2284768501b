"""What to show when a Pleias output has no answer: shared by the framework adapters.

Frameworks expect a non-empty text reply. When the model wrote no answer section (it was cut
off by the token limit or a stop sequence before ``<|answer_start|>``, or it did not follow
the format), the visible text is the model's whole output with the Pleias markup removed:
section markers become line breaks and ``<ref>`` tags are dropped, keeping their quoted text.
Such a reply carries no citations.
"""

from __future__ import annotations

import re

from .answer import PleiasAnswer
from .parser import AnswerDelta, Event, Finished

_REF_OPEN = re.compile(r"<ref\b(?:<\|[A-Za-z_]{1,40}\|>|[^<>])*>", re.IGNORECASE)
_REF_CLOSE = re.compile(r"</ref\s*>", re.IGNORECASE)
_MARKER = re.compile(r"<\|[A-Za-z_]{1,40}\|>|</s>|#END#|###[ \t]*(?:Analysis|Answer)[ \t]*###")
_BLANK_LINES = re.compile(r"[ \t]*\n(?:[ \t]*\n)+")


def strip_markup(raw: str) -> str:
    """``raw`` Pleias output as plain text: markers, headings and ref tags removed."""
    text = _REF_CLOSE.sub("", _REF_OPEN.sub("", raw))
    text = _MARKER.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text).strip()


def has_answer(answer: PleiasAnswer) -> bool:
    """Whether the model wrote a non-empty answer section."""
    return bool(answer.answer.strip())


def visible_text(answer: PleiasAnswer) -> str:
    """The text to show for ``answer``: the clean answer, else the stripped raw output."""
    return answer.answer if has_answer(answer) else strip_markup(answer.raw)


def stream_rest(answer: PleiasAnswer) -> str:
    """What the end of a stream adds to the streamed answer deltas: nothing when the model
    wrote an answer, else the fallback text (so a stream shows what ``visible_text`` shows)."""
    return "" if has_answer(answer) else visible_text(answer)


class VisibleText:
    """Folds a stream's events into the text a reader sees — the one fold every adapter uses.

    :meth:`step` returns what each event adds: an ``AnswerDelta``'s text, and on ``Finished``
    :func:`stream_rest`. :attr:`text` is all of it so far.
    """

    def __init__(self) -> None:
        self.text = ""
        self.answer: PleiasAnswer | None = None

    def step(self, event: Event) -> str:
        """The text ``event`` adds ("" for events that add none)."""
        if isinstance(event, AnswerDelta):
            delta = event.text
        elif isinstance(event, Finished):
            self.answer = event.answer
            delta = stream_rest(event.answer)
        else:
            return ""
        self.text += delta
        return delta
