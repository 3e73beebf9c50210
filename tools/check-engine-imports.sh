#!/usr/bin/env bash
# Checks the shape of engine/src (issue #11, "an engine whose modules own their invariants"):
# 1. imports run one way: a module may use only modules before it in ORDER (as written in
#    engine/src/lib.rs); no module imports one that imports it back;
# 2. no engine source file is over MAX_LINES lines.
# Usage: tools/check-engine-imports.sh   (exit 1 and a list of violations when it fails)
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 - "$@" <<'PY'
import os, re, sys
ORDER = ["error", "io", "storage", "options", "navigation", "state", "search", "updates", "snapshot", "merge", "index", "verify"]
MAX_LINES = 600
root = "engine/src"
bad = []
for dirpath, _, files in os.walk(root):
    for f in files:
        if not f.endswith(".rs"):
            continue
        path = os.path.join(dirpath, f)
        rel = os.path.relpath(path, root)
        top = rel.split(os.sep)[0].removesuffix(".rs")
        text = open(path, encoding="utf-8").read()
        lines = text.count("\n")
        if lines > MAX_LINES:
            bad.append(f"{path}: {lines} lines (limit {MAX_LINES})")
        if top == "lib":
            continue
        if top not in ORDER:
            bad.append(f"{path}: module `{top}` is not in the import order; add it to ORDER and lib.rs")
            continue
        # test modules may reach anywhere
        body = text.split("#[cfg(test)]")[0]
        for m in re.finditer(r"crate::([a-z_]+)", body):
            used = m.group(1)
            if used in ("Result",) or used == top:
                continue
            if used not in ORDER:
                continue
            if ORDER.index(used) > ORDER.index(top):
                line = body[: m.start()].count("\n") + 1
                bad.append(f"{path}:{line}: `{top}` imports `{used}`, which comes after it ({' → '.join(ORDER)})")
if bad:
    print("engine shape check failed:")
    print("\n".join(sorted(set(bad))))
    sys.exit(1)
print(f"engine imports run one way ({' → '.join(ORDER)}); every file ≤ {MAX_LINES} lines")
PY
