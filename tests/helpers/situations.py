"""Builds real rendezvous-port situations for doctor's tests (stdlib only).

usage: situations.py SITUATION PORT

Prints READY (and the pids that matter as `PIDS k=v ...`) once the situation stands, then keeps
it until killed. The test starts this in its own process group and kills the group.
"""

import multiprocessing as mp
import os
import socket
import subprocess
import sys
import time


def listen(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(16)
    return s


def connect(port, retries=100):
    for _ in range(retries):
        try:
            return socket.create_connection(("127.0.0.1", port))
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"cannot connect to {port}")


def outgoing_from(port):
    """An outgoing connection whose local port is `port` (to a listener of our own on another
    port), with its accepted end; nobody listens on `port`."""
    server = listen(0)
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.bind(("127.0.0.1", port))
    c.connect(server.getsockname())
    return server, c, server.accept()[0]


def ready(**pids):
    print("PIDS " + " ".join(f"{k}={v}" for k, v in pids.items()), flush=True)
    print("READY", flush=True)


def forever():
    while True:
        time.sleep(3600)


def spawn_client(port, q):
    # A spawn child: carries the parent's os.environ (the rank identity) and connects to the store.
    c = connect(port)
    q.put(os.getpid())
    forever()


def rank_env(port, local_rank, **extra):
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_RANK=str(local_rank), WORLD_SIZE="2")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def main():
    situation, port = sys.argv[1], int(sys.argv[2])
    me = [sys.executable, os.path.abspath(__file__)]

    if situation == "d001":
        # Lightning-style rank 0: identity set in os.environ after exec, store listening, then a
        # spawn child (a DataLoader worker re-running the script) connects as a second rank 0.
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_RANK="0", WORLD_SIZE="2", NODE_RANK="0")
        store = listen(port)
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        child = ctx.Process(target=spawn_client, args=(port, q), daemon=True)
        child.start()
        conns = [store.accept()[0]]
        ready(rank=os.getpid(), child=q.get())
        forever()

    if situation == "rank":  # helper for others: an explicit rank listening (or not) on the port
        if sys.argv[3] in ("listen", "store"):
            store = listen(port)
        if sys.argv[3] in ("store", "client"):
            # A TCPStore client: rank 0 connects to its own store too.
            client = connect(port)
        ready(rank=os.getpid())
        forever()

    if situation == "d009":
        # A job of WORLD_SIZE=3 whose rank 2 never starts: ranks 0 (hosting the store) and 1
        # are connected to the store and wait for it.
        r0 = subprocess.Popen(me + ["rank", str(port), "store"], env=rank_env(port, 0, RANK=0, WORLD_SIZE=3),
                              stdout=subprocess.PIPE, text=True)
        wait_ready(r0)
        r1 = subprocess.Popen(me + ["rank", str(port), "client"], env=rank_env(port, 1, RANK=1, WORLD_SIZE=3),
                              stdout=subprocess.PIPE, text=True)
        wait_ready(r1)
        ready(rank0=r0.pid, rank1=r1.pid)
        forever()

    if situation == "d002":
        # Job A (its own tree) holds the port; job B (another tree) wants the same port.
        a = subprocess.Popen(me + ["rank", str(port), "listen"], env=rank_env(port, 0, TORCHELASTIC_RUN_ID="job-a"),
                             stdout=subprocess.PIPE, text=True)
        wait_ready(a)
        b = subprocess.Popen(me + ["rank", str(port), "idle"], env=rank_env(port, 0, TORCHELASTIC_RUN_ID="job-b"),
                             stdout=subprocess.PIPE, text=True)
        wait_ready(b)
        ready(holder=a.pid, other=b.pid)
        forever()

    if situation == "d003":
        # A rank whose launcher died: the intermediate exits, the rank is re-parented.
        mid = subprocess.Popen(me + ["d003-mid", str(port)], env=rank_env(port, 1), stdout=subprocess.PIPE, text=True)
        line = mid.stdout.readline()
        mid.wait()
        orphan = int(line.split("=")[1])
        for _ in range(100):
            with open(f"/proc/{orphan}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) != mid.pid:
                    break
            time.sleep(0.05)
        ready(orphan=orphan)
        forever()

    if situation == "d003-mid":
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            store = listen(port)
            os.write(w, b"x")
            forever()
        os.read(r, 1)
        print(f"orphan={pid}", flush=True)
        os._exit(0)

    if situation == "d005":
        # An outgoing connection whose local port is the rendezvous port; nobody listens on it.
        held = outgoing_from(port)  # noqa: F841 (kept open until killed)
        ready(client=os.getpid())
        forever()

    if situation == "d006" and os.environ.get("LOCAL_RANK") == "1":
        ready(child=os.getpid())
        forever()

    if situation == "d006":
        # Lightning-style launcher (rank 0) that started two processes both claiming LOCAL_RANK=1.
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2")
        store = listen(port)
        # Same argv as the parent, as Lightning starts its ranks; the child knows itself by LOCAL_RANK.
        kids = [subprocess.Popen([sys.executable] + sys.argv, env=rank_env(port, 1), stdout=subprocess.PIPE, text=True)
                for _ in range(2)]
        for k in kids:
            wait_ready(k)
        ready(rank0=os.getpid(), a=kids[0].pid, b=kids[1].pid)
        forever()

    if situation == "fork-share":
        # A rank whose fork child inherits the listening socket: two holders of one socket.
        os.environ.update(MASTER_PORT=str(port))
        store = listen(port)
        pid = os.fork()
        if pid == 0:
            forever()
        ready(parent=os.getpid(), child=pid)
        forever()

    if situation == "zombie":
        # A rank whose finished child was never reaped.
        os.environ.update(MASTER_PORT=str(port))
        store = listen(port)
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        time.sleep(0.3)
        ready(rank=os.getpid(), zombie=pid)
        forever()

    if situation == "churn":
        # Processes that start and exit all the time, so doctor meets some mid-read.
        ready(parent=os.getpid())
        while True:
            kids = [subprocess.Popen(["sleep", "0.01"]) for _ in range(20)]
            for k in kids:
                k.wait()

    if situation == "time-wait":
        # The server side closes first, so TIME_WAIT lands on the rendezvous port; then nothing holds it.
        store = listen(port)
        c = connect(port)
        conn = store.accept()[0]
        conn.close()
        time.sleep(0.2)
        c.close()
        store.close()
        ready(server=os.getpid())
        forever()

    raise SystemExit(f"unknown situation {situation}")


def wait_ready(p):
    for line in p.stdout:
        if line.strip() == "READY":
            return
    raise SystemExit("helper child did not become ready")


if __name__ == "__main__":
    main()
