"""Quote checks are CPU work: in every async path they run off the event loop's thread."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "remote"))

from fake_server import FakeServer, Step

from pleias_rag import Finished, PleiasModel, Source
from pleias_rag.remote import RemoteBackend
from pleias_rag.testing import TRAINING_EXAMPLES

EIFFEL = Source("The Eiffel Tower was completed in 1889 for the World's Fair.")
OUT = (
    "Analysis.<|source_analysis_end|>\n<|answer_start|>Done in 1889"
    f'<ref name="{EIFFEL.id}">"was completed in 1889"</ref>.<|answer_end|>'
)


async def test_remote_aanswer_and_astream(check_threads: list[int]) -> None:
    loop_thread = threading.get_ident()
    with FakeServer([Step(text=OUT)]) as fake:
        backend = RemoteBackend(fake.base_url, "fake", dialect="hash")
        answer = await backend.aanswer("When?", [EIFFEL])
        events = [e async for e in backend.astream("When?", [EIFFEL])]
    assert answer.citations[0].status == "verified"
    final = events[-1]
    assert isinstance(final, Finished) and final.answer.citations == answer.citations
    assert check_threads and loop_thread not in check_threads


async def test_local_aanswer_and_astream(
    tiny_trained_model_hash: Path, check_threads: list[int]
) -> None:
    ex = next(e for e in TRAINING_EXAMPLES["hash"] if e.name == "two_citations")
    model = PleiasModel.from_pretrained(tiny_trained_model_hash)
    loop_thread = threading.get_ident()
    answer = await model.aanswer(ex.query, list(ex.sources), max_new_tokens=128)
    events = [e async for e in model.astream(ex.query, list(ex.sources), max_new_tokens=128)]
    assert [c.status for c in answer.citations] == ["verified", "verified"]
    final = events[-1]
    assert isinstance(final, Finished) and final.answer.citations == answer.citations
    assert check_threads and loop_thread not in check_threads
