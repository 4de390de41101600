"""The conformance suite straight against the fixture upstream (no remit): every scored scenario passes.

This keeps the fixture honest, so that a failure when the same suite runs through remit is remit's.
See e2e/CONFORMANCE.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import helpers


@pytest.mark.parametrize("revision", ["2025-11-25", "2026-07-28"])
def test_fixture_alone_passes_requirements(conformance_url: str, revision: str, tmp_path: Path) -> None:
    run = helpers.conformance_requirements(conformance_url, revision, tmp_path)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    failed = {s for s, counts in helpers.conformance_results(tmp_path).items() if counts.get("FAILURE")}
    assert failed <= helpers.UNSCORED_EXTENSION_SCENARIOS, failed
