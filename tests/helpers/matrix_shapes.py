"""Job shapes for the hostile neighbours of the launcher matrix (stdlib only, no torch): ranks
behind nested shells and exec wrappers, a rank whose forked helper inherits the store's socket,
spawn children of spawn children, the spawn ranks of a killed parent.

usage: matrix_shapes.py SHAPE PORT [PORT2]

A rank here is what doctor sees of a torch rank: the rendezvous environment (RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT, or only MASTER_* for spawn children), rank 0 listening on the port (the
store), the others connected to it. Prints `PIDS k=v ...` (the pids that matter) and READY once
the shape stands, then waits until killed. The test starts this in its own process group and
kills the group and every descendant.

Shapes:
  wrapped4       a plain launcher starts 4 ranks: rank 0 directly; rank 1 behind two nested
                 shells (`bash -c "bash -c 'python rank; true'; true"`); rank 2 behind
                 `env X=1 sh -c "exec python rank"` (exec: one process); rank 3 in the background
                 of a shell in a session of its own (`setsid bash -c "python rank & wait"`)
  fork-helper    a plain launcher starts 2 ranks; rank 0 forks a helper that inherits the
                 listening socket; PIDS launcher=... (the test kills it: the ranks are orphaned)
  grandchild     a plain launcher starts 2 ranks; rank 1 starts a spawn child that starts a spawn
                 child of its own, which connects to the store with rank 1's identity
  spawn3         an mp.spawn-like parent (MASTER_* in its os.environ) with 3 spawn children: child
                 0 listens and forks a helper that shares the socket, children 1 and 2 connect;
                 PIDS launcher=... (the test kills it)
  spawn-two      two mp.spawn-like parents in one process group (a script that starts two jobs),
                 on PORT and PORT2, 2 spawn children each; PIDS launcherA=... launcherB=...
"""

import multiprocessing as mp
import os
import socket
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)


def listen(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(64)
    return s


def connect(port):
    for _ in range(400):
        try:
            return socket.create_connection(("127.0.0.1", port))
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"cannot connect to {port}")


def say(line):
    sys.stdout.flush()
    os.write(1, (line + "\n").encode())


def forever():
    while True:
        time.sleep(3600)


def accept_all(store, held):
    import threading

    def loop():
        while True:
            held.append(store.accept()[0])

    threading.Thread(target=loop, daemon=True).start()


def rank_main(port):
    """A rank started with RANK in its environment: rank 0 hosts the store, the others join."""
    rank = int(os.environ["RANK"])
    held = []
    if rank == 0:
        store = listen(port)
        accept_all(store, held)
        if os.environ.get("SHAPE_FORK_HELPER") == "1":
            pid = os.fork()
            if pid == 0:
                # The helper (a logger, a watchdog): it inherits the store's listening socket.
                forever()
            say(f"HELPER pid={pid}")
    held.append(connect(port))
    if rank == 1 and os.environ.get("SHAPE_GRANDCHILD") == "1":
        ctx = mp.get_context("spawn")
        ctx.Process(target=spawn_middle, args=(port,), daemon=False).start()
    say(f"UP rank={rank} pid={os.getpid()}")
    forever()


def spawn_middle(port):
    ctx = mp.get_context("spawn")
    ctx.Process(target=spawn_leaf, args=(port,), daemon=False).start()
    say(f"MIDDLE pid={os.getpid()}")
    forever()


def spawn_leaf(port):
    # A DataLoader worker of a worker re-running the launch: rank 1's identity, to the store.
    c = connect(port)  # noqa: F841
    say(f"DUP pid={os.getpid()}")
    forever()


def spawned(i, port):
    """A spawn child of an mp.spawn-like parent: MASTER_* from the parent, no RANK."""
    held = []
    if i == 0:
        store = listen(port)
        accept_all(store, held)
        pid = os.fork()
        if pid == 0:
            forever()
        say(f"HELPER pid={pid}")
    held.append(connect(port))
    say(f"UP rank={i} pid={os.getpid()}")
    forever()


def spawn_parent(port, n):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    ctx = mp.get_context("spawn")
    kids = [ctx.Process(target=spawned, args=(i, port), daemon=False) for i in range(n)]
    for k in kids:
        k.start()
    forever()


def launch(port, world, extra=None, wrap=None):
    me = [sys.executable, HERE, "rank", str(port)]
    kids = []
    for r in range(world):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(r),
                   LOCAL_RANK=str(r), WORLD_SIZE=str(world), **(extra or {}))
        cmd = wrap(r, me) if wrap else me
        kids.append(subprocess.Popen(cmd, env=env))
    return kids


def main():
    shape, port = sys.argv[1], int(sys.argv[2])
    if shape == "rank":
        rank_main(port)
    say(f"LAUNCHER pid={os.getpid()}")
    if shape == "wrapped4":
        line = " ".join([sys.executable, HERE, "rank", str(port)])

        def wrap(r, me):
            if r == 1:
                return ["bash", "-c", f"bash -c '{line}; true'; true"]
            if r == 2:
                return ["env", "X=1", "sh", "-c", f"exec {line}"]
            if r == 3:
                return ["setsid", "bash", "-c", f"{line} & wait"]
            return me

        launch(port, 4, wrap=wrap)
    elif shape == "fork-helper":
        launch(port, 2, extra={"SHAPE_FORK_HELPER": "1"})
    elif shape == "grandchild":
        launch(port, 2, extra={"SHAPE_GRANDCHILD": "1"})
    elif shape == "spawn3":
        spawn_parent(port, 3)
    elif shape == "spawn-two":
        port2 = int(sys.argv[3])
        a = os.fork()
        if a == 0:
            say(f"LAUNCHER_A pid={os.getpid()}")
            spawn_parent(port, 2)
        b = os.fork()
        if b == 0:
            say(f"LAUNCHER_B pid={os.getpid()}")
            spawn_parent(port2, 2)
    else:
        raise SystemExit(f"unknown shape {shape}")
    forever()


if __name__ == "__main__":
    main()
