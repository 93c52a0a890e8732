"""Real processes and sockets for doctor's everyday verdicts (stdlib only).

usage: verdicts.py SITUATION PORT

Prints `PIDS k=v ...` and READY once the situation stands, then keeps it until killed. The test
starts this in its own process group and kills the group.

Situations:
  subprocess-launcher  one Python parent starts RANK=0 and RANK=1 (WORLD_SIZE=3) as plain
                       subprocesses; rank 0 hosts a store on PORT, rank 1 connects to it
  srun-like            as srun/slurmstepd start ranks: each rank has its own parent (a step
                       daemon), all share SLURM_JOB_ID and the rendezvous
  foreign-listener     a program that is no training job listens on PORT and has accepted a
                       connection there
  wanting-rank         a rank 0 with MASTER_PORT=PORT in its environment that does not hold it
  bind-rank            a rank 0 that binds PORT for its store and exits (fails if it is taken)
  foreign-outgoing     a program that is no training job has an outgoing connection whose
                       local port is PORT
"""

import os
import socket
import subprocess
import sys


# The socket helpers shared with situations.py (this folder is on sys.path: the script's own).
from situations import forever, listen, outgoing_from, ready
from situations import connect as _connect


def connect(port, retries=200):
    return _connect(port, retries)


def wait_ready(p):
    for line in p.stdout:
        if line.strip() == "READY":
            return
    raise SystemExit("helper child did not become ready")


def rank_env(port, rank, world, **extra):
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
               LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    env.update({k: str(v) for k, v in extra.items()})
    return env


def store_rank(port):
    """A rank as torch's TCPStore makes it: rank 0 listens and connects to itself; others connect."""
    conns = []
    if os.environ["RANK"] == "0":
        server = listen(port)
        conns.append(connect(port))
        conns.append(server.accept()[0])
    else:
        conns.append(connect(port))
    ready(rank=os.getpid())
    if os.environ["RANK"] == "0":
        server.settimeout(None)
        while True:
            conns.append(server.accept()[0])
    forever()


def main():
    situation, port = sys.argv[1], int(sys.argv[2])
    me = [sys.executable, os.path.abspath(__file__)]

    if situation == "rank":
        store_rank(port)

    if situation == "subprocess-launcher":
        kids = []
        for r in (0, 1):
            k = subprocess.Popen(me + ["rank", str(port)], env=rank_env(port, r, 3), stdout=subprocess.PIPE, text=True)
            wait_ready(k)
            kids.append(k)
        ready(launcher=os.getpid(), rank0=kids[0].pid, rank1=kids[1].pid)
        forever()

    if situation == "step":  # a slurmstepd stand-in: starts one rank with its task environment
        r = int(sys.argv[3])
        env = rank_env(port, r, 2, SLURM_PROCID=r, SLURM_STEP_ID="0")
        k = subprocess.Popen(me + ["rank", str(port)], env=env, stdout=subprocess.PIPE, text=True)
        wait_ready(k)
        print(f"RANKPID {k.pid}", flush=True)
        ready()
        forever()

    if situation == "srun-like":
        steps, ranks = [], []
        for r in (0, 1):
            env = dict(os.environ, SLURM_JOB_ID="4242")
            s = subprocess.Popen(me + ["step", str(port), str(r)], env=env, stdout=subprocess.PIPE, text=True)
            for line in s.stdout:
                if line.startswith("RANKPID "):
                    ranks.append(int(line.split()[1]))
                if line.strip() == "READY":
                    break
            steps.append(s)
        ready(step0=steps[0].pid, step1=steps[1].pid, rank0=ranks[0], rank1=ranks[1])
        forever()

    if situation == "idle":  # a rank that never got its port
        ready(rank=os.getpid())
        forever()

    if situation == "wanting-rank":
        # A rank 0 started with MASTER_PORT=PORT in its environment; it could not bind the port.
        k = subprocess.Popen(me + ["idle", str(port)], env=rank_env(port, 0, 2), stdout=subprocess.PIPE, text=True)
        wait_ready(k)
        ready(rank=k.pid)
        forever()

    if situation == "bind-rank":
        # A rank 0 hosting its store on PORT: the bind fails when someone else holds the port.
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="2")
        store = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        store.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        store.bind(("127.0.0.1", port))
        store.listen(16)
        raise SystemExit(0)

    if situation == "foreign-listener":
        server = listen(port)
        client = connect(port)
        conn = server.accept()[0]
        ready(server=os.getpid())
        forever()

    if situation == "foreign-outgoing":
        held = outgoing_from(port)  # noqa: F841 (kept open until killed)
        ready(client=os.getpid())
        forever()

    raise SystemExit(f"unknown situation {situation}")


if __name__ == "__main__":
    main()
