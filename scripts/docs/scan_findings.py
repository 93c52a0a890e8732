import subprocess, os
# Regenerates docs/findings/S*.md with real `doctor scan` output. Run from the repository root:
#   DOCTOR=target/debug/doctor python3 scripts/docs/scan_findings.py
D = os.environ.get("DOCTOR", "target/debug/doctor")
def run(args):
    env = dict(os.environ, NO_COLOR="1")
    if "--python-version" not in args:
        args = ["--python-version", "3.11"] + args
    if "--platform" not in args:
        args = ["--platform", "linux"] + args
    p = subprocess.run([D, "scan"] + args, capture_output=True, text=True, env=env)
    return f"$ doctor scan {' '.join(args)}\n" + p.stdout + p.stderr + f"$ echo $?\n{p.returncode}\n"
def src(path):
    return open(path).read()

docs = {}
docs["S001"] = f"""# S001 module-level-launch

Severity: **warning**; **error** when [S002](S002.md) holds for the same program.

## What

A distributed launch or process-group init is reachable at import time, outside
`if __name__ == "__main__":`. `doctor scan` recognises:

- `Fabric(...).launch()` and `fabric.launch()` on a variable assigned from `Fabric(...)`
  (`lightning`, `lightning.fabric`, `lightning_fabric`, `pytorch_lightning`, any alias);
- `Trainer(...).fit/validate/test/predict(...)` (also through a variable) when the Trainer asks
  for several processes: a `ddp*`/`fsdp*`/`deepspeed*` strategy string or a `DDPStrategy`/
  `FSDPStrategy`/`DeepSpeedStrategy` object, `devices` > 1, `-1`, `"-1"`, `"0,1"` or a list of
  several, `num_nodes` > 1. `devices="auto"` and non-literal values are not counted (a plain
  `Trainer()` would otherwise always be flagged);
- `torch.distributed.init_process_group`, `TCPStore(...)`, `torch.multiprocessing.spawn` /
  `start_processes`, `torch.distributed.launcher.api.elastic_launch`, `accelerate.Accelerator()`
  and `notebook_launcher`, `deepspeed.initialize` / `init_distributed`, and `LightningCLI(...)`
  (which fits on construction) unless it is given `run=False`;

through every import form: `import lightning as L`, `from lightning.fabric import Fabric as F`,
`from torch import distributed as dist`, `import torch.distributed as dist`,
`from torch.distributed import init_process_group`, `import torch` then
`torch.distributed.init_process_group`, and so on.

"At import time" means: top-level statements; everything nested in top-level `try`/`with`/`for`/
`while`/`if`/`match` blocks (other than the body of the main guard, which is recognised in both
orders, `__name__ == "__main__"` and `"__main__" == __name__`; its `else` branch *is* import
time, and so is the body of `if __name__ != "__main__":`); class bodies; decorators (a decorator
is called when the function is defined); default arguments; comprehensions. Lambda and function
bodies are not, unless a same-file function is called from import-time code (also a same-file
class, which runs its `__init__`, a method called on an instance of one: `runner = Runner()`
then `runner.start()`, or `Runner().start()`, and `self.method()` inside its methods): such
calls are followed transitively, with recursion cycles cut, and the finding is reported at the import-time call with the launch itself
as a note. `if __name__ == "__main__" and ...:` counts as a main guard too.

## Why

Every process that imports the file runs the launch again. Lightning's launcher starts ranks
1..N-1 by re-running the script, which is why `fabric.launch()` at module level works with the
default `fork` start method; but a spawn or forkserver child (a DataLoader worker with
`multiprocessing_context="spawn"`, the platform default on macOS, or on Linux from Python 3.14)
re-imports the main file as `__mp_main__` and launches a second time. See [S002](S002.md).

## Fix

Move the launch into a function that only runs under the main guard:

```python
def main():
    fabric.launch()
    ...

if __name__ == "__main__":
    main()
```

Creating the `Fabric(...)` or `Trainer(...)` object at module level is harmless; launching or
fitting is what must move.

## Example

`tests/fixtures/scan/trainer_pl.py`:

```python
{src("tests/fixtures/scan/trainer_pl.py")}```

```text
{run(["tests/fixtures/scan/trainer_pl.py"])}```

Through same-file calls (`tests/fixtures/scan/transitive_calls.py`, which also holds a
`ping`/`pong` recursion cycle that launches nothing and is not reported):

```text
{run(["tests/fixtures/scan/transitive_calls.py"])}```

## Limits

- One file at a time: a launch inside another module of the project is reported in that module's
  own scan, and spawn evidence in one file is not linked to a launch in another (S002).
- Names resolve through `import`/`from ... import` (any alias, any scope); `from x import *`,
  `getattr` and re-exports through the project's own modules are not followed.
- Variables holding a `Fabric`/`Trainer`/class instance are tracked by name across the file,
  without flow analysis.
- A `Trainer` whose `devices`/`strategy` are not literals (`devices=args.gpus`) or are `"auto"`
  is not counted as multi-process; `Fabric(...).launch()` is always counted.
- Functions defined inside other functions, and methods inherited from a base class, are not
  followed (`self.method()` within a same-file class is).

Measured on real library code (the test `no_false_positives_on_torch_and_lightning`): 0 S001
and 0 S002 in the 3009 files of torch 2.15, lightning, lightning_fabric and pytorch_lightning
2.6.6 (and 0 in all 7400 files of the managed venv's site-packages).
"""

docs["S002"] = f"""# S002 spawn-reimports-main

Severity: **error**. When it holds, the [S001](S001.md) at the same line is an error too.

## What

The program starts spawn or forkserver children while a launch runs at import time (S001). The
evidence can be anywhere in the file, also inside `main()` or under the guard, because it is the
children that re-import the file:

- `multiprocessing_context=` / `mp_context=` / `start_method=` set to `"spawn"` or `"forkserver"`;
- `set_start_method("spawn" | "forkserver")`, `get_context("spawn" | "forkserver")`, and
  `get_context()` with no argument when the platform default is spawn or forkserver;
- `torch.multiprocessing.spawn(...)`, `start_processes(...)` without a `start_method`, and a
  Lightning strategy string containing `spawn` (`"ddp_spawn"`);
- with the platform default: a `DataLoader` with `num_workers` > 0 (a non-zero literal, or any
  non-literal value) and no `multiprocessing_context`, or `multiprocessing.Process`/`Pool`,
  `ProcessPoolExecutor` without a context. The default is spawn on macOS and Windows, forkserver
  on Linux from Python 3.14, fork on Linux before 3.14. `--platform linux|macos|windows` and
  `--python-version X.Y` set the assumption; by default it is this machine's OS and the version of
  `python3` on PATH (3.11 when there is none). JSON output records the assumption in `assumed`.

The finding is reported at the launch line; the line that makes the children is a note
(`related` in JSON, `relatedLocations` in SARIF).

## Why

A spawn or forkserver child runs `multiprocessing.spawn`'s `_fixup_main_from_path`, which
re-imports the main script as `__mp_main__`. Its unguarded `fabric.launch()` sees the
`LOCAL_RANK`/`MASTER_PORT` the parent's launcher put in the environment, believes it is rank 0
again, and its TCPStore binds the rendezvous port the parent already holds:
`DistNetworkError: ... port: 33281 ... EADDRINUSE`. Children of ranks >= 1 connect to rank 0's
store as a duplicate rank and hang. With `fork` nothing is re-imported, so the same script passes.

## Fix

Move the launch under the main guard (as for S001); the children then import the file without
launching. Choosing a `"fork"` context also avoids the re-import, but only on Linux and only until
something else picks spawn; the guard is the fix.

## Example

The seed case, `tests/fixtures/scan/seed.py`:

```python
{src("tests/fixtures/scan/seed.py")}```

```text
{run(["tests/fixtures/scan/seed.py"])}```

The fixed form (`tests/fixtures/scan/seed_fixed.py`, launch inside `main()`) is clean:

```text
{run(["tests/fixtures/scan/seed_fixed.py"])}```

With the platform default (`tests/fixtures/scan/num_workers_linux_314.py`, a DataLoader with
`num_workers=4` and no context): S001 only on Python 3.11, S002 on 3.14:

```text
{run(["tests/fixtures/scan/num_workers_linux_314.py"])}
{run(["--python-version", "3.14", "tests/fixtures/scan/num_workers_linux_314.py"])}```
"""

docs["S003"] = f"""# S003 module-level-cuda

Severity: **warning**.

## What

CUDA work at import time: a `torch.cuda.*` call (except queries that create no context:
`is_available`, `is_initialized`, `device_count`, `get_arch_list`, `get_gencode_flags`,
`is_bf16_supported`, `is_current_stream_capturing`, and the `amp`, `nvtx`, `jiterator` and
private `_*` helpers other than `_lazy_init`), `.cuda()`, `.to("cuda...")`,
`.to(device="cuda")`, `.to(torch.device("cuda"))`, or a `torch.*` call with `device="cuda..."`.
Import time is defined as for [S001](S001.md), same-file calls included.

## Why

Every spawn or forkserver child (DataLoader workers, `mp.spawn` ranks) re-imports the main file
and repeats the work: each creates a CUDA context (hundreds of MiB, often on GPU 0), and a
DataLoader worker that touches CUDA can crash. CUDA also cannot be re-initialised in a forked
child, so module-level CUDA work breaks `fork` as well.

## Fix

Do the CUDA work in `main()` under the main guard, or in a function called from there.

## Example

`tests/fixtures/scan/cuda_module_level.py`:

```python
{src("tests/fixtures/scan/cuda_module_level.py")}```

```text
{run(["--select", "S003", "tests/fixtures/scan/cuda_module_level.py"])}```

## Known hits in library code

On torch 2.15's own sources `doctor scan` reports 7 S003, all in `torch/testing/_internal/`
(`common_device_type.py`, `common_methods_invocations.py`, `common_utils.py`, `jit_utils.py`):
test helpers that really do query devices or set memory fractions at import time, behind
`if torch.cuda.is_available()`-style conditions. They are true findings for test utilities that
are never the main module of a training job.
"""

docs["S900"] = f"""# S900 parse-error

Severity: **error**.

## What

The file is not valid Python (ruff's parser, `ruff_python_parser` 0.0.10, which accepts the 3.12+
syntax: `type` aliases, PEP 695 generics, `match`, the walrus operator). The diagnostic carries
the location of the first syntax error; the file is not analysed further, and the scan goes on
with the other files.

Files that cannot be decoded are not S900: they are listed in `files_skipped` (JSON) and as
`warning: skipped PATH: reason` on stderr, without changing the exit code. Decoding follows
PEP 263: UTF-8 by default (a UTF-8 BOM is accepted), or the coding declaration on line 1 or 2
(`utf-8`, `latin-1`/`iso-8859-1`, `ascii`, `cp1252` and their aliases). Skipped: non-UTF-8
text without a declaration, unknown encodings, binary files (NUL bytes), files over 10 MiB.

## Why

A file that does not parse cannot be checked; reporting it keeps a broken file from hiding a
launch.

## Fix

Fix the syntax error; `python -m py_compile FILE` reports the same error.

## Example

`tests/fixtures/scan/syntax_error.py`:

```python
{src("tests/fixtures/scan/syntax_error.py")}```

```text
{run(["tests/fixtures/scan/syntax_error.py"])}```
"""
for code, text in docs.items():
    open(f"docs/findings/{code}.md", "w").write(text)
