"""Commands for `doctor run` tests (stdlib only). usage: run_cases.py CASE [ARGS...]

Every process it leaves behind writes its pid to $PIDFILE (one per line), so the test can check
by pid that `doctor run` removed them all.
"""

import os
import signal
import socket
import sys
import time


def note_pid():
    path = os.environ.get("PIDFILE")
    if path:
        with open(path, "a") as f:
            f.write(f"{os.getpid()}\n")


def listen(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


def main():
    case = sys.argv[1]
    if case == "daemon":
        # Double fork + setsid: the classic daemon that escapes its parent and process group.
        port = int(sys.argv[2])
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                s = listen(port)
                note_pid()
                time.sleep(3600)
            os._exit(0)
        time.sleep(0.5)
        print("parent exits", flush=True)
        return 0
    if case == "orphan":
        # The parent dies and leaves a child holding a port (the orphaned rank).
        port = int(sys.argv[2])
        if os.fork() == 0:
            s = listen(port)
            note_pid()
            time.sleep(3600)
        time.sleep(0.5)
        return 1
    if case == "exit":
        return int(sys.argv[2])
    if case == "signal":
        os.kill(os.getpid(), getattr(signal, sys.argv[2]))
        time.sleep(5)
        return 0
    if case == "wait-int":
        # Exits 42 when SIGINT arrives (forwarded by doctor), 0 if it never does.
        def on_int(*_):
            print("got SIGINT", flush=True)
            sys.exit(42)
        signal.signal(signal.SIGINT, on_int)
        note_pid()
        print("READY", flush=True)
        time.sleep(30)
        return 0
    if case == "spew":
        # More output than doctor keeps in memory, then a recognisable last line.
        total = int(sys.argv[2])
        chunk = b"x" * 1023 + b"\n"
        out = sys.stdout.buffer
        for _ in range(total // len(chunk)):
            out.write(chunk)
        out.write(b"LAST LINE\n")
        out.flush()
        return 0
    if case == "dup":
        # A listener and a fork child that binds the same port: EADDRINUSE in the child.
        port = int(sys.argv[2])
        s = listen(port)
        pid = os.fork()
        if pid == 0:
            t = socket.socket()
            try:
                t.bind(("127.0.0.1", port))
            except OSError as e:
                print(f"child: {e}", file=sys.stderr, flush=True)
                os._exit(3)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)
    if case == "two-collisions":
        # A fork child collides first on a library's fixed port (A), then on the rendezvous
        # port (B) and reports that one as torch does: the diagnosis is about B.
        a, b = int(sys.argv[2]), int(sys.argv[3])
        sa, sb = listen(a), listen(b)
        pid = os.fork()
        if pid == 0:
            for port in (a, b):
                try:
                    socket.socket().bind(("127.0.0.1", port))
                except OSError:
                    pass
            print(
                "torch.distributed.DistNetworkError: The server socket has failed to listen on any "
                f"local network address. port: {b}, useIpv6: false, code: -98, name: EADDRINUSE, "
                "message: address already in use",
                file=sys.stderr,
                flush=True,
            )
            os._exit(1)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)
    if case == "short-listener":
        # A process that listens for N ms and exits: does doctor see it?
        port, ms = int(sys.argv[2]), int(sys.argv[3])
        if os.fork() == 0:
            s = listen(port)
            time.sleep(ms / 1000)
            os._exit(0)
        os.wait()
        return 0
    raise SystemExit(f"unknown case {case}")


if __name__ == "__main__":
    sys.exit(main())
