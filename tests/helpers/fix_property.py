"""Harness of the `doctor scan --fix` property test (tests/scan_fix_property.rs).

    python3 fix_property.py PAIRS.json   ([[ORIGINAL, FIXED], ...]) -> a JSON list on stdout

For the test harness only: the launch libraries (torch, lightning, accelerate, deepspeed) are
replaced by recorders, importable under their names from this process and its spawn children.
A recorder call does nothing but append its qualified name (and literal arguments) to a list;
calls into the distributed stack return values marked "dist" (and so does arithmetic on them),
so that a name whose value depends on the launch can be told apart. The standard library, the
`multiprocessing` spawn context and the interpreter are the real ones.

For each of ORIGINAL and FIXED it reports:
- main: the recorded calls of a run as `__main__` (a fresh interpreter each), and its error;
- child: what a real spawn child sees when it imports the file as `__mp_main__` (as
  multiprocessing.spawn does with the main module): the calls made on import, every module-level
  name bound, which of them depend on the launch, the values of those that are plain data (and
  the plain attributes of the program's classes), and for every function and method the file
  defines, the module-level names it reads (LOAD_GLOBAL / LOAD_NAME in its code and nested code).
"""

import builtins
import dis
import importlib.abc
import importlib.machinery
import json
import multiprocessing
import os
import runpy
import subprocess
import sys
import types

STUB_ROOTS = {"torch", "lightning", "pytorch_lightning", "lightning_fabric", "accelerate", "deepspeed"}
DIST_PREFIXES = ("torch.distributed", "torch.multiprocessing", "torch.cuda", "accelerate", "deepspeed")
# Methods of lightning objects that launch or run on the launched ranks.
LIGHTNING_DIST = {"launch", "fit", "validate", "test", "predict", "LightningCLI", "setup", "barrier"}

CALLS = []
# (file, line) of the program's line that made each recorded call.
CALL_LINES = []


def _caller_line():
    f = sys._getframe(2)
    while f is not None and f.f_code.co_filename == __file__:
        f = f.f_back
    return [f.f_code.co_filename, f.f_lineno] if f is not None else ["?", 0]


# torch.cuda queries that start nothing (`"nccl" if torch.cuda.is_available() else "gloo"`, as
# real scripts choose their backend): not recorded as distributed calls (src/scan/symbols.rs).
CUDA_QUERIES = {"torch.cuda.is_available", "torch.cuda.device_count", "torch.cuda.is_initialized"}


def _is_dist(q):
    if q in CUDA_QUERIES:
        return False
    if q.startswith(DIST_PREFIXES):
        return True
    root = q.split(".", 1)[0]
    return root in ("lightning", "pytorch_lightning", "lightning_fabric") and q.rsplit(".", 1)[-1] in LIGHTNING_DIST


def _shown(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return repr(v)
    if isinstance(v, StubMeta):
        return v._q
    return type(v).__name__


class StubMeta(type):
    """Every stub is a class (so that `class M(L.LightningModule)` works)."""

    def __getattr__(cls, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return stub(cls._q + "." + name, cls._dist)

    def __call__(cls, *args, **kwargs):
        if "_q" not in cls.__dict__:  # a user's subclass: a real instance
            return super().__call__(*args, **kwargs)
        dist = cls._dist or _is_dist(cls._q)
        if dist:
            shown = [_shown(a) for a in args] + [f"{k}={_shown(v)}" for k, v in sorted(kwargs.items())]
            CALLS.append(f"{cls._q}({', '.join(shown)})")
            CALL_LINES.append(_caller_line())
        return stub(cls._q + "()", dist or any(tainted(a) for a in list(args) + list(kwargs.values())))

    def _derived(cls, *others):
        return stub(cls._q + "'", cls._dist or any(tainted(o) for o in others))

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _derived
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _derived
    __pow__ = __rpow__ = __matmul__ = __rmatmul__ = __neg__ = __pos__ = _derived
    __and__ = __rand__ = __or__ = __ror__ = _derived

    def __getitem__(cls, key):
        return cls._derived(key)

    def __setitem__(cls, key, value):
        pass

    def __bool__(cls):
        return True

    def __iter__(cls):
        return iter(())

    def __len__(cls):
        return 0

    def __int__(cls):
        return 0

    def __index__(cls):
        return 0

    def __float__(cls):
        return 0.0

    def __enter__(cls):
        return cls

    def __exit__(cls, *exc):
        return False

    def __lt__(cls, other):
        return False

    __le__ = __gt__ = __ge__ = __lt__

    def __repr__(cls):
        return f"<stub {cls._q}>"

    def __format__(cls, spec):
        return repr(cls)

    __hash__ = type.__hash__


class Stub(metaclass=StubMeta):
    _q = "stub"
    _dist = False

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return stub(f"{type(self).__name__}.{name}", False)


def stub(q, dist):
    return StubMeta(q.rsplit(".", 1)[-1] or "stub", (Stub,), {"_q": q, "_dist": bool(dist)})


def tainted(v, depth=0):
    """Whether a value depends on the launch (came from, or is built from, a distributed call)."""
    if isinstance(v, StubMeta):
        return "_q" in v.__dict__ and v._dist
    if depth > 2:
        return False
    if isinstance(v, (list, tuple, set, frozenset)):
        return any(tainted(x, depth + 1) for x in v)
    if isinstance(v, dict):
        return any(tainted(x, depth + 1) for x in v.values())
    if isinstance(v, types.FunctionType):
        defaults = list(v.__defaults__ or ()) + list((v.__kwdefaults__ or {}).values())
        return any(tainted(x, depth + 1) for x in defaults)
    if isinstance(v, type):  # a class whose body read a launch-dependent value
        return any(tainted(x, depth + 1) for k, x in list(vars(v).items()) if not k.startswith("__"))
    d = getattr(v, "__dict__", None)
    if isinstance(d, dict) and not isinstance(v, types.ModuleType):
        return any(tainted(x, depth + 1) for x in list(d.values()))
    return False


class StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return stub(self.__name__ + "." + name, False)


class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname.split(".", 1)[0] in STUB_ROOTS:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        m = StubModule(spec.name)
        m.__path__ = []
        return m

    def exec_module(self, module):
        pass


def install():
    if not any(isinstance(f, Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, Finder())


def _own():
    """The copy of this module that sitecustomize installed (its stubs record the calls)."""
    import fix_property

    return fix_property


def global_reads(code, out):
    for ins in dis.get_instructions(code):
        if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            out.add(ins.argval)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            global_reads(c, out)


def functions_in(ns, path):
    """Every function and method the file defines that a child can reach by name."""
    found = {}

    def add(name, f):
        if isinstance(f, (staticmethod, classmethod)):
            f = f.__func__
        if isinstance(f, property):
            f = f.fget
        code = getattr(f, "__code__", None)
        if code is not None and os.path.samefile(code.co_filename, path):
            found[name] = f

    for name, v in list(ns.items()):
        add(name, v)
        if isinstance(v, type) and not isinstance(v, StubMeta) and v.__module__ == ns.get("__name__"):
            for attr, f in list(vars(v).items()):
                add(f"{name}.{attr}", f)
    return found


def _plain(v, depth):
    """The value of plain data (numbers, strings, lists, tuples, dicts, sets of them) and of the
    program's own classes (their plain class attributes), as text to compare; None otherwise."""
    if depth > 4:
        return None
    if v is None or isinstance(v, (bool, int, float, str, bytes)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        items = [_plain(x, depth + 1) for x in v]
        return None if None in items else type(v).__name__ + "[" + ", ".join(items) + "]"
    if isinstance(v, (set, frozenset)):
        items = [_plain(x, depth + 1) for x in v]
        return None if None in items else "set{" + ", ".join(sorted(items)) + "}"
    if isinstance(v, dict):
        items = [(_plain(k, depth + 1), _plain(x, depth + 1)) for k, x in v.items()]
        if any(k is None or x is None for k, x in items):
            return None
        return "{" + ", ".join(f"{k}: {x}" for k, x in sorted(items)) + "}"
    if isinstance(v, type) and not isinstance(v, StubMeta):
        attrs = []
        for k, x in sorted(vars(v).items()):
            if k.startswith("__"):
                continue
            p = _plain(x, depth + 1)
            if p is not None:
                attrs.append(f"{k}={p}")
        return "class " + v.__name__ + "(" + ", ".join(attrs) + ")"
    return None


def child_import(path, queue):
    """In a spawn child: import PATH as the main module is imported there, report what it has."""
    if __name__ != "fix_property":
        return _own().child_import(path, queue)
    os.setpgrp()  # what the import starts goes with this child
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    sys.setrecursionlimit(10000)
    error = None
    ns = {}
    try:
        ns = runpy.run_path(path, run_name="__mp_main__")
    except BaseException as e:  # noqa: BLE001 - reported, not hidden
        error = f"{type(e).__name__}: {e}"
    reads = {}
    try:
        for name, f in functions_in(ns, path).items():
            r = set()
            global_reads(f.__code__, r)
            reads[name] = sorted(n for n in r if not hasattr(builtins, n))
    except Exception as e:  # noqa: BLE001
        error = error or f"inspect: {type(e).__name__}: {e}"
    names = sorted(n for n in ns if not n.startswith("__"))
    values = {}
    for n in names:
        v = _plain(ns[n], 0)
        if v is not None:
            values[n] = v
    queue.put(
        {
            "calls": list(CALLS),
            "call_lines": [line for file, line in CALL_LINES if os.path.samefile(file, path)]
            if all(os.path.exists(file) for file, _ in CALL_LINES)
            else [line for _, line in CALL_LINES],
            "error": error,
            "names": names,
            "dist_names": sorted(n for n in names if tainted(ns[n])),
            "reads": reads,
            "values": values,
        }
    )


def in_spawn_child(path):
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=child_import, args=(path, q))
    p.start()
    try:
        result = q.get(timeout=30)
    except Exception as e:  # noqa: BLE001
        result = {"error": f"no report from the spawn child: {type(e).__name__}"}
    p.join(5)
    import signal

    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    p.join()
    return result


def report_at_exit(report_path):
    """In the program's main process (not in its multiprocessing children): write the recorded
    calls and the uncaught error, if any, to REPORT_PATH when the interpreter exits."""
    import atexit

    state = {"error": None}
    hook = sys.excepthook

    def excepthook(kind, value, tb):
        state["error"] = f"{kind.__name__}: {value}"
        hook(kind, value, tb)

    def write():
        if multiprocessing.parent_process() is not None:
            return
        with open(report_path, "w") as f:
            json.dump({"calls": CALLS, "error": state["error"]}, f)

    sys.excepthook = excepthook
    atexit.register(write)


def stub_env():
    """An environment whose interpreters (the program's own spawn children too) get the stubs."""
    import tempfile

    d = tempfile.mkdtemp(prefix="fix-property-")
    with open(os.path.join(d, "sitecustomize.py"), "w") as f:
        f.write(
            f"import sys\nsys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
            "import fix_property\nfix_property.install()\n"
            "import os\nif os.environ.get('FIX_PROPERTY_REPORT'):\n"
            "    fix_property.report_at_exit(os.environ.pop('FIX_PROPERTY_REPORT'))\n"
        )
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=d, PYTHONDONTWRITEBYTECODE="1")
    return d, env


def main_in_fresh_interpreter(path, env):
    """Run `python PATH` (the program is the real main module, as its spawn children expect) in
    its own session; the whole session is killed when it ends or after 30 s."""
    import signal
    import tempfile

    fd, report = tempfile.mkstemp(prefix="fix-property-report-")
    os.close(fd)
    proc = subprocess.Popen(
        [sys.executable, path],
        cwd=os.path.dirname(os.path.abspath(path)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(env, FIX_PROPERTY_REPORT=report),
        start_new_session=True,
    )
    timed_out = False
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        timed_out = True
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    try:
        with open(report) as f:
            got = json.load(f)
    except (OSError, ValueError):
        got = {"calls": None, "error": "timed out" if timed_out else "no report"}
    os.unlink(report)
    if got.get("error") is None and proc.returncode not in (0, -9):
        got["error"] = f"exit status {proc.returncode}"
    return got


if __name__ == "__main__":
    # python3 fix_property.py PAIRS.json: [[ORIGINAL, FIXED], ...] -> a JSON list, one per pair.
    import shutil

    with open(sys.argv[1]) as f:
        pairs = json.load(f)
    tmp, env = stub_env()
    os.environ.update(env)  # the spawn children started below inherit it
    out = []
    try:
        for original, fixed in pairs:
            report = {}
            for key, path in (("original", original), ("fixed", fixed)):
                report[key] = {"main": main_in_fresh_interpreter(path, env), "child": in_spawn_child(path)}
            out.append(report)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out))
