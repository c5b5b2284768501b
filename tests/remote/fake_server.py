"""A scripted OpenAI-compatible completions server on 127.0.0.1, for fault tests.

Real sockets, real HTTP/1.1 (chunked SSE streams): the client under test is not mocked. Each
``/v1/completions`` request takes the next :class:`Step` of the plan (the last one repeats).
Run as a script (``python fake_server.py PORT_FILE``) it serves an endless slow stream, for a
test that kills the process mid-stream.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE_FILE = Path(__file__).resolve()


@dataclass
class Step:
    """How to answer one completions request."""

    status: int = 200
    text: str = "<|answer_start|>The answer.<|answer_end|>"
    finish_reason: str = "stop"
    error: str = "boom"
    delay: float = 0.0  # before the status line
    # Stream pieces (default: ``text`` in 4 pieces); a dict is sent as the event itself.
    chunks: Sequence[str | dict[str, Any]] | None = None
    chunk_delay: float = 0.0
    drop_after: int | None = None  # close the socket after this many chunks
    headers: dict[str, str] = field(default_factory=dict)
    done: bool = True  # send the final [DONE]
    raw_json: Any = None  # answer this instead of a completion
    # Answer these bytes instead (chunked, ``chunk_delay`` apart), as ``content_type``: raw SSE
    # lines for a stream (keep-alive comments, bad events), or any other body.
    raw_chunks: Sequence[bytes] | None = None
    content_type: str = "text/event-stream"  # "": no Content-Type header
    # Send a JSON answer this many bytes at a time, ``chunk_delay`` apart (a trickle).
    trickle: int | None = None


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any


class FakeServer:
    """Serves a plan of steps; records requests, concurrency and client disconnects."""

    def __init__(
        self,
        plan: Sequence[Step] = (Step(),),
        models: Any = None,
        routes: dict[str, Step] | None = None,
        models_delay: float = 0.0,
    ) -> None:
        self.models_delay = models_delay  # before answering /v1/models
        self.plan = list(plan)
        # A prompt containing one of these strings gets its step (whatever the order).
        self.routes = dict(routes or {})
        self.models = (
            models if models is not None else {"data": [{"id": "fake", "object": "model"}]}
        )
        self.requests: list[Seen] = []
        self.active = 0
        self.max_active = 0
        self.disconnected = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def completions(self) -> list[Seen]:
        return [r for r in self.requests if r.path.endswith("/completions")]

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def next_step(self, prompt: Any = None) -> Step:
        for key, step in self.routes.items():
            if isinstance(prompt, str) and key in prompt:
                return step
        with self._lock:
            n = len(self.completions) - 1
            return self.plan[min(n, len(self.plan) - 1)]


def _sse(payload: Any) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()


def _handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _record(self, body: Any) -> None:
            with server._lock:
                server.requests.append(Seen(self.path, dict(self.headers.items()), body))

        def _send_json(
            self, status: int, payload: Any, headers: dict[str, str] | None = None
        ) -> None:
            raw = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:
            self._record(None)
            if self.path == "/v1/models":
                time.sleep(server.models_delay)
                self._send_json(200, server.models)
            else:
                self._send_json(404, {"error": {"message": "no such route"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"null")
            self._record(body)
            if self.path == "/tokenize":
                self._send_json(200, {"count": len(str(body.get("prompt", "")).split())})
                return
            if self.path != "/v1/completions":
                self._send_json(404, {"detail": "Not Found"})
                return
            step = server.next_step(body.get("prompt"))
            with server._lock:
                server.active += 1
                server.max_active = max(server.max_active, server.active)
            try:
                time.sleep(step.delay)
                if step.raw_chunks is not None:
                    self._raw(step)
                elif step.raw_json is not None:
                    self._send_json(step.status, step.raw_json)
                elif step.status != 200:
                    error = {"error": {"message": step.error, "code": step.status}}
                    self._send_json(step.status, error, step.headers)
                elif body.get("stream"):
                    self._stream(step)
                else:
                    choice = {"index": 0, "text": step.text, "finish_reason": step.finish_reason}
                    usage = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
                    answer = {"choices": [choice], "usage": usage}
                    if step.trickle:
                        self._trickle(step, json.dumps(answer).encode())
                    else:
                        self._send_json(200, answer, step.headers)
            except (BrokenPipeError, ConnectionResetError):
                server.disconnected.set()
            finally:
                with server._lock:
                    server.active -= 1

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _chunked(self, content_type: str) -> None:
            self.send_response(200)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

        def _raw(self, step: Step) -> None:
            self._chunked(step.content_type)
            for piece in step.raw_chunks or ():
                self._chunk(piece)
                time.sleep(step.chunk_delay)
            self._chunk(b"")

        def _trickle(self, step: Step, raw: bytes) -> None:
            self._chunked("application/json")
            size = step.trickle or 1
            for i in range(0, len(raw), size):
                self._chunk(raw[i : i + size])
                time.sleep(step.chunk_delay)
            self._chunk(b"")

        def _stream(self, step: Step) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            pieces: list[Any] = (
                list(step.chunks) if step.chunks is not None else _split(step.text, 4)
            )
            for i, piece in enumerate(pieces):
                if step.drop_after is not None and i >= step.drop_after:
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                last = i == len(pieces) - 1
                reason = step.finish_reason if last else None
                if isinstance(piece, dict):
                    self._chunk(_sse(piece))
                else:
                    self._chunk(_sse({"choices": [{"text": piece, "finish_reason": reason}]}))
                time.sleep(step.chunk_delay)
            usage = {"prompt_tokens": 7, "completion_tokens": len(pieces)}
            self._chunk(_sse({"choices": [], "usage": usage}))
            if step.done:
                self._chunk(_sse("[DONE]"))
            self._chunk(b"")

    return Handler


def _split(text: str, n: int) -> list[str]:
    size = max(1, -(-len(text) // n))
    return [text[i : i + size] for i in range(0, len(text), size)]


if __name__ == "__main__":
    # An endless slow stream, for the test that kills this process mid-stream.
    slow = Step(chunks=["<|answer_start|>", *(["word "] * 100_000)], chunk_delay=0.02)
    with FakeServer([slow]) as fake:
        Path(sys.argv[1]).write_text(str(fake.port))
        while True:
            time.sleep(1)
