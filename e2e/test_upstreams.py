"""remit in front of third-party MCP servers, driven by the Python `mcp` SDK over Streamable HTTP and
stdio, in both protocol eras:

- `@modelcontextprotocol/server-everything` (Node 22) as a Streamable HTTP upstream. It speaks only
  2025-11-25, and the register leaves `protocol` to `auto`: remit tries `server/discover`, is
  refused, and falls back to `initialize`.
- `mcp-server-time` (PyPI) as a stdio upstream.
- The conformance fixture (Python `mcp` SDK) as a Streamable HTTP upstream speaking 2026-07-28, for a
  tool whose arguments also travel as `Mcp-Param-*` headers.
"""

from __future__ import annotations

import json

import pytest

import helpers
from helpers import MODES, TRANSPORTS, assert_refused, text_of

pytestmark = pytest.mark.anyio

# remit bug: to a 2026-07-28 client, remit relays a 2025-11-25 upstream's CallToolResult without the
# `resultType: "complete"` that 2026-07-28 requires, and the SDK client rejects the result.


def everything_register(url: str) -> str:
    return (
        helpers.agent("ops-bot")
        + helpers.everything_upstream(url)
        + helpers.action("everything.echo", ["ops-bot"], budget=[{"count": 2, "per": "1m"}])
        + helpers.action("everything.get-sum", ["ops-bot"], "write", require="args.a + args.b <= 100")
        + helpers.action("everything.get-structured-content", ["ops-bot"], require="args.location != 'Chicago'")
        + helpers.action("everything.get-tiny-image", ["ops-bot"])
    )


@pytest.mark.parametrize(
    "mode", MODES
)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_everything_over_http_upstream(gateway, everything_url: str, transport: str, mode: str) -> None:
    gw = gateway(everything_register(everything_url), serve=transport == "http")
    if transport == "http":  # auto fell back to the old era for this upstream
        [upstream] = gw.health()["upstreams"]
        assert (upstream["upstream"], upstream["up"], upstream["protocol"]) == ("everything", True, "2025-11-25")

    async with gw.connect(transport, "ops-bot", mode=mode) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == {
            "everything.echo",
            "everything.get-sum",
            "everything.get-structured-content",
            "everything.get-tiny-image",
        }  # get-env (it prints the server's environment), the sampling and elicitation triggers: hidden
        assert tools["everything.echo"].annotations.read_only_hint is True
        # the upstream says get-sum is read-only; the register says `write`: hints tighten, never loosen
        assert tools["everything.get-sum"].annotations.read_only_hint is not True
        assert tools["everything.get-structured-content"].output_schema["properties"]["temperature"]

        # refusals come from remit itself, before any upstream
        assert_refused(
            await client.call_tool("everything.get-sum", {"a": 99, "b": 2}), "condition", "args.a + args.b <= 100"
        )
        assert_refused(
            await client.call_tool("everything.get-structured-content", {"location": "Chicago"}),
            "condition",
            "args.location != 'Chicago'",
        )
        assert_refused(await client.call_tool("everything.get-env", {}), "unlisted", "everything.get-env")
        assert_refused(await client.call_tool("everything.trigger-sampling-request", {"prompt": "hi"}), "unlisted")
        assert_refused(
            await client.call_tool("everything.get-structured-content", {"location": "Paris"}),
            "invalid_arguments",
            "location",
        )
        # granted calls return the upstream's real results
        echo = await client.call_tool("everything.echo", {"message": "hello through remit"})
        assert not echo.is_error and text_of(echo) == "Echo: hello through remit"
        total = await client.call_tool("everything.get-sum", {"a": 40, "b": 2})
        assert not total.is_error and text_of(total) == "The sum of 40 and 2 is 42."
        weather = await client.call_tool("everything.get-structured-content", {"location": "New York"})
        assert not weather.is_error, text_of(weather)
        assert set(weather.structured_content) == {"temperature", "conditions", "humidity"}
        image = await client.call_tool("everything.get-tiny-image", {})
        assert [(block.type, getattr(block, "mime_type", None)) for block in image.content][1] == ("image", "image/png")

        assert not (await client.call_tool("everything.echo", {"message": "two"})).is_error
        assert_refused(
            await client.call_tool("everything.echo", {"message": "three"}), "over_budget", "at most 2 calls per 1m"
        )

    refused = [e["detail"]["code"] for e in gw.audit_events() if e["stage"] == "refused"]
    assert refused == ["condition", "condition", "unlisted", "unlisted", "invalid_arguments", "over_budget"]


def time_register() -> str:
    return (
        helpers.agent("ops-bot")
        + helpers.time_upstream()
        + helpers.action(
            "time.get_current_time", ["ops-bot"], require="args.timezone in ['UTC', 'Europe/Paris', 'Asia/Tokyo']"
        )
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_time_over_stdio_upstream(gateway, transport: str, mode: str) -> None:
    gw = gateway(time_register(), serve=transport == "http")
    async with gw.connect(transport, "ops-bot", mode=mode) as client:
        assert [tool.name for tool in (await client.list_tools()).tools] == ["time.get_current_time"]

        now = await client.call_tool("time.get_current_time", {"timezone": "Asia/Tokyo"})
        assert not now.is_error, text_of(now)
        answer = json.loads(text_of(now))
        assert answer["timezone"] == "Asia/Tokyo" and answer["datetime"].endswith("+09:00")

        assert_refused(
            await client.call_tool("time.get_current_time", {"timezone": "America/New_York"}),
            "condition",
            "args.timezone in ['UTC', 'Europe/Paris', 'Asia/Tokyo']",
        )
        assert_refused(
            await client.call_tool(
                "time.convert_time", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}
            ),
            "unlisted",
            "time.convert_time",
        )
        # the condition reads an argument the call lacks: refused as invalid, never sent
        assert_refused(await client.call_tool("time.get_current_time", {}), "invalid_arguments")

    events = gw.audit_events()
    assert [e["detail"]["code"] for e in events if e["stage"] == "refused"] == [
        "condition",
        "unlisted",
        "invalid_arguments",
    ]
    assert sum(e["stage"] == "executed" for e in events) == 1


@pytest.mark.parametrize("mode", MODES)
async def test_a_tool_with_header_parameters_gets_them_from_a_2026_upstream_over_http(
    gateway, conformance_url: str, mode: str
) -> None:
    # The conformance fixture over Streamable HTTP speaks 2026-07-28, so remit's calls to it skip
    # rmcp's client; `test_custom_header` declares `x-mcp-header: Region`, which the fixture checks
    # against an `Mcp-Param-Region` header. Such a tool's calls must still carry it.
    gw = gateway(
        helpers.agent("ops-bot")
        + helpers.http_upstream("conf", conformance_url)
        + helpers.action("conf.test_custom_header", ["ops-bot"])
        + helpers.action("conf.test_simple_text", ["ops-bot"])
    )
    [upstream] = gw.health()["upstreams"]
    assert (upstream["upstream"], upstream["up"], upstream["protocol"]) == ("conf", True, "2026-07-28")
    async with gw.connect("http", "ops-bot", mode=mode) as client:
        result = await client.call_tool("conf.test_custom_header", {"region": "eu-west-1"})
        assert not result.is_error, text_of(result)
        assert text_of(result) == "region=eu-west-1"
        # and a tool without header parameters still goes the lean way, and works
        simple = await client.call_tool("conf.test_simple_text", {})
        assert not simple.is_error, text_of(simple)
