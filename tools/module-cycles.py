#!/usr/bin/env python3
"""Lists module-level import cycles in src/: for every module, its child
modules (each with its whole subtree) form a graph, with an edge A -> B when
code in A names an item of B (`use` or an inline path, through `crate::`,
`super::` or `self::`). Prints each strongly connected component of more
than one sibling, or "no module-level import cycles".

    python3 tools/module-cycles.py [src]
"""
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "src"
files = {}
INLINE = re.compile(r"\bmod\s+([A-Za-z_][A-Za-z0-9_]*)\s*\{")


def split_inline(mod, text):
    """Files `text` under `mod`, and each inline `mod name { … }` in it as
    a module of its own (so that `super::` inside it resolves right)."""
    outer, i = [], 0
    for m in INLINE.finditer(text):
        if m.start() < i:
            continue
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += text[j] == "{"
            depth -= text[j] == "}"
            j += 1
        outer.append(text[i : m.start()])
        split_inline(mod + (m.group(1),), text[m.end() : j - 1])
        i = j
    outer.append(text[i:])
    files[mod] = files.get(mod, "") + "".join(outer)


for d, _, names in os.walk(root):
    for n in names:
        if not n.endswith(".rs"):
            continue
        p = os.path.join(d, n)
        rel = os.path.relpath(p, root)[:-3].split(os.sep)
        if rel[-1] in ("mod", "lib", "main"):
            rel = rel[:-1]
        split_inline(tuple(rel), open(p).read())
modules = set(files)


def resolve(path):
    """The longest module prefix of a path (a tuple of segments)."""
    for k in range(len(path), -1, -1):
        if tuple(path[:k]) in modules:
            return tuple(path[:k])
    return ()


PATH = re.compile(r"\b((?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP = re.compile(r"\buse\s+((?:crate|super|self)[^;]*);", re.S)


def strip_comments(text):
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def expand(stmt):
    """Paths named by a `use` statement, with its braces expanded."""
    stmt = re.sub(r"\s+", "", stmt)
    out = []

    def walk(prefix, rest):
        if "{" not in rest:
            for part in rest.split(","):
                if part:
                    out.append(prefix + part.split("as")[0])
            return
        i = rest.index("{")
        head, body = rest[:i], rest[i + 1 : rest.rindex("}")]
        depth, cur, parts = 0, "", []
        for ch in body:
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
                continue
            depth += ch == "{"
            depth -= ch == "}"
            cur += ch
        parts.append(cur)
        for part in parts:
            walk(prefix + head, part)

    walk("", stmt)
    return out


edges = set()
for mod, text in files.items():
    text = strip_comments(text)
    named = [m for s in USE_GROUP.findall(text) for m in expand(s)]
    named += PATH.findall(USE_GROUP.sub("", text))
    for p in named:
        segs = [s for s in p.split("::") if s]
        base = list(mod)
        if segs[0] == "crate":
            target = segs[1:]
        else:
            while segs and segs[0] in ("super", "self"):
                if segs[0] == "super":
                    base = base[:-1]
                segs = segs[1:]
            target = base + segs
        to = resolve(target)
        if to != mod:
            edges.add((mod, to))

cycles = []
parents = {m[:-1] for m in modules if m}
for parent in sorted(parents):
    kids = sorted(m for m in modules if len(m) == len(parent) + 1 and m[: len(parent)] == parent)
    graph = {k: set() for k in kids}
    for a, b in edges:
        ka = a[: len(parent) + 1] if a[: len(parent)] == parent and len(a) > len(parent) else None
        kb = b[: len(parent) + 1] if b[: len(parent)] == parent and len(b) > len(parent) else None
        if ka in graph and kb in graph and ka != kb:
            graph[ka].add(kb)
    # Tarjan's strongly connected components.
    index, low, stack, on, comps, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for k in kids:
        if k not in index:
            visit(k)
    cycles += comps

if not cycles:
    print("no module-level import cycles")
for comp in cycles:
    print("cycle: " + " <-> ".join("crate::" + "::".join(c) for c in comp))
sys.exit(1 if cycles else 0)
