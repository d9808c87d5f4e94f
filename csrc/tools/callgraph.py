#!/usr/bin/env python3
"""callgraph.py - which core file calls functions defined in which other one.

Usage: callgraph.py [DIR]   (DIR: the folder of the core's .c files; default:
the folder above this script, csrc/)

Reads every DIR/*.c (not below it), finds the functions each defines (at brace
depth 0: a name, its parameter list, then a body) and every name each one
uses inside its bodies: a use of a function another file defines (a call, or
its address taken) is an edge from the file using it to the file defining it.
A static function is the file's own and is never an edge. Comments, string
and character literals are dropped first, and preprocessor lines. A use of an
inline function or a macro of DIR/*.h counts as a use of what its body uses
(fault.h's wrappers call fault.c), as the compiler would see it.

Exit 0 and print the layering when the file-level graph has no cycle: level 0
files use no other core file, level n files use files of lower levels only.
Exit 1 and print a cycle when there is one. Python 3 standard library only.
"""

import re
import sys
from pathlib import Path

_TOKEN = re.compile(r"[A-Za-z_]\w*|\S")
_DEFINE = re.compile(r"^\s*#\s*define\s+([A-Za-z_]\w*)(.*)$")
_KEYWORDS = {
    "if", "while", "for", "switch", "return", "sizeof", "_Alignof", "alignof",
    "_Generic", "defined", "__attribute__", "__typeof__", "typeof", "do", "else",
}


def strip(src: str) -> str:
    """The source without comments, string and character literals."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("/*", i):
            j = src.find("*/", i + 2)
            i = n if j < 0 else j + 2
            out.append(" ")
        elif src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif c in "\"'":
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == "\\" else 1
            i = j + 1
            out.append(" 0 ")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def scan(path: Path) -> tuple[dict[str, bool], dict[str, set[str]]]:
    """The functions `path` defines (name -> static?) and the names each one's
    body uses (name -> names; "" holds what no function body encloses)."""
    text = strip(path.read_text())
    defs, uses = scan_text(text)
    for line in text.replace("\\\n", " ").splitlines():
        m = _DEFINE.match(line)
        if m:  # a macro of the file: what it uses, the file uses
            uses[""].update(t for t in _TOKEN.findall(m.group(2)) if re.match(r"[A-Za-z_]", t))
    return defs, uses


def scan_text(text: str) -> tuple[dict[str, bool], dict[str, set[str]]]:
    """scan() of source text already stripped; preprocessor lines are left out."""
    src = "\n".join(l for l in text.replace("\\\n", " ").splitlines()
                    if not l.lstrip().startswith("#"))
    toks = _TOKEN.findall(src)
    defs: dict[str, bool] = {}
    used: dict[str, set[str]] = {"": set()}
    current = ""
    depth = 0
    stmt: list[str] = []  # the tokens of the top-level declaration so far
    for k, tok in enumerate(toks):
        if depth == 0:
            if tok == "{" and stmt and stmt[-1] == ")":
                name = declared_function(stmt)
                if name:
                    defs[name] = "static" in stmt
                current = name or ""
                used.setdefault(current, set())
                depth = 1
                stmt = []
            elif tok == "{":
                current = ""
                depth = 1  # a struct, union, enum or initializer at file scope
            elif tok == ";":
                stmt = []
            else:
                stmt.append(tok)
        else:
            if tok == "{":
                depth += 1
            elif tok == "}":
                depth -= 1
                if depth == 0:
                    stmt = []
            elif re.match(r"[A-Za-z_]", tok) and tok not in _KEYWORDS:
                prev = toks[k - 1] if k else ""
                if prev not in (".", "->"):
                    used[current].add(tok)
    return defs, used


def declared_function(stmt: list[str]) -> str | None:
    """The name before the parameter list that ends `stmt`, if it is a function."""
    level = 0
    for i in range(len(stmt) - 1, -1, -1):
        if stmt[i] == ")":
            level += 1
        elif stmt[i] == "(":
            level -= 1
            if level == 0:
                if i and re.match(r"[A-Za-z_]\w*$", stmt[i - 1]) and stmt[i - 1] not in _KEYWORDS:
                    return stmt[i - 1]
                return None
    return None


def header_uses(folder: Path) -> dict[str, set[str]]:
    """What the headers' inline functions and macros use, by name: a call of
    one counts as a use of what it uses."""
    uses: dict[str, set[str]] = {}
    for h in sorted(folder.glob("*.h")):
        text = strip(h.read_text())
        logical = text.replace("\\\n", " ").splitlines()
        for line in logical:
            m = _DEFINE.match(line)
            if m:
                uses.setdefault(m.group(1), set()).update(
                    t for t in _TOKEN.findall(m.group(2)) if re.match(r"[A-Za-z_]", t))
        _, fn_uses = scan_text(text)
        for fn, names in fn_uses.items():
            if fn:
                uses.setdefault(fn, set()).update(names)
    return uses


def closure(names: set[str], via: dict[str, set[str]]) -> set[str]:
    """names, and all that the header functions and macros among them use."""
    seen, todo = set(), list(names)
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        todo.extend(via.get(n, ()))
    return seen


def graph(folder: Path) -> tuple[dict[str, set[str]], dict[tuple[str, str], set[str]]]:
    """The files each core file uses, and for each edge the functions behind it."""
    files = sorted(folder.glob("*.c"))
    scanned = {f.name: scan(f) for f in files}
    owner: dict[str, str] = {}
    for name, (defs, _) in scanned.items():
        for fn, static in defs.items():
            if not static:
                owner[fn] = name
    edges: dict[str, set[str]] = {name: set() for name in scanned}
    why: dict[tuple[str, str], set[str]] = {}
    via = header_uses(folder)
    for name, (defs, fn_uses) in scanned.items():
        used = closure(set().union(*fn_uses.values()), via)
        for fn in used:
            if fn in defs:  # its own (static or not) comes first
                continue
            other = owner.get(fn)
            if other and other != name:
                edges[name].add(other)
                why.setdefault((name, other), set()).add(fn)
    return edges, why


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in sorted(edges[n]):
            if state.get(m) == 1:
                return path[path.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        path.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def main(argv: list[str]) -> int:
    folder = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    if len(argv) > 2 or not folder.is_dir() or not any(folder.glob("*.c")):
        print(f"usage: callgraph.py [FOLDER]: a folder of C files (none in {folder})", file=sys.stderr)
        return 2
    edges, why = graph(folder)
    cycle = find_cycle(edges)
    if cycle:
        print("callgraph: the core's files call each other in a cycle:")
        print("  " + " -> ".join(cycle))
        for a, b in zip(cycle, cycle[1:]):
            print(f"  {a} uses {b}: {', '.join(sorted(why[(a, b)]))}")
        return 1
    level: dict[str, int] = {}

    def depth(n: str) -> int:
        if n not in level:
            level[n] = 1 + max((depth(m) for m in edges[n]), default=-1)
        return level[n]

    for n in edges:
        depth(n)
    print(f"callgraph: {len(edges)} core files, no cycle; each uses only files of lower levels:")
    for lv in range(max(level.values(), default=-1) + 1):
        for n in sorted(f for f in level if level[f] == lv):
            uses = ", ".join(sorted(edges[n])) or "-"
            print(f"  {lv}  {n:<12} uses {uses}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
