"""The e2e helpers against real peers, without remit: the conformance fixture and mcp-server-time."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from mcp.shared.exceptions import MCPError

import helpers
from helpers import MODES, text_of

pytestmark = pytest.mark.anyio
FIXTURE_CMD = [helpers.PYTHON, helpers.CONFORMANCE_FIXTURE]
TIME_CMD = [helpers.VENV_BIN / "mcp-server-time", "--local-timezone", "UTC"]


async def check_fixture(client, mode: str) -> None:
    assert client.protocol_version == ("2025-11-25" if mode == "legacy" else mode)
    names = [tool.name for tool in (await client.list_tools()).tools]
    assert {"test_simple_text", "test_image_content", "test_error_handling"} <= set(names)

    result = await client.call_tool("test_simple_text", {})
    assert not result.is_error
    assert text_of(result) == "This is a simple text response for testing."

    image = (await client.call_tool("test_image_content", {})).content[0]
    assert (image.type, image.mime_type) == ("image", "image/png")

    failed = await client.call_tool("test_error_handling", {})
    assert failed.is_error and "intentionally" in text_of(failed)

    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    await client.call_tool("test_tool_with_progress", {}, progress_callback=on_progress)
    assert progress == [0, 50, 100]

    with pytest.raises(MCPError) as err:  # a JSON-RPC error reply raises MCPError
        await client.read_resource("test://no-such-resource")
    assert err.value.code == -32602


@pytest.mark.parametrize("mode", MODES)
async def test_python_client_http_fixture(conformance_url: str, mode: str) -> None:
    async with helpers.http_client(
        conformance_url, token="t0ken", mode=mode, headers={"X-Remit-Test": "yes"}
    ) as client:
        await check_fixture(client, mode)
        seen = (await client.call_tool("echo_headers", {})).structured_content
        assert seen["authorization"] == "Bearer t0ken"
        assert seen["x-remit-test"] == "yes"
        if mode == "legacy":
            assert seen["mcp-session-id"]
        else:
            assert "mcp-session-id" not in seen
            assert (seen["mcp-method"], seen["mcp-name"]) == ("tools/call", "echo_headers")


@pytest.mark.parametrize("mode", MODES)
async def test_python_client_stdio_fixture(mode: str, tmp_path: Path) -> None:
    async with helpers.stdio_client(FIXTURE_CMD, mode=mode, errlog=tmp_path / "fixture.stderr") as client:
        await check_fixture(client, mode)


@pytest.mark.parametrize("mode", MODES)
async def test_python_client_stdio_time(mode: str, tmp_path: Path) -> None:
    async with helpers.stdio_client(TIME_CMD, mode=mode, errlog=tmp_path / "time.stderr") as client:
        assert "get_current_time" in [tool.name for tool in (await client.list_tools()).tools]
        result = await client.call_tool("get_current_time", {"timezone": "UTC"})
        assert not result.is_error
        assert json.loads(text_of(result))["timezone"] == "UTC"
        bad = await client.call_tool("get_current_time", {"timezone": "Not/AZone"})
        assert bad.is_error


def test_raw_jsonrpc_modern(conformance_url: str) -> None:
    request = helpers.modern_request("tools/call", {"name": "test_simple_text", "arguments": {}})
    response = helpers.post_jsonrpc(conformance_url, request)
    assert response.status_code == 200
    [reply] = helpers.jsonrpc_messages(response)
    assert reply["result"]["content"][0]["text"].startswith("This is a simple text")

    mismatched = helpers.post_jsonrpc(conformance_url, request, headers={"Mcp-Name": "test_image_content"})
    assert mismatched.status_code == 400
    assert helpers.jsonrpc_messages(mismatched)[0]["error"]["code"] == -32020  # HeaderMismatch


@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_inspector_cli_stdio(era: str, tool_home: Path) -> None:
    listed = helpers.inspector_cli(FIXTURE_CMD, "--method", "tools/list", era=era, home=tool_home)
    assert listed.returncode == 0, listed.stderr
    assert "test_simple_text" in [tool["name"] for tool in listed.json()["result"]["tools"]]

    called = helpers.inspector_cli(
        TIME_CMD,
        "--method",
        "tools/call",
        "--tool-name",
        "get_current_time",
        "--tool-args-json",
        '{"timezone": "UTC"}',
        era=era,
        home=tool_home,
    )
    assert called.returncode == 0, called.stderr
    assert json.loads(called.json()["result"]["content"][0]["text"])["timezone"] == "UTC"

    failed = helpers.inspector_cli(
        FIXTURE_CMD, "--method", "tools/call", "--tool-name", "test_error_handling", era=era, home=tool_home
    )
    assert failed.returncode == 5  # the Inspector's exit code for a result with isError
    assert json.loads(failed.stderr)["error"]["code"] == "tool_is_error"


@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_inspector_cli_http(conformance_url: str, era: str, tool_home: Path) -> None:
    called = helpers.inspector_cli(
        conformance_url,
        "--method",
        "tools/call",
        "--tool-name",
        "echo_headers",
        headers={"Authorization": "Bearer t0ken"},
        era=era,
        home=tool_home,
    )
    assert called.returncode == 0, called.stderr
    assert called.json()["result"]["structuredContent"]["authorization"] == "Bearer t0ken"


def test_chromium_page(tmp_path: Path) -> None:
    with helpers.chromium_page(tmp_path / "profile") as page:
        page.set_content("<h1>remit</h1>")
        assert page.inner_text("h1") == "remit"


def test_register_builder(tmp_path: Path) -> None:
    body = helpers.agent("support-bot") + helpers.time_upstream() + helpers.conformance_upstream()
    body += helpers.action("time.get_current_time", ["support-bot"])
    gw = helpers.make_gateway(tmp_path, body)
    register = tomllib.loads(gw.register.read_text())
    assert register["gateway"]["listen"] == f"127.0.0.1:{gw.port}"
    assert register["agents"]["support-bot"]["token"] == {"env": "REMIT_TOKEN_SUPPORT_BOT"}
    assert gw.env["REMIT_TOKEN_SUPPORT_BOT"] == gw.tokens["support-bot"]
    assert register["upstreams"]["conf"]["namespace"] is False
    assert register["actions"]["time.get_current_time"]["agents"] == ["support-bot"]
