"""Stdlib-only stand-in for a training job, used by doctor's supervision tests.

Usage: python tree.py MODE PIDFILE
  hang    the launcher starts a child rank and a daemon (double fork + setsid), then all sleep forever
  orphan  the launcher starts a child rank (which starts its own worker) and dies at once with
          exit 1, leaving the child rank re-parented (the orphan pattern of a failed rank 0)
  ok      binds MASTER_PORT like a rank-0 store, then exits 0
Every process appends "PID ROLE" to PIDFILE so the test can check that none survives.
"""
import os
import socket
import subprocess
import sys
import time


def note(pidfile, role):
    with open(pidfile, "a") as f:
        f.write(f"{os.getpid()} {role}\n")


def sleep_forever():
    while True:
        time.sleep(1)


def main():
    mode, pidfile = sys.argv[1], sys.argv[2]
    if mode == "child":
        note(pidfile, "child")
        # The child rank has a worker of its own.
        subprocess.Popen([sys.executable, __file__, "worker", pidfile])
        sleep_forever()
    if mode == "worker":
        note(pidfile, "worker")
        sleep_forever()
    if mode == "daemon":
        # Double fork and setsid: leaves the session and the parent chain.
        if os.fork() > 0:
            os._exit(0)
        os.setsid()
        if os.fork() > 0:
            os._exit(0)
        note(pidfile, "daemon")
        sleep_forever()
    note(pidfile, "launcher")
    if mode == "ok":
        port = int(os.environ["MASTER_PORT"])
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
        print("DOCTOR_RESULT " + '{"rank": 0, "digest": "x"}', flush=True)
        return 0
    subprocess.Popen([sys.executable, __file__, "child", pidfile])
    if mode == "hang":
        subprocess.Popen([sys.executable, __file__, "daemon", pidfile])
        sleep_forever()
    if mode == "orphan":
        time.sleep(0.5)
        print("RuntimeError: rank 0 failed on purpose", file=sys.stderr, flush=True)
        os._exit(1)
    return 2


if __name__ == "__main__":
    sys.exit(main())
