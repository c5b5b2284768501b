"""Local generation: Pleias models run in-process with transformers (needs ``pleias-rag[local]``).

:class:`PleiasModel` loads lazily and shares weights, batches concurrent calls, streams parsed
events, and packs sources into the context window at the token level.
"""

from ..backend import Backend
from ..generation import GenerationSettings
from ._loading import cpu_has_native_bf16, resolve_dtype
from .model import PleiasModel

__all__ = ["Backend", "GenerationSettings", "PleiasModel", "cpu_has_native_bf16", "resolve_dtype"]
