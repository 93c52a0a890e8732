"""One node's processes for the multi-node tests of `doctor merge` (stdlib only).

usage: multinode.py rank PORT     a rank: RANK=0 listens on 0.0.0.0:PORT (the store), any other
                                  rank connects to MASTER_ADDR:PORT
       multinode.py listen PORT   a process of some other program that holds PORT
       multinode.py idle PORT     a rank that holds no socket yet (waiting, misconfigured)

Prints READY once its socket stands, then sleeps until killed (the test kills its process group).
Extra arguments are ignored (the tests put secrets there).
"""

import os
import socket
import sys
import time


def main():
    what, port = sys.argv[1], int(sys.argv[2])
    keep = []
    if what == "idle":
        pass
    elif what == "listen" or (what == "rank" and os.environ.get("RANK") == "0"):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(16)
        keep.append(s)
    else:
        addr = os.environ["MASTER_ADDR"]
        for _ in range(200):
            try:
                keep.append(socket.create_connection((addr, port), timeout=1))
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise SystemExit(f"cannot connect to {addr}:{port}")
    print(f"PIDS me={os.getpid()}", flush=True)
    print("READY", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
