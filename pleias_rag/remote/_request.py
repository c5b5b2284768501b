"""Completions requests and answers: request bodies, and reading what the server sent."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from ..answer import FinishReason
from ..errors import InvalidArgument
from ..generation import GenerationSettings
from .errors import RemoteError

ANSWER_END = "<|answer_end|>"
_log = logging.getLogger("pleias_rag.remote")


@dataclass
class Reply:
    """What the server said: text, why it stopped, token counts (filled as a stream goes)."""

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    choices: int = 0  # chunks that carried a choice (a stream may carry none at all)


def normalize_url(base_url: str) -> str:
    """``base_url`` without a trailing ``/`` or ``/completions``; ``/v1`` added to a bare host."""
    if not isinstance(base_url, str) or not base_url.strip():
        raise InvalidArgument(f"base_url must be the server's URL, got {base_url!r}")
    url = base_url.strip().rstrip("/")
    url = url.removesuffix("/completions").rstrip("/")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InvalidArgument(f"base_url {base_url!r} is not a URL: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidArgument(
            f"base_url {base_url!r} must start with http:// or https:// and name a host, "
            "e.g. http://127.0.0.1:8000/v1"
        )
    if parsed.path in ("", "/"):
        url += "/v1"
    return url


def body(
    model: str,
    prompt: Sequence[int] | str,
    s: GenerationSettings,
    extra: Mapping[str, Any],
    vllm: bool,
    *,
    stream: bool,
) -> dict[str, Any]:
    """The ``/v1/completions`` request body."""
    out: dict[str, Any] = {
        "model": model,
        "prompt": prompt if isinstance(prompt, str) else list(prompt),
        "max_tokens": s.max_new_tokens,
        "temperature": s.temperature,
        "stop": [ANSWER_END, *s.stop],
    }
    if not s.greedy:
        out["top_p"] = s.top_p
    if s.seed is not None:
        out["seed"] = s.seed
    if s.min_new_tokens:
        if not vllm:
            raise InvalidArgument(
                "min_new_tokens is supported on vLLM servers only (server='vllm')"
            )
        out["min_tokens"] = s.min_new_tokens
    if stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    out.update(extra)
    return out


def finish_reason(reason: str | None) -> FinishReason | None:
    """The server's finish reason when it is one of ours; else the parser decides."""
    if reason == "stop":
        return "stop"
    if reason == "length":
        return "length"
    return None


def _choice(data: Any, server: str) -> Mapping[str, Any] | None:
    if not isinstance(data, Mapping):
        raise RemoteError(f"the {server} answered {data!r:.200}, not a completion", server=server)
    choices = data.get("choices")
    if not isinstance(choices, list):
        raise RemoteError(
            f"the {server} answered without choices: {data!r:.300}. Is it an OpenAI-compatible "
            "completions endpoint?",
            server=server,
        )
    if not choices:
        return None
    choice = choices[0]
    if not isinstance(choice, Mapping):
        raise RemoteError(f"the {server} sent a malformed choice: {choice!r:.200}", server=server)
    return choice


def _usage(data: Mapping[str, Any], done: Reply) -> None:
    usage = data.get("usage")
    if isinstance(usage, Mapping):
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if isinstance(prompt, int):
            done.prompt_tokens = prompt
        if isinstance(completion, int):
            done.completion_tokens = completion


def completion(data: Any, server: str) -> Reply:
    """A whole (non-streamed) answer."""
    choice = _choice(data, server)
    if choice is None:
        raise RemoteError(f"the {server} answered with no choice", server=server)
    text = choice.get("text")
    if not isinstance(text, str):
        raise RemoteError(f"the {server} sent no text: {choice!r:.300}", server=server)
    done = Reply(text=text, finish_reason=choice.get("finish_reason"), choices=1)
    _usage(data, done)
    return done


def check_text(done: Reply, server: str) -> None:
    """An empty completion is an error, unless ``max_tokens`` cut it (a warning then).

    A Pleias model writes its analysis (or its language line) before it can stop, so no text
    with any other finish reason means the server lost it: a stream with no choice at all, a
    stop string or a stripping setting that removed everything, or another model behind it.
    """
    if done.text:
        return
    if done.finish_reason == "length":
        _log.warning(
            "the %s returned no text: max_tokens cut the output before any (finish_reason "
            "'length'); the answer is empty and marked truncated",
            server,
        )
        return
    why = (
        "its stream carried no completion choice"
        if not done.choices
        else f"finish_reason {done.finish_reason!r}"
    )
    raise RemoteError(
        f"the {server} returned no text ({why}). A Pleias model always writes before it "
        "stops: check that the server serves this model and strips nothing (stop strings, "
        "special tokens)",
        server=server,
    )


def stream_delta(payload: Mapping[str, Any], done: Reply, server: str) -> str:
    """The text of one streamed chunk; its finish reason and usage are kept in ``done``."""
    _usage(payload, done)
    choice = _choice(payload, server)
    if choice is None:
        return ""  # the usage chunk
    done.choices += 1
    reason = choice.get("finish_reason")
    if isinstance(reason, str):
        done.finish_reason = reason
    text = choice.get("text") or ""
    if not isinstance(text, str):
        raise RemoteError(
            f"the {server} streamed a malformed chunk: {choice!r:.200}", server=server
        )
    done.text += text
    return text
