"""What remit passes between an agent and its upstream besides the call and its result, with
the Python `mcp` SDK as the agent, over both transports and in both eras, in front of remit's
echo server (`remit-billing --echo`) as a stdio upstream:

- progress reports (`notifications/progress`), for a call that sends a `progressToken`;
- the cancellation of a call remit gave up on at the upstream's `timeout`;
- an `InputRequiredResult` (2026-07-28): the upstream asks the agent for its roots, the SDK
  answers through its `list_roots_callback` and resumes, and the upstream finishes; for an
  agent in a 2025-11-25 session remit puts the request to it over the session and resumes.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp import types

import helpers
from helpers import MODES, TRANSPORTS, text_of

pytestmark = pytest.mark.anyio


def echo_register(**upstream: Any) -> str:
    """ops-bot with the echo server over stdio (`upstream`: more keys of its table, e.g. a timeout)."""
    echo = helpers.remit_bin().parent / "remit-billing"
    return (
        helpers.agent("ops-bot")
        + helpers.stdio_upstream("echo", [echo, "--echo"], **upstream)
        + helpers.action("echo.sleep", ["ops-bot"])
        + helpers.action("echo.ask", ["ops-bot"])
        + helpers.action("echo.cancelled", ["ops-bot"])
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_call_that_times_out_is_cancelled_at_the_stdio_upstream(gateway, transport: str) -> None:
    """remit gives up on a call after the upstream's `timeout` and tells the upstream, which
    stops: rmcp's client over stdio, for a plain call and for one with a progress token."""
    gw = gateway(echo_register(timeout="1s"), serve=transport == "http")

    async def ignore(progress: float, total: float | None, message: str | None) -> None:
        pass

    async with gw.connect(transport, "ops-bot") as client:
        for n, callback in [(1, None), (2, ignore)]:
            slow = await client.call_tool("echo.sleep", {"ms": 5000}, progress_callback=callback)
            assert slow.is_error and "did not answer within 1s" in text_of(slow), text_of(slow)
            told = ""
            for _ in range(30):  # the cancellation reaches the upstream within a few seconds
                told = text_of(await client.call_tool("echo.cancelled", {}))
                if told == f"cancelled sleeps: {n}":
                    break
                await anyio.sleep(0.1)
            assert told == f"cancelled sleeps: {n}", told


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_progress_reaches_the_agent_in_order_before_the_result(gateway, transport: str, mode: str) -> None:
    gw = gateway(echo_register(), serve=transport == "http")
    reports: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append((progress, total, message))

    async with gw.connect(transport, "ops-bot", mode=mode) as client:
        slept = await client.call_tool("echo.sleep", {"ms": 60}, progress_callback=on_progress)
        assert not slept.is_error and text_of(slept) == "slept 60 ms"
        assert reports == [(1, 2, "slept 30 of 60 ms"), (2, 2, "slept 60 of 60 ms")]
        # without a callback the SDK sends no token, and nothing else changes
        assert text_of(await client.call_tool("echo.sleep", {"ms": 10})) == "slept 10 ms"
    assert len(reports) == 2


async def give_roots(context: Any) -> types.ListRootsResult:
    return types.ListRootsResult(roots=[types.Root(uri="file:///srv/app", name="app")])


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_upstream_that_needs_input_gets_it_from_the_agent_and_finishes(gateway, transport: str) -> None:
    gw = gateway(echo_register(), serve=transport == "http")
    # the SDK declares `roots` because it has the callback; remit tells the upstream so
    async with gw.connect(transport, "ops-bot", mode="2026-07-28", list_roots_callback=give_roots) as client:
        told = await client.call_tool("echo.ask", {})
        assert not told.is_error, text_of(told)
        assert text_of(told).startswith("told: ") and "file:///srv/app" in text_of(told)
    # an agent that cannot list roots is not asked
    async with gw.connect(transport, "ops-bot", mode="2026-07-28") as client:
        unasked = await client.call_tool("echo.ask", {})
        assert unasked.is_error and "did not declare `roots`" in text_of(unasked)

    # a 2025-11-25 session cannot take an InputRequiredResult: remit asks the agent itself, over
    # the session (a roots/list request), and resumes the call with its answer
    async with gw.connect(transport, "ops-bot", mode="legacy", list_roots_callback=give_roots) as client:
        told = await client.call_tool("echo.ask", {})
        assert not told.is_error, text_of(told)
        assert text_of(told).startswith("told: ") and "file:///srv/app" in text_of(told)
        # an upstream that is never satisfied is stopped after 8 rounds, with a reason
        endless = await client.call_tool("echo.ask", {"never_satisfied": True})
        assert endless.is_error and "more than 8 times" in text_of(endless), text_of(endless)
        assert endless.meta["remit"]["code"] == "input_failed", endless.meta

    asks = [e for e in gw.audit_events() if e.get("action") == "echo.ask"]
    proposed = [e["detail"] for e in asks if e["stage"] == "proposed"]
    # two rounds for each agent that could answer (asked, then resumed), one for the other,
    # and 1 + 8 for the upstream that was never satisfied
    assert [("resume" in d) for d in proposed] == [False, True, False, False, True, False] + [True] * 8
    assert proposed[1]["resume"]["inputResponses"]["roots"]["roots"][0]["uri"] == "file:///srv/app"
    assert len(proposed[1]["resume"]["requestStateSha256"]) == 64
    # remit's stop is on the record too: a `failed` event on the last round's call, saying why
    stopped = [e for e in asks if e["stage"] == "failed"]
    assert len(stopped) == 1, stopped
    assert stopped[0]["call"] == asks[-2]["call"] and asks[-2]["stage"] == "executed", asks[-3:]
    assert stopped[0]["agent"] == "ops-bot" and stopped[0]["detail"]["code"] == "input_failed"
    assert "more than 8 times" in stopped[0]["detail"]["error"], stopped[0]
    assert stopped[0]["detail"]["sent"] is False
    if transport == "http":  # `remit stdio` signed its last checkpoint when it exited
        gw.wait_checkpoint()
    helpers.assert_audit_intact(gw.audit_verify())


def fixture_register() -> str:
    """The conformance fixture, whose input-required tools ask whatever the client declared."""
    return (
        helpers.agent("ops-bot")
        + helpers.conformance_upstream("conf", namespace=True)
        + helpers.action("conf.test_input_required_result_sampling", ["ops-bot"])
        + helpers.action("conf.test_input_required_result_elicitation", ["ops-bot"])
    )


async def sample(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
    asked = params.messages[0].content.text
    assert asked == "What is the capital of France?", asked
    return types.CreateMessageResult(
        role="assistant", content=types.TextContent(type="text", text="Paris"), model="stub-model"
    )


async def elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
    return types.ElicitResult(action="accept", content={"name": "Ada"})


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_2025_session_is_asked_for_samples_and_forms_by_remit(gateway, transport: str) -> None:
    gw = gateway(fixture_register(), serve=transport == "http")
    async with gw.connect(
        transport, "ops-bot", mode="legacy", sampling_callback=sample, elicitation_callback=elicit
    ) as client:
        sampled = await client.call_tool("conf.test_input_required_result_sampling", {})
        assert not sampled.is_error and text_of(sampled) == "Model said: Paris", text_of(sampled)
        hello = await client.call_tool("conf.test_input_required_result_elicitation", {})
        assert not hello.is_error and text_of(hello) == "Hello, Ada!", text_of(hello)
    # a client that cannot answer: the call ends with a tool error that names what was asked
    async with gw.connect(transport, "ops-bot", mode="legacy") as client:
        unanswered = await client.call_tool("conf.test_input_required_result_elicitation", {})
        assert unanswered.is_error, text_of(unanswered)
        assert "needs input (`user_name`)" in text_of(unanswered), text_of(unanswered)
        assert unanswered.meta["remit"]["code"] == "input_failed", unanswered.meta
    stopped = [e for e in gw.audit_events() if e["stage"] == "failed"]
    assert len(stopped) == 1, stopped
    assert stopped[0]["action"] == "conf.test_input_required_result_elicitation", stopped[0]
    assert "needs input (`user_name`)" in stopped[0]["detail"]["error"], stopped[0]
