#!/usr/bin/env python3
"""Reads a system-wide scheduler trace and says when, and why, a core stood idle.

Usage: bench/idle_trace.py TRACE_TXT THREADS_TXT

TRACE_TXT is `perf script -F comm,tid,cpu,time,event,trace` of a recording with the
events sched:sched_switch, sched:sched_wakeup, irq:irq_handler_entry and
irq:softirq_entry (`bench/idle-trace` makes both files). THREADS_TXT has one
`TID ROLE` per line (`1234 remit/tokio-rt-worker`); other threads are shown by name.

Prints the share of the cores' time spent idle, how that time splits by the length of the
idle stretches and by what ended them, and, per pair of waker and woken thread, how long
the woken thread waited to run and how long the other core stood idle meanwhile (a
thread queued on a busy core while the other one is idle is time the kernel's placement
lost). The waker is the thread that ran where the wake-up was done: a wake-up the kernel
hands to the other core (an inter-processor interrupt) names the thread running there.
"""

import re
import sys
from collections import Counter

LINE = re.compile(r"\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)")
SWITCH = re.compile(r"prev_comm=(.*?) prev_pid=(\d+) .*prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)")
WAKEUP = re.compile(r"pid=(\d+) prio=\d+ target_cpu=(\d+)")


def main() -> None:
    trace, threads = sys.argv[1], sys.argv[2]
    roles: dict[int, str] = {}
    for line in open(threads):
        tid, _, role = line.strip().partition(" ")
        if tid.isdigit():
            roles[int(tid)] = role
    events = []
    for line in open(trace):
        m = LINE.match(line)
        if m:
            comm, tid, cpu, t, event, rest = m.groups()
            events.append((float(t), int(cpu), comm, int(tid), event, rest))
    events.sort()
    if not events:
        sys.exit("no events in the trace")
    cpus = sorted({e[1] for e in events})
    span = events[-1][0] - events[0][0]

    def role(tid: int, comm: str) -> str:
        return roles.get(tid, "interrupt" if tid == 0 else comm)

    idle_since: dict[int, float | None] = {c: None for c in cpus}
    recent: dict[int, list] = {c: [] for c in cpus}
    idle_total = 0.0
    by_length: Counter[int] = Counter()
    ended_by: Counter[str] = Counter()
    woken: dict[int, tuple[float, str]] = {}
    waits: Counter[tuple[str, str]] = Counter()
    wait_us: Counter[tuple[str, str]] = Counter()
    idle_meanwhile: Counter[tuple[str, str]] = Counter()
    for t, cpu, comm, tid, event, rest in events:
        recent[cpu] = (recent[cpu] + [(tid, event, rest)])[-6:]
        if event == "sched:sched_wakeup":
            m = WAKEUP.search(rest)
            if m:
                woken[int(m.group(1))] = (t, role(tid, comm))
            continue
        if event != "sched:sched_switch":
            continue
        m = SWITCH.search(rest)
        if not m:
            continue
        next_comm, next_tid = m.group(4), int(m.group(5))
        if next_tid == 0:
            idle_since[cpu] = t
        else:
            began = idle_since[cpu]
            if began is not None:
                us = (t - began) * 1e6
                idle_total += us
                by_length[min(int(us // 250) * 250, 1000)] += us
                cause = "a wake-up from the other core"
                for r_tid, r_event, r_rest in reversed(recent[cpu][:-1]):
                    if r_tid != 0:
                        break
                    if r_event == "irq:irq_handler_entry":
                        cause = "interrupt " + r_rest.split("name=")[-1]
                        break
                    if r_event == "irq:softirq_entry":
                        cause = "softirq " + r_rest.split("action=")[-1].rstrip("]")
                ended_by[f"{cause} -> {role(next_tid, next_comm)}"] += us
            idle_since[cpu] = None
            if next_tid in woken:
                since, waker = woken.pop(next_tid)
                pair = (waker, role(next_tid, next_comm))
                waits[pair] += 1
                wait_us[pair] += (t - since) * 1e6
                for other in cpus:
                    other_idle = idle_since[other]
                    if other != cpu and other_idle is not None:
                        idle_meanwhile[pair] += (t - max(since, other_idle)) * 1e6

    print(f"{span:.2f} s traced on {len(cpus)} cores; idle {idle_total / 1e3:.1f} ms, "
          f"{100 * idle_total / 1e6 / span / len(cpus):.1f} % of the cores' time")
    print("\nidle time by the length of the idle stretch:")
    for start in sorted(by_length):
        label = f"{start}+ µs" if start == 1000 else f"{start}-{start + 250} µs"
        print(f"  {label:>12}  {by_length[start] / 1e3:7.1f} ms")
    print("\nidle time by what ended it (what ran next), largest first:")
    for key, us in ended_by.most_common(10):
        print(f"  {us / 1e3:7.1f} ms  {key}")
    print("\nwake-ups: waker -> woken, per second, mean wait to run, the other core idle meanwhile:")
    for pair in sorted(waits, key=lambda p: -idle_meanwhile[p])[:15]:
        print(f"  {pair[0]:>28} -> {pair[1]:<28} {waits[pair] / span:7.0f}/s "
              f"{wait_us[pair] / waits[pair]:6.0f} µs  {idle_meanwhile[pair] / 1e3:6.1f} ms")


if __name__ == "__main__":
    main()
