#!/usr/bin/env bash
# Checks that imports run one way in every crate (issues #11 and #29):
# 1. each crate's lib.rs documents its module order under `# Module order` as one line
#    `a → b → c`; every module lib.rs declares is in it, and nothing else;
# 2. a module may use only itself and the modules before it in that order. Read are the
#    `crate::…` and `super::…` paths (use trees included) of every line of every file, test
#    code too; the one exemption is a test module named `tests` — `#[cfg(test)] mod tests { … }`
#    or `#[cfg(test)] mod tests;` — which may reach anywhere in its crate. From the crate root
#    a module may name only the `Result` alias and what lib.rs re-exports (`pub use m::X` is
#    read as `m`): the root sits above every module, so its own items are out of reach;
# 3. no engine source file is over 600 lines.
# Usage: tools/check-imports.sh [CRATE_DIR...]   (default: every crate; exit 1 and a list of
# violations when it fails)
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 - "$@" <<'PY'
import os, re, sys

CRATES = ["layout", "builder", "engine", "tools", "python"]
MAX_LINES = {"engine": 600}
ROOT_ALLOWED = {"Result"}
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip(text):
    """`text` without comments, string and char literals; line breaks kept."""
    out, i, n = [], 0, len(text)
    while i < n:
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if text.startswith("/*", i):
            depth = 0
            while i < n:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                    if depth == 0:
                        break
                else:
                    out.append("\n" if text[i] == "\n" else "")
                    i += 1
            continue
        prev = text[i - 1] if i else " "
        raw = re.match(r'b?r(#*)"', text[i : i + 8])
        if raw and not (prev.isalnum() or prev == "_"):
            close = '"' + raw.group(1)
            j = text.find(close, i + len(raw.group(0)))
            j = n if j < 0 else j
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + len(close)
            continue
        if text[i] == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
            continue
        if text[i] == "'":
            ch = re.match(r"'(\\.[^']{0,8}|[^\\'])'", text[i : i + 12])
            if ch:
                out.append("' '")
                i += len(ch.group(0))
                continue
        out.append(text[i])
        i += 1
    return "".join(out)


def use_tree_heads(text, start):
    """First names of the items of the use-tree group whose `{` is at `start`."""
    heads, depth, item = [], 0, ""
    for c in text[start:]:
        if c == "{":
            depth += 1
            if depth == 1:
                continue
        elif c == "}":
            depth -= 1
            if depth == 0:
                heads.append(item)
                break
        if depth == 1 and c == ",":
            heads.append(item)
            item = ""
        elif depth >= 1:
            item += c
    names = []
    for h in heads:
        m = re.match(r"\s*(" + IDENT + r"|\*)", h)
        if m:
            names.append(m.group(1))
    return names


def module_path(src, path):
    rel = os.path.relpath(path, src)[: -len(".rs")].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    return [] if rel in (["lib"], ["main"]) else rel


def read_order(crate, lib):
    text = open(lib, encoding="utf-8").read()
    section = text.split("//! # Module order", 1)
    if len(section) < 2:
        return None, f"{lib}: no `# Module order` section in the crate doc"
    for line in section[1].splitlines()[1:]:
        if not line.startswith("//!"):
            break
        m = re.search(r"`(" + IDENT + r"(?: → " + IDENT + r")+)`", line)
        if m:
            return m.group(1).split(" → "), None
    return None, f"{lib}: the `# Module order` section has no `a → b → …` line"


def check_crate(crate):
    src = os.path.join(crate, "src")
    lib = os.path.join(src, "lib.rs")
    order, err = read_order(crate, lib)
    if err:
        return [err], None
    bad = []
    lib_text = strip(open(lib, encoding="utf-8").read())
    declared = set(re.findall(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+(" + IDENT + r")\s*;", lib_text, re.M))
    declared.discard("tests")
    for m in sorted(declared - set(order)):
        bad.append(f"{lib}: module `{m}` is declared but not in the module order")
    for m in sorted(set(order) - declared):
        bad.append(f"{lib}: `{m}` is in the module order but not declared")
    if len(set(order)) != len(order):
        bad.append(f"{lib}: the module order names a module twice")
    rank = {m: i for i, m in enumerate(order)}
    # `pub use m::{A, B}` (or a private `use`) in lib.rs: `crate::A` is read as `m`
    reexport = {}
    for m in re.finditer(r"(?:^|[;}\s])(?:pub(?:\([^)]*\))?\s+)?use\s+(?:crate::)?(" + IDENT + r")::", lib_text):
        top, after = m.group(1), m.end()
        stmt = lib_text[after : lib_text.find(";", after)]
        if stmt.startswith("{"):
            names = re.findall(r"(" + IDENT + r")\s*(?=[,}])", stmt)
        else:
            names = re.findall(IDENT, stmt)[-1:]
        if top in declared:
            for name in names:
                reexport[name] = top
    for dirpath, _, files in os.walk(src):
        for f in sorted(files):
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            raw = open(path, encoding="utf-8").read()
            limit = MAX_LINES.get(crate)
            if limit and raw.count("\n") > limit:
                bad.append(f"{path}: {raw.count(chr(10))} lines (limit {limit})")
            mod = module_path(src, path)
            if not mod:
                continue  # the crate root: above every module
            top = mod[0]
            if top not in rank:
                if top not in declared:
                    bad.append(f"{path}: not under a module lib.rs declares")
                continue
            if mod[-1] == "tests" and len(mod) > 1:
                # a file module `tests`: exempt when its parent declares `#[cfg(test)] mod tests;`
                here = os.path.dirname(dirpath) if f == "mod.rs" else dirpath
                parents = [os.path.join(here, "mod.rs"), here + ".rs"]
                if any(
                    os.path.exists(p) and re.search(r"#\[cfg\(test\)\]\s*mod\s+tests\s*;", open(p, encoding="utf-8").read())
                    for p in parents
                ):
                    continue
            text = strip(raw)
            # inline modules: (name, depth at which its body opened, exempt)
            stack, depth = [], 0
            events = list(re.finditer(r"(#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?)?\bmod\s+(" + IDENT + r")\s*\{|[{}]", text))
            refs = re.finditer(r"\b(crate|super)((?:\s*::\s*super)*)\s*::\s*(\{|" + IDENT + r"|\*)", text)
            # walk references and brace events in file order
            items = sorted([(m.start(), 0, m) for m in events] + [(m.start(), 1, m) for m in refs], key=lambda t: (t[0], t[1]))
            for pos, kind, m in items:
                if kind == 0:
                    tok = m.group(0)
                    if tok == "{":
                        depth += 1
                    elif tok == "}":
                        depth -= 1
                        if stack and stack[-1][1] == depth + 1:
                            stack.pop()
                    else:
                        depth += 1
                        exempt = bool(m.group(1)) and m.group(2) == "tests"
                        stack.append((m.group(2), depth, exempt))
                    continue
                if any(s[2] for s in stack):
                    continue
                here = mod + [s[0] for s in stack]
                if m.group(1) == "crate":
                    base = []
                else:
                    ups = 1 + m.group(2).count("super")
                    if ups > len(here):
                        continue
                    base = here[: len(here) - ups]
                if base:
                    used = [base[0]]
                elif m.group(3) == "{":
                    used = use_tree_heads(text, m.end() - 1)
                else:
                    used = [m.group(3)]
                line = text.count("\n", 0, pos) + 1
                for name in used:
                    if name in ROOT_ALLOWED:
                        continue
                    name = reexport.get(name, name)
                    if name in ("self", top):
                        continue
                    if name == "*":
                        bad.append(f"{path}:{line}: `{top}` globs the crate root; name the modules it uses")
                    elif name not in rank:
                        bad.append(f"{path}:{line}: `{top}` uses `{name}` from the crate root; the root sits above every module (move it into one)")
                    elif rank[name] > rank[top]:
                        bad.append(f"{path}:{line}: `{top}` imports `{name}`, which comes after it")
    return bad, order


args = sys.argv[1:] or CRATES
failed = False
for crate in args:
    bad, order = check_crate(crate)
    if bad:
        failed = True
        print(f"{crate}: import check failed" + (f" (order: {' → '.join(order)})" if order else "") + ":")
        print("\n".join("  " + b for b in sorted(set(bad))))
    else:
        extra = f"; every file ≤ {MAX_LINES[crate]} lines" if crate in MAX_LINES else ""
        print(f"{crate}: imports run one way ({' → '.join(order)}){extra}")
sys.exit(1 if failed else 0)
PY
