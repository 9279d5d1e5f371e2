"""Fixtures: the validating stand-in of GitHub's Codespaces API, one per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.codespaces_api.spec import load_cut


@pytest.fixture(scope="session")
def github_spec() -> dict[str, Any]:
    try:
        return load_cut()
    except RuntimeError as exc:
        pytest.skip(f"GitHub's OpenAPI description is unavailable: {exc}")


@pytest.fixture
def github_api(github_spec: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The stand-in, with orch pointed at it; fails the test on any schema violation."""
    from tests.codespaces_api.fake import FakeCodespacesAPI

    fake = FakeCodespacesAPI(github_spec)
    monkeypatch.setenv("ORCH_GITHUB_API_URL", fake.url)
    monkeypatch.setenv("GITHUB_TOKEN", fake.TOKEN)
    monkeypatch.delenv("GH_TOKEN", raising=False)
    try:
        yield fake
    finally:
        fake.close()
    assert fake.violations == [], "\n".join(fake.violations)
