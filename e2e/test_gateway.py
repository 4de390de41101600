"""The `gateway` fixture and `remit serve` itself: start-up, refusal to start, /health."""

from __future__ import annotations

import json

import pytest

import helpers


def test_serve_reports_its_upstreams(gateway) -> None:
    gw = gateway(helpers.agent("support-bot") + helpers.billing_upstream())
    health = gw.health()
    assert health["status"] == "ok" and health["store"] == {"ok": True}
    [billing] = health["upstreams"]
    assert (billing["upstream"], billing["up"], billing["tools"]) == ("billing", True, 7)
    assert billing["protocol"] == "2026-07-28"  # auto: the billing server (rmcp) answers server/discover
    assert health["register"].startswith("sha256:")


def test_gateway_fixture_reports_early_exit(gateway) -> None:
    """A register with a token written in the file: remit refuses to start, and says why."""
    with pytest.raises(RuntimeError, match="exited with 2 before /health answered") as err:
        gateway('[agents.bot]\ntoken = "tok-written-in-the-file"\n')
    message = str(err.value)  # remit's stderr is in it
    assert "remit.toml:6:9: error: the token of agent `bot` is written in the register" in message
    assert "tok-written-in-the-file" not in message  # the secret is not echoed


def test_bad_input_never_reaches_the_upstream(gateway) -> None:
    """Malformed, ambiguous or oversized requests get a precise JSON-RPC error and reach no upstream."""
    body = helpers.agent("support-bot") + helpers.billing_upstream()
    body += helpers.action("billing.get_customer", ["support-bot"])
    gw = gateway(body, gateway={"max_request_bytes": 4096})
    token = gw.tokens["support-bot"]
    request = helpers.modern_request("tools/call", {"name": "billing.get_customer", "arguments": {"id": "cus_001"}})
    headers = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "billing.get_customer"}
    raw = json.dumps(request)

    def error_of(answer) -> int:
        return helpers.jsonrpc_messages(answer)[0]["error"]["code"]

    # a duplicate key could smuggle a second tool name past a check that reads the other one
    name = '"name": "billing.get_customer"'
    twice = raw.replace(name, name + ', "name": "billing.delete_customer"')
    answer = helpers.post_jsonrpc(gw.mcp_url, twice, token=token, headers=headers)
    assert (answer.status_code, error_of(answer)) == (400, -32700), answer.text
    assert "duplicate key `name`" in answer.text

    answer = helpers.post_jsonrpc(gw.mcp_url, raw[:-3], token=token, headers=headers)
    assert (answer.status_code, error_of(answer)) == (400, -32700), answer.text

    big = helpers.modern_request("tools/call", {"name": "billing.get_customer", "arguments": {"id": "x" * 5000}})
    answer = helpers.post_jsonrpc(gw.mcp_url, big, token=token)
    assert answer.status_code == 413, answer.text

    answer = helpers.post_jsonrpc(gw.mcp_url, request, token=token, headers={"Mcp-Name": "billing.delete_customer"})
    assert (answer.status_code, error_of(answer)) == (400, -32020), answer.text  # HeaderMismatch

    answer = helpers.post_jsonrpc(gw.mcp_url, request, token=token)
    assert helpers.jsonrpc_messages(answer)[0]["result"]["structuredContent"]["id"] == "cus_001"
    assert [call["arguments"] for call in helpers.billing_ledger(gw.dir / "billing.db")] == [{"id": "cus_001"}]
