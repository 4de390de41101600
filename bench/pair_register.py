#!/usr/bin/env python3
"""Two remit builds side by side on one register of your choosing, in front of one echo upstream.

    bench/pair_register.py --before OLD_BIN --after NEW_BIN [--rounds 12] [--tier write]
                           [--action-extra 'budget = [{ count = 1000000000, per = "1h" }]']

`remit-bench all` compares the shipped register (a `read` action, no budget) against one
variant; this compares two binaries on the same register, e.g. a `write` with a budget.
It starts the echo upstream with `remit-bench serve`, one `remit serve` per build on the
register that command wrote (its port, tier and extra lines changed; each its own SQLite store), and in each round, alternating the order, drives 300 calls at one
client and 8,000 at 64 clients through each with `remit-bench load`, reading remit's CPU
from /proc. Prints each round and the medians. Needs the release build:
`CARGO_TARGET_DIR=/work/target-bench cargo build --release -p remit -p remit-billing -p remit-bench`.
"""

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TOKEN = "remit-bench-token-8c1f7a"  # the token remit-bench load sends (bench/src/procs.rs)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def register(shipped, port, tier, extra):
    """The register `remit-bench serve` wrote (bench/src/procs.rs), on `port`, its action at `tier` plus `extra`."""
    text, listens = re.subn(r'(?m)^listen = ".*"$', f'listen = "127.0.0.1:{port}"', shipped)
    text, tiers = re.subn(r'(?m)^tier = ".*"$', f'tier = "{tier}"', text)
    if (listens, tiers) != (1, 1):
        raise SystemExit("the register remit-bench serve wrote has changed shape: see bench/src/procs.rs")
    return text + extra + "\n"


def start(binary, work, shipped, tier, extra):
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    port = free_port()
    with open(os.path.join(work, "remit.toml"), "w") as f:
        f.write(register(shipped, port, tier, extra))
    proc = subprocess.Popen(
        [binary, "--register", os.path.join(work, "remit.toml"), "serve"],
        cwd=work,
        env=dict(os.environ, REMIT_TOKEN_BENCH=TOKEN, REMIT_LOG="info"),
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(work, "remit.log"), "w"),
    )
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc, port
        except Exception:
            if proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"{binary} did not start: see {work}/remit.log")
            time.sleep(0.1)


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(bench, port, clients, calls):
    out = subprocess.run(
        [bench, "load", "--addr", f"127.0.0.1:{port}", "--tool", "echo.echo",
         "--remit-token", "--clients", str(clients), "--calls", str(calls)],
        capture_output=True, text=True, check=True,
    ).stdout
    return out.strip().splitlines()[-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="the first remit binary")
    ap.add_argument("--after", required=True, help="the second remit binary")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--tier", default="write", choices=["read", "write", "irreversible"])
    ap.add_argument("--action-extra", default='budget = [{ count = 1000000000, per = "1h" }]',
                    help="TOML lines added to the action (default: a count budget never reached)")
    ap.add_argument("--work", default=os.path.join(HERE, "out", "pair-register"))
    args = ap.parse_args()
    target = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(HERE, "..", "target")), "release")
    bench = os.path.join(target, "remit-bench")

    serve = subprocess.Popen([bench, "serve", "--secs", "3600", "--work", os.path.join(args.work, "serve")],
                             stdout=subprocess.PIPE, text=True)
    # remit-bench prints its remit's line once that remit answers, its register written
    next(line for line in serve.stdout if line.startswith("remit "))
    with open(os.path.join(args.work, "serve", "remit", "remit.toml")) as f:
        shipped = f.read()
    builds = {"before": args.before, "after": args.after}
    procs = {}
    try:
        for name, binary in builds.items():
            procs[name] = start(binary, os.path.join(args.work, name), shipped, args.tier, args.action_extra)
        for _, port in procs.values():
            load(bench, port, 8, 1000)  # warm-up
        results = {name: [] for name in builds}
        for r in range(args.rounds):
            for name in (list(builds) if r % 2 == 0 else list(reversed(list(builds)))):
                proc, port = procs[name]
                one = load(bench, port, 1, 300)
                before = cpu_seconds(proc.pid)
                many = load(bench, port, 64, 8000)
                cpu = (cpu_seconds(proc.pid) - before) / 8000 * 1e6
                p50 = float(re.search(r"p50 ([\d.]+) ms", one).group(1))
                p99 = float(re.search(r"p99 ([\d.]+) ms", one).group(1))
                rate = float(re.search(r"([\d.]+) calls/s", many).group(1))
                results[name].append((p50, p99, rate, cpu))
                print(f"round {r} {name}: 1 client p50 {p50:.3f} ms, p99 {p99:.3f} ms; "
                      f"64 clients {rate:.0f} calls/s, remit {cpu:.1f} µs of CPU per call", flush=True)
        for name in builds:
            med = [statistics.median(x[i] for x in results[name]) for i in range(4)]
            print(f"{name} ({builds[name]}), medians of {args.rounds} rounds: 1 client p50 {med[0]:.3f} ms, "
                  f"p99 {med[1]:.3f} ms; 64 clients {med[2]:.0f} calls/s, {med[3]:.1f} µs per call")
    finally:
        for proc, _ in procs.values():
            proc.terminate()
        serve.terminate()


if __name__ == "__main__":
    main()
