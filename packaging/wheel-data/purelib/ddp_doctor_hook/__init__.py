"""The `DDP_DOCTOR=1` hook of ddp-doctor.

`ddp_doctor_hook.pth` (installed next to this package in site-packages) imports this module in
every Python process whose environment has DDP_DOCTOR set (not empty, not "0", "false", "no" or
"off", in any case); without it nothing is imported. `arm()` wraps `sys.excepthook`,
`threading.excepthook` and multiprocessing's child bootstrap (a `Process` whose `run()` raises
never reaches an excepthook), and adds an audit hook that sees an uncaught exception even when
the program replaced `sys.excepthook` with its own. When a process is about to
die of a rendezvous failure (EADDRINUSE / DistNetworkError, the "bootstrapping phase"
RuntimeError, a rendezvous or store timeout), the hook asks `doctor ports --failed-pid` about
this process while the port's holder still runs, prints the diagnosis on stderr once per job
(a lock file created with O_EXCL in TMPDIR/ddp-doctor-UID, a 0700 directory of this user), and with DDP_DOCTOR_DIR writes one redacted `doctor report`
per node and job into that directory. Then the original hook runs: the same traceback, the same
exit status. It never makes things worse: any problem of its own is one `ddp-doctor:` line, the
whole hook is bounded in time (DDP_DOCTOR_TIMEOUT seconds, default 10) and leaves no process.
"""

import os
import sys

_armed = False

# Errors that mean "the rendezvous failed", in any torch version.
_TYPES = {
    "DistNetworkError",
    "DistStoreError",
    "RendezvousTimeoutError",
    "RendezvousConnectionError",
    "RendezvousClosedError",
    "RendezvousStateError",
    "RendezvousError",
}
_WORDS = (
    "EADDRINUSE",
    "Address already in use",
    "address already in use",
    "bootstrapping phase",
    "failed to bind",
    "failed to listen",
)
_NOT_PASSED = {
    "DDP_DOCTOR",
    "DDP_DOCTOR_DIR",
    "MASTER_ADDR",
    "MASTER_PORT",
    "RANK",
    "LOCAL_RANK",
    "GROUP_RANK",
    "NODE_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
}
_TIMEOUT_WORDS = ("Timed out", "timed out", "timeout")


def arm():
    """Install the hooks (once per process)."""
    global _armed
    if _armed:
        return
    _armed = True
    previous = sys.excepthook

    def excepthook(kind, value, tb):
        _guarded(kind, value, tb)
        previous(kind, value, tb)

    sys.excepthook = excepthook

    def audit(event, args):
        # A program that set its own sys.excepthook (replacing the one above): Python still
        # announces the uncaught exception before calling that hook.
        if event == "sys.excepthook" and args[0] is not excepthook:
            _guarded(args[1], args[2], args[3])

    try:
        sys.addaudithook(audit)
    except Exception:  # pragma: no cover - refused by an earlier audit hook
        pass
    try:
        import threading
    except Exception:  # pragma: no cover - a Python without threads
        return
    previous_thread = threading.excepthook

    def thread_excepthook(args):
        _guarded(args.exc_type, args.exc_value, args.exc_traceback)
        previous_thread(args)

    threading.excepthook = thread_excepthook
    _arm_multiprocessing()


def _arm_multiprocessing():
    """A `multiprocessing.Process` whose `run()` raises never reaches an excepthook: its
    bootstrap prints the traceback and exits 1. Look at the error there, then let it go on."""
    try:
        from multiprocessing import process
    except Exception:  # pragma: no cover
        return
    bootstrap = process.BaseProcess._bootstrap

    def _bootstrap(self, *args, **kwargs):
        run = self.run

        def guarded_run():
            try:
                return run()
            except Exception as e:
                _guarded(type(e), e, e.__traceback__)
                _hide_from_next_traceback(guarded_run.__code__)
                raise

        self.run = guarded_run
        return bootstrap(self, *args, **kwargs)

    process.BaseProcess._bootstrap = _bootstrap


def _hide_from_next_traceback(code):
    """The traceback the bootstrap prints next (`traceback.print_exc()`) is the one it would
    have printed without the hook: the frame of `code` is taken out of it."""
    import traceback

    original = traceback.print_exc

    def print_exc(*args, **kwargs):
        traceback.print_exc = original
        tb, prev = sys.exc_info()[2], None
        while tb is not None:
            if tb.tb_frame.f_code is code and prev is not None:
                prev.tb_next = tb.tb_next
                break
            prev, tb = tb, tb.tb_next
        return original(*args, **kwargs)

    traceback.print_exc = print_exc


_seen = set()


def _guarded(kind, value, tb):
    # One look per exception (a program's own hook may call the one it replaced).
    if id(value) in _seen:
        return
    _seen.add(id(value))
    try:
        if value is not None and is_rendezvous_failure(value):
            _diagnose(kind, value, tb)
    except BaseException as e:  # the original error must always follow
        _note("the hook failed (%s); the original error follows" % type(e).__name__)


def is_rendezvous_failure(exc):
    """Whether `exc` or an exception it was raised from is a rendezvous failure."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        name = type(exc).__name__
        module = type(exc).__module__ or ""
        text = str(exc)
        if name in _TYPES:
            return True
        if getattr(exc, "errno", None) == 98:  # EADDRINUSE on Linux
            return True
        if any(w in text for w in _WORDS):
            return True
        if module.startswith("torch") and any(w in text for w in _TIMEOUT_WORDS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _note(line):
    try:
        sys.stderr.write("ddp-doctor: %s\n" % line)
        sys.stderr.flush()
    except Exception:
        pass


def _job_key():
    """One key per job on this node: torchelastic's run directory (each torchrun worker is its
    own session), else the SLURM job step when this is an `srun` step (it runs once; the batch
    step and an `salloc` shell run many jobs, one after another), else the process group and
    its leader's start."""
    env = os.environ
    err = env.get("TORCHELASTIC_ERROR_FILE", "")
    if "/attempt_" in err:
        return "elastic-" + err.split("/attempt_")[0]
    step = env.get("SLURM_STEP_ID", "")
    # 4294967290 and up: SLURM's batch, extern and interactive steps (not one job each).
    if env.get("SLURM_JOB_ID") and step.isdigit() and int(step) < 4294967290:
        return "slurm-%s.%s" % (env["SLURM_JOB_ID"], step)
    pgid = os.getpgid(0)
    start = ""
    try:
        with open("/proc/%d/stat" % pgid) as f:
            start = f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        pass
    return "pgid-%d-%s" % (pgid, start)


def _private_dir():
    """TMPDIR/ddp-doctor-UID, made 0700 by this user; None when that name is taken by anything
    else (another user's directory, a link, a file: a shared /tmp is writable by everyone)."""
    import stat
    import tempfile

    uid = os.getuid()
    path = os.path.join(tempfile.gettempdir(), "ddp-doctor-%d" % uid)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o077:
        return None
    return path


def _first_once(key):
    """True for the first process of the job to get here (an O_EXCL lock file in a directory
    only this user can write). When there is no such directory, every process diagnoses: a
    repeated diagnosis is better than none."""
    import hashlib

    directory = _private_dir()
    if directory is None:
        _note("no private directory for the once-per-job lock in the temp dir: diagnosing anyway")
        return True
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = os.path.join(directory, "%s.lock" % digest)
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return False
    except OSError as e:
        _note("no lock file %s (%s): diagnosing anyway" % (path, e.strerror))
        return True
    os.write(fd, ("%d\n" % os.getpid()).encode())
    os.close(fd)
    return True


def _doctor():
    """The doctor binary: DDP_DOCTOR_BIN, else the one installed with this package, else PATH."""
    explicit = os.environ.get("DDP_DOCTOR_BIN")
    if explicit:
        return explicit
    import shutil
    import sysconfig

    here = os.path.join(sysconfig.get_path("scripts"), "doctor")
    if os.access(here, os.X_OK):
        return here
    return shutil.which("doctor")


def _run(argv, stdin_text, deadline):
    """Run doctor in a session of its own; kill that whole session at the deadline.
    Returns (exit code or None on timeout, stdout, stderr)."""
    import signal
    import subprocess
    import time

    # doctor must not look like a rank of the job itself (doctor reads identities from each
    # process's exec-time environment), nor arm this hook in the Python it may run.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _NOT_PASSED and not k.startswith("TORCHELASTIC_")
    }
    env["NO_COLOR"] = "1"
    p = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = p.communicate(stdin_text.encode(), timeout=max(0.1, deadline - time.monotonic()))
        return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        p.communicate()
        return None, "", ""
    finally:
        # Nothing left running: the session doctor led, whatever it started.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass


def _first_line(text):
    lines = [l for l in text.splitlines() if l.strip()]
    return lines[0] if lines else "no message"


_DEFAULT_TIMEOUT = 10.0


def _timeout():
    """DDP_DOCTOR_TIMEOUT in seconds: a finite number above 0, at most an hour; else the default
    with a note (the hook is always bounded in time)."""
    import math

    raw = os.environ.get("DDP_DOCTOR_TIMEOUT", "")
    if not raw.strip():
        return _DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0 or value > 3600:
        import json

        _note(
            "DDP_DOCTOR_TIMEOUT=%s is not a number of seconds between 0 and 3600: using %gs"
            % (json.dumps(raw), _DEFAULT_TIMEOUT)
        )
        return _DEFAULT_TIMEOUT
    return value


def _diagnose(kind, value, tb):
    import re
    import time
    import traceback

    limit = _timeout()
    deadline = time.monotonic() + limit
    key = _job_key()
    if not _first_once(key):
        return
    text = "".join(traceback.format_exception(kind, value, tb))
    doctor = _doctor()
    if not doctor:
        _note("DDP_DOCTOR is set but no `doctor` binary was found (pip install ddp-doctor); the original error follows")
        return
    pid = str(os.getpid())
    port = []
    if not re.search(r"port: ?\d+|:\d+ \(errno", text) and os.environ.get("MASTER_PORT", "").isdigit():
        port = ["--port", os.environ["MASTER_PORT"]]
    try:
        code, out, err = _run(
            [doctor, "--color", "never", "ports", "--failed-pid", pid, "--output-of", "-"] + port,
            text,
            deadline,
        )
    except OSError as e:
        _note("cannot run %s (%s); the original error follows" % (doctor, e.strerror))
        return
    if code is None:
        _note("doctor did not answer within %gs (DDP_DOCTOR_TIMEOUT); the original error follows" % limit)
        return
    if code not in (0, 1) or not out.strip():
        _note("doctor failed (exit %s: %s); the original error follows" % (code, _first_line(err)))
        return
    sys.stderr.write(
        "\nddp-doctor (DDP_DOCTOR=1): this process (pid %s) failed at the rendezvous; diagnosis:\n" % pid
    )
    sys.stderr.write(out)
    sys.stderr.write("\n")
    sys.stderr.flush()
    directory = os.environ.get("DDP_DOCTOR_DIR")
    if directory:
        _report(doctor, directory, key, pid, port, text, deadline)


def _report(doctor, directory, key, pid, port, text, deadline):
    """One redacted report of this node into `directory`: ddp-doctor-HOST-JOB-PID.yaml, written
    into a new temporary file of that directory (mkstemp: O_EXCL, mode 0600, never through a
    link someone left there), synced, then renamed: readers of a shared filesystem see the whole
    report or none."""
    import hashlib
    import re
    import socket
    import tempfile

    host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:64] or "host"
    job = os.environ.get("SLURM_JOB_ID") or hashlib.sha256(key.encode()).hexdigest()[:12]
    job = re.sub(r"[^A-Za-z0-9_.-]", "_", job)[:64]
    final = os.path.join(directory, "ddp-doctor-%s-%s-%s.yaml" % (host, job, pid))
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        _note("cannot create DDP_DOCTOR_DIR %s (%s): no report" % (directory, e.strerror))
        return
    fd, traceback_file = tempfile.mkstemp(prefix="ddp-doctor-tb-", suffix=".txt")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp = None
    try:
        code, out, err = _run(
            [doctor, "--color", "never", "-q", "report", "--format", "yaml",
             "--failed-pid", pid, "--output-of", traceback_file] + port,
            "",
            deadline,
        )
        if code is None:
            _note("doctor report did not finish in time (DDP_DOCTOR_TIMEOUT): no report")
            return
        if code not in (0, 1) or not out:
            _note("doctor report failed (exit %s: %s): no report" % (code, _first_line(err)))
            return
        fd, tmp = tempfile.mkstemp(prefix=".ddp-doctor-", suffix=".tmp", dir=directory)
        os.fchmod(fd, 0o644)  # redacted: readable like any report, by the ticket's people
        with os.fdopen(fd, "w") as f:
            f.write(out)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        tmp = None
        _note("report written to %s (merge the nodes' reports: doctor merge %s)" % (final, directory))
    except OSError as e:
        _note("cannot write the report into %s (%s)" % (directory, e.strerror))
    finally:
        for p in (traceback_file, tmp):
            if p:
                try:
                    os.unlink(p)
                except OSError:
                    pass
