#!/usr/bin/env python3
"""`doctor scan --fix` over real training scripts (issue 19): for every file of CORPUS that
`doctor scan` flags S001/S002, fix a copy of the corpus and check that the fixed file

- compiles (with the Python that compiles the original),
- scans clean of S001/S002 (`doctor scan`),
- is left alone by a second `--fix` (idempotent, byte for byte),
- breaks no name a function reads: every module-level name that a function kept at module
  level reads (symtable: global or free-at-module names) and that the original bound at module
  level is still bound at module level outside the generated `main()`, unless its binding
  statement depends on the launch (calls into torch.distributed, the accelerator/fabric/engine
  objects, deepspeed, or reads a name that does) -- those are listed, for reading.

    scripts/bench/scan_fix_corpus.py DOCTOR CORPUS_DIR      # prints a table and totals

The corpus is third-party code fetched for the measurement only; it is copied to a temporary
directory, never written in place, and never committed.
"""

import ast
import builtins
import json
import os
import shutil
import subprocess
import sys
import symtable
import tempfile

LAUNCH_HINTS = ("dist.", "distributed", "accelerator", "Accelerator", "PartialState", "fabric",
                "deepspeed", "engine", "init_process_group", "get_rank", "get_world_size",
                "local_rank", "device_mesh", "init_device_mesh", "rank")


def run(args, cwd=None):
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True)


def flagged(doctor, root):
    out = run([doctor, "scan", "--format", "json", "--exit-zero", "."], cwd=root)
    doc = json.loads(out.stdout)
    files = sorted({f["location"]["path"] for f in doc["findings"] if f["code"] in ("S001", "S002")})
    return [os.path.normpath(os.path.join(root, f)) for f in files]


def compiles(python, path):
    return run([python, "-c", "import sys; compile(open(sys.argv[1], 'rb').read(), sys.argv[1], 'exec')", path]).returncode == 0


def top_bound(tree, skip=()):
    """Names bound by module-level statements (not inside functions), skipping defs in `skip`."""
    names = {}
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name in skip:
            continue
        if isinstance(stmt, ast.If) and "__name__" in ast.unparse(stmt.test):
            continue
        for node in ast.walk(stmt):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.setdefault(node.name, stmt)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                names.setdefault(node.id, stmt)
            elif isinstance(node, ast.alias):
                n = (node.asname or node.name).split(".")[0]
                if n != "*":
                    names.setdefault(n, stmt)
        # Only the statement's own bindings, not those inside nested function bodies: good
        # enough for a measurement (a nested def's locals are rarely module names).
    return names


def function_reads(source, skip):
    """Module names read by the functions and methods defined at module level (not `skip`)."""
    table = symtable.symtable(source, "<f>", "exec")
    reads = {}

    def walk(t, owner):
        for child in t.get_children():
            name = owner or child.get_name()
            if t.get_type() == "module" and child.get_name() in skip:
                continue
            if child.get_type() == "function":
                for s in child.get_symbols():
                    if s.is_referenced() and (s.is_global() or s.is_free()) and not s.is_local():
                        reads.setdefault(s.get_name(), name)
            walk(child, name)

    walk(table, None)
    return reads


def depends_on_launch(stmt, tainted):
    text = ast.unparse(stmt)
    if any(h in text for h in LAUNCH_HINTS):
        return True
    return any(isinstance(n, ast.Name) and n.id in tainted for n in ast.walk(stmt))


def check(doctor, python_of, path):
    original = open(path, "rb").read()
    python = python_of(path)
    out = run([doctor, "scan", "--fix", path])
    after = open(path, "rb").read()
    if out.returncode == 2 or after == original:
        why = (out.stderr.strip().splitlines() or ["?"])
        why = next((l for l in why if "not fixed" in l or "error:" in l), why[-1])
        return {"outcome": "refused" if "not fixed" in why else "error", "why": why}
    r = {"outcome": "fixed"}
    r["compiles"] = python is None or compiles(python, path)
    scan = json.loads(run([doctor, "scan", "--format", "json", "--exit-zero", path]).stdout)
    r["clean"] = not [f for f in scan["findings"] if f["code"] in ("S001", "S002")]
    again = run([doctor, "scan", "--fix", path])
    r["idempotent"] = open(path, "rb").read() == after and again.returncode != 2
    # Names functions read that the fix took away from module level.
    src_o, src_f = original.decode("utf-8", "replace"), after.decode("utf-8", "replace")
    tree_o, tree_f = ast.parse(src_o), ast.parse(src_f)
    main_names = {s.name for s in tree_f.body if isinstance(s, ast.FunctionDef)} - {
        s.name for s in tree_o.body if isinstance(s, ast.FunctionDef)}
    bound_o, bound_f = top_bound(tree_o), top_bound(tree_f, main_names)
    tainted, moved_ok, broken = set(), [], []
    for stmt in tree_o.body:
        if depends_on_launch(stmt, tainted):
            for n in ast.walk(stmt):
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                    tainted.add(n.id)
    for name, fn in sorted(function_reads(src_f, main_names).items()):
        if name in bound_o and name not in bound_f and not hasattr(builtins, name):
            (moved_ok if name in tainted else broken).append(f"{name} (read by {fn})")
    r["moved_with_launch"] = moved_ok
    r["broken"] = broken
    return r


def main():
    doctor, corpus = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    work = tempfile.mkdtemp(prefix="scan-fix-corpus-")
    try:
        root = os.path.join(work, "c")
        shutil.copytree(corpus, root, symlinks=True)
        files = flagged(doctor, root)
        newer = shutil.which("python3.13") or shutil.which("python3.12")

        def python_of(p):
            for py in (sys.executable, newer):
                if py and compiles(py, p):
                    return py
            return None

        pythons = {p: python_of(p) for p in files}
        results = {}
        for p in files:
            results[p] = check(doctor, lambda q: pythons[q], p)
        totals = {}
        for p, r in results.items():
            rel = os.path.relpath(p, root)
            totals[r["outcome"]] = totals.get(r["outcome"], 0) + 1
            if r["outcome"] == "fixed":
                bad = [k for k in ("compiles", "clean", "idempotent") if not r[k]]
                for k in ("compiles", "clean", "idempotent"):
                    totals[k] = totals.get(k, 0) + int(r[k])
                totals["broken"] = totals.get("broken", 0) + len(r["broken"])
                totals["moved_with_launch"] = totals.get("moved_with_launch", 0) + len(r["moved_with_launch"])
                print(f"fixed    {rel}: {'ok' if not bad else 'FAILS ' + ','.join(bad)}"
                      f"{'; BROKEN ' + ', '.join(r['broken']) if r['broken'] else ''}"
                      f"{'; moved with the launch: ' + ', '.join(r['moved_with_launch']) if r['moved_with_launch'] else ''}")
            else:
                print(f"{r['outcome']:8} {rel}: {r['why']}")
        print(json.dumps({"files_flagged": len(files), **totals}, sort_keys=True))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
