"""Fixtures for remit's end-to-end tests (run with `scripts/test`, or `.venv/bin/pytest e2e`).

- `gateway(register_body, serve=True)`: writes DIR/remit.toml (with a generated `[gateway]`
  listening on a free loopback port), starts `remit serve --register FILE` (unless `serve=False`:
  for `remit stdio` alone), waits for GET /health = 200 and returns a `helpers.Gateway` (base_url,
  mcp_url, tokens, dir, client(), stdio_client(), connect(), cli(), audit_verify()). Stopped after
  the test; remit's stderr is added to the report of a failing test.
- `conformance_url`: the conformance fixture upstream, serving Streamable HTTP on a free port.
- `everything_url`: `@modelcontextprotocol/server-everything` (Node 22) serving Streamable HTTP on
  a free port, shared by the session.
- `mode`: parametrize a test over both client modes with `@pytest.mark.parametrize("mode", MODES)`.
Async tests use anyio's pytest plugin: mark them `@pytest.mark.anyio`.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import helpers
from helpers import Gateway


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    if not helpers.remit_bin().exists():
        pytest.skip(f"remit binary not built: {helpers.remit_bin()} (cargo build, or set REMIT_BIN)")
    started: list[Gateway] = []
    request.node.remit_gateways = started

    def start(register_body: str, *, serve: bool = True, **kwargs: Any) -> Gateway:
        directory = tmp_path / f"gw{len(started)}"
        directory.mkdir()
        gw = helpers.make_gateway(directory, register_body, **kwargs)
        started.append(gw)
        if serve:
            gw.start()
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for gw in getattr(item, "remit_gateways", []):
            report.sections.append((f"remit stderr ({gw.dir})", gw.stderr() or "(empty)"))
            for log in sorted(gw.dir.glob("remit-stdio-*.stderr")):
                report.sections.append((f"remit stdio stderr ({log.name})", log.read_text(errors="replace")))


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Wait until `url` answers at all (any HTTP status), or fail if `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


@pytest.fixture(scope="session")
def conformance_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Shared by the whole session: tests must not rely on its tool list staying unchanged."""
    port = helpers.free_port()
    cmd = [str(helpers.PYTHON), str(helpers.CONFORMANCE_FIXTURE), "--http", str(port)]
    with open(tmp_path_factory.mktemp("conformance") / "server.stderr", "wb") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    try:
        wait_http(f"http://127.0.0.1:{port}/mcp", proc)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def everything_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """server-everything's streamableHttp transport (it speaks only 2025-11-25); shared by the session."""
    port = helpers.free_port()
    cmd = [str(helpers.NODE_MODULES / ".bin" / "mcp-server-everything"), "streamableHttp"]
    with open(tmp_path_factory.mktemp("everything") / "server.stderr", "wb") as err:
        proc = subprocess.Popen(
            cmd, env=helpers.node_env({"PORT": str(port)}), stdin=subprocess.DEVNULL, stdout=err, stderr=err
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/mcp", proc)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def tool_home(tmp_path: Path) -> Path:
    """A scratch folder for the Inspector's catalog and client config."""
    home = tmp_path / "inspector"
    home.mkdir()
    return home
