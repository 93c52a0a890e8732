"""Plain PyTorch DDP under torchrun, init_process_group at module level (the bug).

Started as `python -m torch.distributed.run --nproc-per-node N --master-port PORT
torchrun_buggy.py --ctx CTX`. torchrun's agent hosts the rendezvous store and each rank gets
RANK, LOCAL_RANK, WORLD_SIZE, MASTER_PORT and TORCHELASTIC_USE_AGENT_STORE=True. A spawn or
forkserver DataLoader worker re-imports this file and calls init_process_group again with the
rank's identity: it does not bind the port (the agent owns it) but joins the store as a second
copy of the same rank. See `doctor repro --list` for what was measured.

Usage: torchrun --nproc-per-node 2 torchrun_buggy.py --ctx spawn|fork|forkserver [--accelerator cpu|cuda]
"""
import argparse
import hashlib
import json
import os
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--ctx", default="spawn", choices=["spawn", "fork", "forkserver"])
    p.add_argument("--accelerator", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--epochs", type=int, default=2)
    return p.parse_args()


ARGS = parse_args()
dist.init_process_group("nccl" if ARGS.accelerator == "cuda" else "gloo")  # BUG: runs again in spawn/forkserver children


def weights_digest(model):
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def train(args):
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cpu")
    if args.accelerator == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)
    x = torch.randn(256, 16, generator=gen)
    y = (x[:, :1] * 2.0 - x[:, 1:2]).clone()
    dataset = TensorDataset(x, y)
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False)
    loader = DataLoader(
        dataset,
        batch_size=32,
        sampler=sampler,
        num_workers=1,
        multiprocessing_context=args.ctx,
    )
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1)).to(device)
    model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    loss = torch.tensor(0.0)
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(xb), yb)
            loss.backward()
            optimizer.step()
    result = {
        "rank": rank,
        "world_size": world,
        "loss": round(float(loss.detach().cpu()), 6),
        "digest": weights_digest(model.module),
    }
    # One write(2) per line, so lines of concurrent ranks never interleave.
    line = "DOCTOR_RESULT " + json.dumps(result, sort_keys=True) + "\n"
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), line.encode())
    dist.destroy_process_group()


if __name__ == "__main__":
    train(ARGS)
