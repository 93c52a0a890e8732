#!/usr/bin/env python3
"""Cost of the DDP_DOCTOR gate at interpreter start-up: `python -c pass` in two fresh venvs of the
same Python, one with the hook's files installed (ddp_doctor_hook.pth + ddp_doctor_hook/, copied
from packaging/wheel-data/purelib as the wheel installs them) and one without, run alternately;
also the hook venv with DDP_DOCTOR=1 (the module imported and armed). Prints the medians and
ratios as a Markdown table.

usage: scripts/bench/hook_gate.py [RUNS]   (default 200 runs of each)
env:   PY  the Python to make the venvs from (default: python3 on PATH)
"""
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 200
PY = os.environ.get("PY") or shutil.which("python3")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PURELIB = os.path.join(ROOT, "packaging", "wheel-data", "purelib")


def venv(path, with_hook):
    subprocess.run([PY, "-m", "venv", "--without-pip", path], check=True)
    python = os.path.join(path, "bin", "python")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    if with_hook:
        for name in os.listdir(PURELIB):
            src = os.path.join(PURELIB, name)
            (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, os.path.join(site, name))
    return python


def once(python, env):
    t = time.perf_counter()
    subprocess.run([python, "-c", "pass"], env=env, check=True)
    return time.perf_counter() - t


def main():
    base_env = {k: v for k, v in os.environ.items() if k not in ("DDP_DOCTOR", "PYTHONPATH")}
    on_env = dict(base_env, DDP_DOCTOR="1")
    with tempfile.TemporaryDirectory() as tmp:
        plain = venv(os.path.join(tmp, "plain"), False)
        hooked = venv(os.path.join(tmp, "hooked"), True)
        cases = [("without the package", plain, base_env),
                 ("with the .pth, DDP_DOCTOR unset", hooked, base_env),
                 ("with the .pth, DDP_DOCTOR=1 (armed)", hooked, on_env)]
        for _, py, env in cases:  # warm the page cache
            once(py, env)
        times = {name: [] for name, _, _ in cases}
        for _ in range(RUNS):
            for name, py, env in cases:
                times[name].append(once(py, env))
    base = statistics.median(times[cases[0][0]])
    print("python: %s, %d runs each, alternating" % (PY, RUNS))
    print()
    print("| `python -c pass` | median | vs without |")
    print("|---|---|---|")
    for name, _, _ in cases:
        m = statistics.median(times[name])
        print("| %s | %.2f ms | %.3fx |" % (name, m * 1000, m / base))


if __name__ == "__main__":
    main()
