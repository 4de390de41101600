"""The MCP conformance suite (0.2.0-alpha.12) against remit's `/mcp`, for 2025-11-25 and 2026-07-28.

Behind remit: the conformance fixture (e2e/fixtures/conformance_server.py) as a stdio upstream with
`namespace = false`, every one of its tools granted to the agent `conformance`. The suite cannot
send a header itself, so it talks to remit through e2e/fixtures/bearer_proxy.py, which adds the
agent's `Authorization: Bearer` to each request and forwards everything else byte for byte.

Known failures (remit proxies tools only) are baselined per revision in
e2e/conformance-baseline-REVISION.yml: a new failure or a baselined check that now passes fails the
test. Results and the reason for each entry: e2e/CONFORMANCE.md, "Through remit".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import helpers

REVISIONS = ("2025-11-25", "2026-07-28")
AGENT = "conformance"
TOGGLED_TOOL = "test_toggled_tool"  # appears only after test_trigger_tool_change


def fixture_tools(conformance_url: str) -> list[str]:
    answer = helpers.post_jsonrpc(conformance_url, helpers.modern_request("tools/list"))
    assert answer.status_code == 200, answer.text
    return [tool["name"] for tool in helpers.jsonrpc_messages(answer)[0]["result"]["tools"]]


def conformance_register(tools: list[str]) -> str:
    body = helpers.agent(AGENT) + helpers.conformance_upstream("conf", namespace=False)
    for tool in sorted({*tools, TOGGLED_TOOL}):
        body += helpers.action(f"conf.{tool}", [AGENT])
    return body


@pytest.fixture
def remit_for_conformance(gateway, conformance_url: str) -> Iterator[str]:
    """remit with the fixture behind it; yields the URL of its `/mcp` through the bearer proxy."""
    gw = gateway(conformance_register(fixture_tools(conformance_url)))
    with helpers.bearer_proxy(gw.port, f"REMIT_TOKEN_{AGENT.upper()}", gw.env) as port:
        yield f"http://127.0.0.1:{port}/mcp"


@pytest.mark.timeout(240)
@pytest.mark.parametrize("revision", REVISIONS)
def test_conformance_through_remit(remit_for_conformance: str, revision: str, tmp_path: Path) -> None:
    baseline = helpers.REPO / "e2e" / f"conformance-baseline-{revision}.yml"
    run = helpers.conformance_requirements(
        remit_for_conformance, revision, tmp_path, "--expected-failures", str(baseline)
    )
    summary = run.stdout[run.stdout.find("=== SUMMARY ===") :]
    assert run.returncode == 0, summary[-6000:] + run.stderr[-2000:]
    assert "Baseline check passed" in run.stdout, summary[-3000:]
    results = helpers.conformance_results(tmp_path)
    assert results["tools-call-simple-text"] == {"SUCCESS": 2}  # it really went through remit
    assert results["dns-rebinding-protection"] == {"SUCCESS": 2}


def test_bearer_proxy_adds_only_the_token(conformance_url: str) -> None:
    """The proxy the suite goes through adds `Authorization` and leaves every other header alone."""
    port = int(conformance_url.rsplit(":", 1)[1].split("/")[0])
    env = {"E2E_PROXY_TOKEN": "t0ken-for-the-proxy"}
    with helpers.bearer_proxy(port, "E2E_PROXY_TOKEN", env) as proxy:
        url = f"http://127.0.0.1:{proxy}/mcp"
        request = helpers.modern_request("tools/call", {"name": "echo_headers", "arguments": {}})
        seen = helpers.jsonrpc_messages(helpers.post_jsonrpc(url, request, headers={"X-E2E-Marker": "kept"}))
        headers = seen[0]["result"]["structuredContent"]
        assert headers["authorization"] == "Bearer t0ken-for-the-proxy"
        assert (headers["host"], headers["x-e2e-marker"]) == (f"127.0.0.1:{proxy}", "kept")
        assert (headers["mcp-method"], headers["mcp-name"]) == ("tools/call", "echo_headers")
        kept = helpers.post_jsonrpc(url, request, token="own-token")  # a request's own Authorization wins
        assert helpers.jsonrpc_messages(kept)[0]["result"]["structuredContent"]["authorization"] == "Bearer own-token"


def test_bearer_proxy_is_needed(gateway, conformance_url: str) -> None:
    """Without the proxy the suite is refused at the door: remit does not let it in unauthenticated."""
    gw = gateway(conformance_register(["test_simple_text"]))
    answer = helpers.post_jsonrpc(gw.mcp_url, helpers.modern_request("server/discover"))
    assert answer.status_code == 401
    with helpers.bearer_proxy(gw.port, f"REMIT_TOKEN_{AGENT.upper()}", gw.env) as port:
        through = helpers.post_jsonrpc(f"http://127.0.0.1:{port}/mcp", helpers.modern_request("server/discover"))
        assert through.status_code == 200, through.text
