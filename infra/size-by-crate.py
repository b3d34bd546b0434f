#!/usr/bin/env python3
"""Rank the crates of an unstripped binary by the size of their symbols, as
`cargo bloat --crates` does (docs/benchmarks.md, issue #13):

    python3 infra/size-by-crate.py <unstripped binary> [how many, default 30]

Each symbol (`nm -S --size-sort -C`) counts for the crate its demangled path starts with
(`<T as Trait>` for the type's crate); C symbols of aws-lc and ring are named as such.
Standard library only."""
import collections, re, subprocess, sys
binary = sys.argv[1]
top = int(sys.argv[2]) if len(sys.argv) > 2 else 30
out = subprocess.run(["nm", "-S", "--size-sort", "-C", binary], capture_output=True, text=True).stdout
sizes = collections.Counter(); total = 0
def crate_of(name):
    n = name
    while n.startswith("<"):
        n = n[1:]
    n = n.lstrip("&*").replace("mut ", "").replace("dyn ", "")
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", n)
    if m:
        return m.group(1)
    if n.startswith("aws_lc") or n.startswith("AWS_LC") or "aws_lc_" in n:
        return "[C] aws-lc"
    if n.startswith("ring_") or "ring_core" in n:
        return "[C] ring"
    return "[other] " + (n.split("_")[0][:12] if n else "?")
for line in out.splitlines():
    parts = line.split(None, 3)
    if len(parts) < 4 or parts[2] not in "tTrRdDbB":
        continue
    size = int(parts[1], 16)
    if parts[2] in "bB":
        continue
    total += size
    sizes[crate_of(parts[3])] += size
print(f"symbols total {total:,} B")
for crate, size in sizes.most_common(top):
    print(f"{size:>10,} {100*size/total:5.1f}%  {crate}")
