"""remit in front of its demo billing system (`remit billing-server`, a stdio upstream), driven by the
Python `mcp` SDK over Streamable HTTP (`remit serve`) and over stdio (`remit stdio`), in both
protocol eras.

The billing server writes every tools/call it receives to its `received_calls` table before the
tool runs, so the ledger proves what reached the upstream: refused calls never do.
"""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest

import helpers
from helpers import MODES, TRANSPORTS, assert_refused, text_of

pytestmark = pytest.mark.anyio

REFUND_CONDITION = "args.amount > 0 && args.amount <= 500"
REGISTER = (
    helpers.agent("support-bot", owner="payments-team@example.com")
    + helpers.agent("lookup-bot")
    + helpers.billing_upstream()
    + helpers.action("billing.get_customer", ["support-bot", "lookup-bot"])
    + helpers.action("billing.list_charges", ["support-bot"])
    + helpers.action(
        "billing.issue_refund",
        ["support-bot"],
        "write",
        require=REFUND_CONDITION,
        budget=[{"count": 3, "per": "1h"}, {"sum": "args.amount", "max": 100, "per": "24h"}],
    )
)
GRANTED = {"billing.get_customer", "billing.list_charges", "billing.issue_refund"}
# not granted: billing.get_refund, cancel_refund, send_email, delete_customer


def refund(charge: str, amount: object) -> dict[str, object]:
    reason = f"refund {amount} of {charge}"  # the agent's `_reason`: recorded, never forwarded
    return {"charge_id": charge, "amount": amount, "reason": "customer asked", "_reason": reason}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_billing_agent_session(gateway, transport: str, mode: str) -> None:
    """One agent session: what it may do works on the real system; everything else is refused before it."""
    gw = gateway(REGISTER, serve=transport == "http")
    async with gw.connect(transport, "support-bot", mode=mode) as client:
        assert client.protocol_version == ("2025-11-25" if mode == "legacy" else mode)

        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == GRANTED  # default deny: ungranted tools are not even listed
        assert tools["billing.get_customer"].annotations.read_only_hint is True
        assert tools["billing.issue_refund"].annotations.read_only_hint is not True
        assert "amount" in tools["billing.issue_refund"].input_schema["properties"]

        # granted tools run on the upstream and return its real answers
        customer = await client.call_tool("billing.get_customer", {"id": "cus_002", "_reason": "customer wrote in"})
        assert not customer.is_error, text_of(customer)
        assert customer.structured_content["name"] == "Grace Hopper"
        charges = await client.call_tool("billing.list_charges", {"customer": "cus_001"})
        assert not charges.is_error, text_of(charges)
        assert {c["id"]: c["refundable"] for c in charges.structured_content["charges"]} == {
            "ch_001": 120.0,
            "ch_002": 40.0,
        }
        first = await client.call_tool("billing.issue_refund", refund("ch_001", 40))
        assert not first.is_error, text_of(first)
        assert (first.structured_content["status"], first.structured_content["amount"]) == ("issued", 40.0)
        refund_id = first.structured_content["refund_id"]

        # a condition refuses, naming the condition
        condition = assert_refused(
            await client.call_tool("billing.issue_refund", refund("ch_003", 700)),
            "condition",
            REFUND_CONDITION,
            "billing.issue_refund",
        )
        assert "retry_after_seconds" not in condition, condition  # only a budget says when
        # ungranted tools (and names no upstream has) are refused as outside the remit
        assert_refused(
            await client.call_tool("billing.delete_customer", {"id": "cus_002"}), "unlisted", "billing.delete_customer"
        )
        assert_refused(await client.call_tool("billing.cancel_refund", {"id": refund_id}), "unlisted")
        assert_refused(await client.call_tool("billing.drop_tables", {}), "unlisted")
        assert_refused(await client.call_tool("get_customer", {"id": "cus_002"}), "unlisted")  # bare name
        # arguments the tool's input schema rejects never reach it
        assert_refused(
            await client.call_tool("billing.issue_refund", refund("ch_001", "forty")), "invalid_arguments", "/amount"
        )

        # budgets: at most 3 refunds an hour and 100 a day; a refused call consumes nothing
        second = await client.call_tool("billing.issue_refund", refund("ch_001", 50))
        assert not second.is_error, text_of(second)
        daily = assert_refused(
            await client.call_tool("billing.issue_refund", refund("ch_002", 20)),
            "over_budget",
            "sum of `args.amount` at most 100 per 24h; 90 used",
            "retry after",
        )
        # and says when to retry in whole seconds, for a program: the day from the first refund
        assert 86_340 <= daily["retry_after_seconds"] <= 86_400, daily
        third = await client.call_tool("billing.issue_refund", refund("ch_002", 10))
        assert not third.is_error, text_of(third)
        hourly = assert_refused(
            await client.call_tool("billing.issue_refund", refund("ch_002", 1)),
            "over_budget",
            "at most 3 calls per 1h; 3 used",
        )
        assert 3_540 <= hourly["retry_after_seconds"] <= 3_600, hourly

    # the upstream saw exactly the allowed calls, with the agent's `_reason` removed
    ledger = helpers.billing_ledger(gw.dir / "billing.db")
    assert [(call["tool"], call["arguments"]) for call in ledger] == [
        ("get_customer", {"id": "cus_002"}),
        ("list_charges", {"customer": "cus_001"}),
        ("issue_refund", {"charge_id": "ch_001", "amount": 40, "reason": "customer asked"}),
        ("issue_refund", {"charge_id": "ch_001", "amount": 50, "reason": "customer asked"}),
        ("issue_refund", {"charge_id": "ch_002", "amount": 10, "reason": "customer asked"}),
    ]
    assert len({call["protocol_version"] for call in ledger}) == 1  # one upstream session, one era
    # and the system of record agrees: nothing deleted, exactly the three refunds
    db = gw.dir / "billing.db"
    customers = helpers.billing_query(db, "SELECT id FROM customers ORDER BY id")
    assert customers == [("cus_001",), ("cus_002",), ("cus_003",)]
    assert helpers.billing_query(db, "SELECT sum(amount_cents), count(*) FROM refunds WHERE status = 'issued'") == [
        (10000, 3)
    ]

    # the audit trail holds every step, verifies, and says why each refusal happened
    if transport == "http":  # `remit stdio` has exited: see test_audit_verifies_after_the_run
        gw.wait_checkpoint()
        helpers.assert_audit_intact(gw.audit_verify())
    events = gw.audit_events()
    refused = [e["detail"]["code"] for e in events if e["stage"] == "refused"]
    assert refused == [
        "condition",
        "unlisted",
        "unlisted",
        "unlisted",
        "unlisted",
        "invalid_arguments",
        "over_budget",
        "over_budget",
    ]
    assert sum(e["stage"] == "executed" for e in events) == len(ledger)
    proposed = [e for e in events if e["stage"] == "proposed"]
    assert proposed[0]["detail"]["reason"] == "customer wrote in"
    assert {e["agent"] for e in proposed} == {"support-bot"}
    assert {e["detail"]["entry"] for e in proposed} == {"mcp"}
    # every call names its tool, the refused ones too (those before their arguments were read have none)
    assert all(isinstance(e["detail"]["tool"], str) and e["detail"]["tool"] for e in proposed)
    assert sum("args" not in e["detail"] for e in proposed) == refused.count("unlisted")


@pytest.mark.parametrize("mode", MODES)
async def test_agents_are_authenticated_and_kept_apart(gateway, mode: str) -> None:
    """Over HTTP only a known bearer token gets in, and each agent sees and may call only its own grants."""
    gw = gateway(REGISTER)
    if mode == "legacy":
        request = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "e2e", "version": "0"},
            },
        }
    else:
        request = helpers.modern_request("tools/list")
    for token in (None, "tok-not-a-real-one", gw.tokens["support-bot"] + "x"):
        answer = helpers.post_jsonrpc(gw.mcp_url, request, token=token)
        assert answer.status_code == 401, answer.text
        assert answer.headers["www-authenticate"].lower().startswith("bearer")
        assert helpers.jsonrpc_messages(answer)[0]["error"]["code"] < 0

    with pytest.raises(BaseException) as refused:  # noqa: PT011 (the SDK wraps it in an ExceptionGroup)
        async with helpers.http_client(gw.mcp_url, token="tok-wrong", mode=mode) as client:
            await client.list_tools()
    assert helpers.mcp_error(refused.value) is not None, refused.value

    async with gw.client("lookup-bot", mode=mode) as client:
        assert [tool.name for tool in (await client.list_tools()).tools] == ["billing.get_customer"]
        found = await client.call_tool("billing.get_customer", {"id": "cus_003"})
        assert found.structured_content["name"] == "Alan Turing"
        assert_refused(await client.call_tool("billing.issue_refund", refund("ch_004", 5)), "unlisted")
        assert_refused(await client.call_tool("billing.list_charges", {"customer": "cus_003"}), "unlisted")

    assert [call["tool"] for call in helpers.billing_ledger(gw.dir / "billing.db")] == ["get_customer"]


def test_stdio_refuses_an_unknown_agent(gateway) -> None:
    gw = gateway(REGISTER, serve=False)
    cmd = [str(helpers.remit_bin()), "stdio", "--register", str(gw.register), "--agent", "ghost-bot"]
    proc = subprocess.run(
        cmd, cwd=gw.dir, env=gw.env, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )
    assert proc.returncode != 0
    assert "ghost-bot" in proc.stderr


async def refused_as(client, code: str, timeout: float = 10.0) -> None:
    """Poll with a refund over the limit (never executed: `condition` refuses it, or the kill switch
    first) until remit answers `code`; the kill switch reaches a running gateway within about a second."""
    deadline = time.monotonic() + timeout
    while True:
        found = helpers.refusal(await client.call_tool("billing.issue_refund", refund("ch_003", 700)))
        assert found is not None
        if found["code"] == code:
            return
        assert time.monotonic() < deadline, f"still {found['code']} after {timeout}s, not {code}"
        await asyncio.sleep(0.1)


async def test_kill_switch(gateway) -> None:
    """`remit freeze` stops an action or a whole agent on the running gateway; `unfreeze` lifts it."""
    gw = gateway(REGISTER)
    async with gw.client("support-bot", mode="2026-07-28") as client:
        assert not (await client.call_tool("billing.get_customer", {"id": "cus_001"})).is_error

        frozen = gw.cli("freeze", "action:billing.issue_refund", "--by", "e2e-operator")
        assert frozen.returncode == 0, frozen.stderr
        await refused_as(client, "frozen")
        assert_refused(await client.call_tool("billing.issue_refund", refund("ch_001", 5)), "frozen")
        assert not (await client.call_tool("billing.get_customer", {"id": "cus_001"})).is_error  # only that action

        assert gw.cli("unfreeze", "action:billing.issue_refund").returncode == 0
        await refused_as(client, "condition")
        assert gw.cli("freeze", "agent:support-bot").returncode == 0
        await refused_as(client, "frozen")
        assert_refused(await client.call_tool("billing.get_customer", {"id": "cus_001"}), "frozen", "support-bot")

        assert gw.cli("unfreeze", "agent:support-bot").returncode == 0
        await refused_as(client, "condition")
        thawed = await client.call_tool("billing.issue_refund", refund("ch_001", 5))
        assert not thawed.is_error, text_of(thawed)

    ledger = helpers.billing_ledger(gw.dir / "billing.db")
    assert [call["tool"] for call in ledger] == ["get_customer", "get_customer", "issue_refund"]
    events = gw.audit_events()
    operator = [(e["stage"], e["detail"].get("by")) for e in events if e["stage"] in ("frozen", "unfrozen")]
    assert [stage for stage, _ in operator] == ["frozen", "unfrozen", "frozen", "unfrozen"], operator
    assert {e["detail"]["code"] for e in events if e["stage"] == "refused"} == {"frozen", "condition"}
    gw.wait_checkpoint()
    helpers.assert_audit_intact(gw.audit_verify())


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_audit_verifies_after_the_run(gateway, transport: str) -> None:
    """Once remit has stopped, `remit audit verify` exits 0 with every event under a signed checkpoint."""
    gw = gateway(REGISTER, serve=transport == "http")
    async with gw.connect(transport, "support-bot") as client:
        assert not (await client.call_tool("billing.get_customer", {"id": "cus_001"})).is_error
        assert_refused(await client.call_tool("billing.delete_customer", {"id": "cus_001"}), "unlisted")
    gw.stop()
    helpers.assert_audit_intact(gw.audit_verify())
