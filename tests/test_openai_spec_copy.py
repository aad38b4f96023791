"""The repository's copy of the trimmed OpenAPI specs is the shared one, byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "openai-api"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "openai-api"


@pytest.mark.parametrize("name", ["openapi-current.yaml", "openapi-legacy.yaml", "LICENSE"])
def test_the_vendored_spec_matches_the_shared_one(name: str) -> None:
    if not SHARED.is_dir():
        pytest.skip("no shared/ beside this checkout to compare with")
    assert (HERE / name).read_bytes() == (SHARED / name).read_bytes(), (
        f"tests/openai-api/{name} differs from shared/openai-api/{name}: copy it again"
    )
