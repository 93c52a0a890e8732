"""Rank programs for tests/run_cells.rs (what `doctor run` states per situation).

usage:
  run_cells.py train       init_process_group(gloo) from the environment, then exit 0
  run_cells.py sleepy      init_process_group(gloo), print `UP rank=R pid=P`, wait until killed
  run_cells.py listen PORT a foreign holder: no rank environment, listens on PORT, prints READY

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
    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    if mode == "sleepy":
        print(f"UP rank={dist.get_rank()} pid={os.getpid()}", flush=True)
        forever()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
