#!/usr/bin/env python3
"""Splits `perf script` samples of remit into the parts of a call.

Usage: perf script -i perf.data | bench/attribute.py [CALLS]

Each sample goes to the leaf-most frame of its stack that belongs to a known
crate (kernel, libc, allocator and std frames count for their caller), so
serde_json inside rmcp counts as rmcp and a futex wait in tokio as tokio.
SQLite samples are split by whether they were committing, checkpointing or
running statements. With CALLS,
each part is also given in microseconds of CPU per call (one sample of
cpu-clock at `-F HZ` is 1/HZ seconds; pass HZ with --hz, default 2000).
"""

import re
import sys
from collections import Counter, defaultdict

RULES = [
    ("socket I/O: loopback TCP send/recv (kernel), both sides", r"mio::net::tcp::stream::TcpStream as std::io"),
    ("logging: tracing-subscriber (fmt, filter, spans)", r"tracing_subscriber|tracing_core::|tracing_log|<tracing::span|tracing::span::"),
    ("sqlite", r"^(sqlite3|walChecksum|walFrames|walCheckpoint|pager|btree|vdbe|unix(Write|Read|Sync)|pcache|balance_|jsonTranslate)|sqlx_sqlite::statement"),
    ("sqlx: sqlite worker, channels, arguments", r"sqlx_sqlite|sqlx_core|flume::"),
    ("audit: canonical JSON + SHA-256 leaf hash", r"remit_core::audit|EventRow|sha2::|leaf_hash"),
    ("store: group-commit writer task", r"remit_store::"),
    ("validation: JSON Schema (jsonschema)", r"jsonschema::|referencing::"),
    ("decision: CEL", r"^cel::|<cel::|cel_parser|antlr"),
    ("upstream client: rmcp streamable HTTP client + reqwest", r"streamable_http_client|reqwest::|rmcp::service::client|hyper_util::client|hyper::client|RoleClient|remit_mcp::upstream"),
    ("agent-facing MCP server: rmcp streamable HTTP server", r"streamable_http_server|rmcp::|remit_mcp::agent"),
    ("remit pipeline (other)", r"remit_core::"),
    ("HTTP server: hyper/axum/tower", r"hyper::|axum::|tower::|tower_http::|remit_server::|h2::"),
    ("socket I/O: loopback TCP send/recv (kernel), both sides", r"mio::net::tcp|TcpStream as std::io"),
    ("tokio: scheduler, task spawn, channels, park/unpark", r"tokio::|mio::"),
]

SQLITE_PARTS = [
    ("sqlite: WAL checkpoint", r"walCheckpoint|sqlite3WalCheckpoint"),
    ("sqlite: commit (WAL write, fsync)", r"sqlite3PagerCommitPhaseOne|sqlite3WalFrames|walFrames|unixSync"),
    ("sqlite: statements (insert, indexes, budget SQL)", r""),
]

COMPILED = [(name, re.compile(rx)) for name, rx in RULES]
SQLITE_COMPILED = [(name, re.compile(rx)) for name, rx in SQLITE_PARTS]


def classify(frames):
    """The part of the leaf-most frame that belongs to a known crate; SQLite split by what it was doing."""
    for frame in frames:
        for name, rx in COMPILED:
            if rx.search(frame):
                if name != "sqlite":
                    return name
                stack = "\n".join(frames)
                for sub, srx in SQLITE_COMPILED:
                    if srx.search(stack):
                        return sub
    return "other (kernel, libc, std threads)"


def samples(lines):
    head, frames = None, []
    for line in lines:
        if not line.strip():
            if head is not None:
                yield head, frames
            head, frames = None, []
        elif line.startswith(("\t", " ")) and head is not None:
            parts = line.strip().split(" ", 1)
            sym = parts[1] if len(parts) > 1 else parts[0]
            frames.append(re.sub(r"\+0x[0-9a-f]+ ", " ", sym))
        else:
            head = line
    if head is not None:
        yield head, frames


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    hz = 2000.0
    for a in sys.argv[1:]:
        if a.startswith("--hz="):
            hz = float(a.split("=", 1)[1])
    calls = float(args[0]) if args else None
    parts, leaves = Counter(), defaultdict(Counter)
    total = 0
    for head, frames in samples(sys.stdin):
        total += 1
        part = classify(frames)
        parts[part] += 1
        leaf = frames[0].split(" (")[0] if frames else "?"
        leaves[part][leaf[:90]] += 1
    if not total:
        print("no samples")
        return
    print(f"{total} samples" + (f", {calls:.0f} calls, {1e6 / hz:.0f} µs per sample" if calls else ""))
    print()
    print("| part | share | CPU per call | top leaf functions |")
    print("|---|---|---|---|")
    for part, n in parts.most_common():
        per_call = f"{n / hz * 1e6 / calls:.1f} µs" if calls else ""
        top = ", ".join(f"`{s}` {c * 100 // n}%" for s, c in leaves[part].most_common(3))
        print(f"| {part} | {n * 100 / total:.1f}% | {per_call} | {top} |")


if __name__ == "__main__":
    main()
