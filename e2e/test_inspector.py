"""The MCP Inspector CLI (2.12.0, Node 22) as the agent: tools/list and tools/call through `remit serve`
over Streamable HTTP, with the agent's bearer token as a header, in both protocol eras."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import helpers


def register(everything_url: str) -> str:
    return (
        helpers.agent("support-bot")
        + helpers.billing_upstream()
        + helpers.everything_upstream(everything_url)
        + helpers.action("billing.get_customer", ["support-bot"])
        + helpers.action("billing.issue_refund", ["support-bot"], "write", require="args.amount <= 500")
        + helpers.action("everything.get-sum", ["support-bot"], require="args.a + args.b <= 100")
    )


def inspector(gw: helpers.Gateway, era: str, home: Path, *args: str) -> helpers.CliResult:
    auth = {"Authorization": f"Bearer {gw.tokens['support-bot']}"}
    return helpers.inspector_cli(gw.mcp_url, "--transport", "http", *args, headers=auth, era=era, home=home)


@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_inspector_cli_through_remit(gateway, everything_url: str, era: str, tool_home: Path) -> None:
    gw = gateway(register(everything_url))

    listed = inspector(gw, era, tool_home, "--method", "tools/list")
    assert listed.returncode == 0, listed.stderr
    assert sorted(tool["name"] for tool in listed.json()["result"]["tools"]) == [
        "billing.get_customer",
        "billing.issue_refund",
        "everything.get-sum",
    ]

    called = inspector(
        gw, era, tool_home, "--method", "tools/call", "--tool-name", "billing.get_customer",
        "--tool-args-json", '{"id": "cus_003"}',
    )  # fmt: skip
    assert called.returncode == 0, called.stderr
    assert called.json()["result"]["structuredContent"]["name"] == "Alan Turing"

    refused = inspector(
        gw, era, tool_home, "--method", "tools/call", "--tool-name", "everything.get-sum",
        "--tool-args-json", '{"a": 100, "b": 1}',
    )  # fmt: skip
    # a result with isError: the Inspector prints it, reports tool_is_error on stderr and exits 5
    assert refused.returncode == 5, refused.stdout + refused.stderr
    assert json.loads(refused.stderr)["error"]["code"] == "tool_is_error"
    result = refused.json()["result"]
    assert result["isError"] is True and result["_meta"]["remit"]["code"] == "condition"
    assert "condition `args.a + args.b <= 100` is false" in result["content"][0]["text"]

    assert [call["tool"] for call in helpers.billing_ledger(gw.dir / "billing.db")] == ["get_customer"]


def test_inspector_sees_the_refusal_of_a_tool_with_an_output_schema(
    gateway, everything_url: str, tool_home: Path
) -> None:
    gw = gateway(register(everything_url))
    refused = inspector(
        gw, "legacy", tool_home, "--method", "tools/call", "--tool-name", "billing.issue_refund",
        "--tool-args-json", '{"charge_id": "ch_003", "amount": 900, "reason": "asked"}',
    )  # fmt: skip
    assert refused.returncode == 5, refused.stdout + refused.stderr
    assert "args.amount <= 500" in refused.json()["result"]["content"][0]["text"]
    assert helpers.billing_ledger(gw.dir / "billing.db") == []
