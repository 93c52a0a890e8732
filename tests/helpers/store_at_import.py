"""A rank whose script starts the rendezvous store at import time, and a spawn child that
re-imports it and connects to that store as a second copy of the rank (D001), for doctor's
tests (needs torch). The module-level `dist.TCPStore(...)` is the line `doctor scan` flags.

usage: store_at_import.py PORT

Prints READY once the child is connected, then keeps both until killed (the test kills the
process group).
"""

import multiprocessing as mp
import os
import sys
import time

import torch.distributed as dist

PORT = int(os.environ.get("MASTER_PORT") or sys.argv[1])
store = dist.TCPStore("127.0.0.1", PORT, 2, os.environ.get("STORE_OWNER") is None, wait_for_workers=False)


def child(connected):
    # The module-level store above connected while this child imported the script.
    connected.set()
    time.sleep(3600)


if __name__ == "__main__":
    os.environ["STORE_OWNER"] = str(os.getpid())
    ctx = mp.get_context("spawn")
    connected = ctx.Event()
    p = ctx.Process(target=child, args=(connected,))
    p.start()
    if not connected.wait(120):
        sys.exit("the spawn child did not connect")
    print("READY", flush=True)
    p.join()
