"""The training program of the multi-node test bed (scripts/testbed/cluster.sh): one gloo
all_reduce across every rank torchrun started, READY on stdout, then it stays up (a running
job) until the test bed ends the node. `store PORT` instead plays a leftover rank of an earlier
job: a TCPStore server on 0.0.0.0:PORT, as rank 0 of that job left it."""

import os
import sys
import time


def main():
    if sys.argv[1:2] == ["store"]:
        from torch.distributed import TCPStore

        store = TCPStore("0.0.0.0", int(sys.argv[2]), 2, True, wait_for_workers=False)
        print("READY store", flush=True)
        time.sleep(600)
        return store
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    t = torch.ones(1)
    dist.all_reduce(t)
    print(f"READY rank {dist.get_rank()} of {dist.get_world_size()} sum {int(t.item())}", flush=True)
    time.sleep(600)


if __name__ == "__main__":
    main()
