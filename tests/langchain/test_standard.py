"""The langchain-tests standard suites for ``ChatPleias`` on a tiny trained local model.

No standard test is overridden or marked xfail. The tiny model answers its training prompts
exactly ("Hello" included) and something non-empty to the suites' other generic prompts.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from langchain_pleias import ChatPleias


@pytest.fixture(scope="class")
def _model_paths(request: pytest.FixtureRequest, hash_model: str, numbered_model: str) -> None:
    request.cls.model_path = hash_model
    request.cls.other_model_path = numbered_model  # the per-call ``model=`` override


class _Params:
    model_path: str
    other_model_path: str

    @property
    def chat_model_class(self) -> type[ChatPleias]:
        return ChatPleias

    @property
    def chat_model_params(self) -> dict[str, Any]:
        # The standard params add max_tokens=100: every trained answer fits, and the
        # generic prompts of the suites stop there.
        return {"model": self.model_path}

    @property
    def model_override_value(self) -> str:
        return self.other_model_path

    # Pleias models neither call tools nor write structured output: ChatPleias overrides
    # bind_tools and with_structured_output only to say so, and what to use instead.
    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False


@pytest.mark.usefixtures("_model_paths")
class TestChatPleiasUnit(_Params, ChatModelUnitTests):
    pass


@pytest.mark.usefixtures("_model_paths")
class TestChatPleiasIntegration(_Params, ChatModelIntegrationTests):
    pass
