"""Rank programs for tests/run_cells.rs (what `doctor run` states per situation).

usage:
  run_cells.py train       init_process_group(gloo) from the environment, then exit 0
  run_cells.py sleepy      init_process_group(gloo), print `UP rank=R pid=P`, wait until killed
  run_cells.py listen PORT a foreign holder: no rank environment, listens on PORT, prints READY
  run_cells.py siblings PORT [orphan]
                           a plain launcher (no rendezvous environment of its own) starting rank 0
                           (listens on PORT) and rank 1 (idle) as siblings (stdlib only); with
                           `orphan` the launcher exits once they stand, orphaning them
  run_cells.py rank-listen / rank-idle   the ranks of `siblings`
  run_cells.py carriers PORT
                           rank 0 (listens) and rank 1 (idle) of a world of 2, and beside them
                           processes that only carry a rank's environment and are no Python rank:
                           `orted` (a copy of `sleep` so named, as OpenMPI's daemon inherits the
                           ranks' environment on a GPU box) and `bash -c "sleep ...; true"`

The tests start these in their own process groups and kill the groups.
"""

import os
import socket
import sys
import time
from datetime import timedelta


def forever():
    while True:
        time.sleep(3600)


def main():
    mode = sys.argv[1]
    if mode == "listen":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", int(sys.argv[2])))
        s.listen(16)
        print(f"PIDS holder={os.getpid()}", flush=True)
        print("READY", flush=True)
        forever()
    if mode == "rank-listen":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(os.environ["MASTER_PORT"])))
        s.listen(16)
        print("UP", flush=True)
        forever()
    if mode == "rank-idle":
        print("UP", flush=True)
        forever()
    if mode == "carriers":
        import shutil
        import subprocess
        import tempfile

        port = sys.argv[2]
        here = tempfile.mkdtemp(prefix="doctor-orted-")
        orted = os.path.join(here, "orted")
        shutil.copy(shutil.which("sleep"), orted)

        def env(r):
            return dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=port, RANK=str(r), LOCAL_RANK=str(r),
                        WORLD_SIZE="2", NODE_RANK="0")

        me = [sys.executable, os.path.abspath(__file__)]
        r0 = subprocess.Popen(me + ["rank-listen"], env=env(0), stdout=subprocess.PIPE, text=True)
        r1 = subprocess.Popen(me + ["rank-idle"], env=env(1), stdout=subprocess.PIPE, text=True)
        r0.stdout.readline()
        r1.stdout.readline()
        o = subprocess.Popen([orted, "3600"], env=env(0))
        sh = subprocess.Popen(["bash", "-c", "sleep 3600; true"], env=env(1))
        time.sleep(0.3)
        os.unlink(orted)
        os.rmdir(here)
        print(f"PIDS rank0={r0.pid} rank1={r1.pid} orted={o.pid} shell={sh.pid}", flush=True)
        print("READY", flush=True)
        forever()
    if mode == "siblings":
        import subprocess

        port = sys.argv[2]
        kids = []
        for r, what in enumerate(["rank-listen", "rank-idle"]):
            env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=port, RANK=str(r), LOCAL_RANK=str(r),
                       WORLD_SIZE="2")
            kids.append(subprocess.Popen([sys.executable, os.path.abspath(__file__), what], env=env,
                                         stdout=subprocess.PIPE, text=True))
        for k in kids:
            k.stdout.readline()
        print(f"PIDS launcher={os.getpid()} rank0={kids[0].pid} rank1={kids[1].pid}", flush=True)
        print("READY", flush=True)
        if sys.argv[3:] == ["orphan"]:
            time.sleep(0.5)  # the test reads READY, then the launcher goes
            os._exit(0)
        forever()
    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    if mode == "sleepy":
        print(f"UP rank={dist.get_rank()} pid={os.getpid()}", flush=True)
        forever()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
