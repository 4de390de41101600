#!/usr/bin/env python3
"""Summarises a callgrind dump of remit: instructions and allocations per call.

Usage: bench/instructions_summary.py CALLGRIND_OUT CALLS

Prints the instructions per call, the share in SHA-256 (valgrind hides the CPU's SHA
extensions, so sha2 runs its portable code here: about 20 times the instructions it takes
on the machine itself), the instructions per call without it, the allocator calls per
call with the functions that make the most, and the functions with the most
instructions of their own.
"""

import re
import sys
from collections import Counter

ALLOC = re.compile(r"^__rustc::__rust_(alloc|alloc_zeroed|realloc)$")
SHA = re.compile(r"^sha2::")


def main() -> None:
    path, calls = sys.argv[1], int(sys.argv[2])
    names: dict[str, str] = {}
    total = 0
    own: Counter[str] = Counter()
    allocs: Counter[str] = Counter()
    fn = cfn = None
    in_call = False

    def name(rest: str) -> str:
        m = re.match(r"\((\d+)\)(?: (.*))?", rest)
        if not m:
            return rest
        i, n = m.groups()
        if n:
            names[i] = n
        return names.get(i, "?")

    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("summary:"):
                total = int(line.split()[1])
            elif line.startswith("fn="):
                fn = name(line[3:])
            elif line.startswith("cfn="):
                cfn = name(line[4:])
            elif line.startswith("calls="):
                if cfn and fn and ALLOC.search(cfn):
                    allocs[fn] += int(line[6:].split()[0])
                in_call = True
            elif line and (line[0].isdigit() or line[0] in "+-*"):
                parts = line.split()
                if in_call:
                    in_call = False  # the cost line of a call is inclusive: not this function's own
                elif len(parts) > 1 and fn:
                    own[fn] += int(parts[1])
    sha = sum(v for k, v in own.items() if SHA.search(k))
    print(f"instructions per call: {total // calls:,}")
    print(f"  of which SHA-256 (portable code under valgrind): {sha // calls:,}")
    print(f"  without SHA-256: {(total - sha) // calls:,}")
    print(f"allocations per call: {sum(allocs.values()) / calls:.1f}")
    for k, v in allocs.most_common(15):
        print(f"  {v / calls:6.2f}  {k[:140]}")
    print("instructions of their own per call, top 25 (SHA-256 left out):")
    for k, v in [(k, v) for k, v in own.most_common(60) if not SHA.search(k)][:25]:
        print(f"  {v // calls:8,}  {k[:140]}")


if __name__ == "__main__":
    main()
