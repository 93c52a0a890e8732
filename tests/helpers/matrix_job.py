"""Real torch / Lightning jobs for the launcher x situation matrix (needs the managed venv).

usage: matrix_job.py LAUNCHER PORT

Starts a healthy 2-rank CPU (gloo) job with LAUNCHER on PORT. Every rank that comes up prints
`UP rank=R pid=P` once it passed a barrier, then waits until killed. The test starts this in its
own process group and kills the group (and every descendant).

Launchers:
  mp-spawn           torch.multiprocessing.spawn; MASTER_ADDR/MASTER_PORT set in os.environ of
                     the parent before it spawns (its children carry them)
  mp-spawn-inner     the PyTorch tutorial shape: each spawned function sets MASTER_* itself
  ddp-spawn          Lightning Trainer(strategy="ddp_spawn")
  ddp-notebook       Lightning Trainer(strategy="ddp_notebook") (fork children)
  shell-env          srun/job-script shape: RANK=r ... bash -c "python rank; true" per rank
  exec-env           `env RANK=r ... python rank` per rank (env execs the rank)
"""

import os
import subprocess
import sys
import time
from datetime import timedelta


def up(rank):
    os.write(1, f"UP rank={rank} pid={os.getpid()}\n".encode())


def forever():
    while True:
        time.sleep(3600)


def spawned(rank, world, port, inner):
    if inner:
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(port)
    import torch.distributed as dist

    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=900))
    dist.barrier()
    up(rank)
    forever()


def env_rank():
    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=timedelta(seconds=900))
    dist.barrier()
    up(dist.get_rank())
    forever()


if len(sys.argv) > 1 and sys.argv[1].startswith("ddp-"):
    # At module level: ddp_spawn pickles the module for its spawn children.
    import lightning as L
    import torch

    class Waits(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def on_train_start(self):
            self.trainer.strategy.barrier()
            up(self.global_rank)
            forever()

        def training_step(self, batch, _):
            return self.layer(batch[0]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)


def trainer(strategy, port):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    from torch.utils.data import DataLoader, TensorDataset

    data = DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4)
    t = L.Trainer(accelerator="cpu", devices=2, strategy=strategy, max_epochs=1, logger=False,
                  enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    t.fit(Waits(), data)


def env_launch(port, wrap):
    me = [sys.executable, os.path.abspath(__file__), "rank", str(port)]
    kids = []
    for r in (0, 1):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(r),
                   LOCAL_RANK=str(r), WORLD_SIZE="2", SLURM_JOB_ID="4243", SLURM_PROCID=str(r))
        if wrap == "shell":
            cmd = ["bash", "-c", " ".join(me) + "; true"]
        else:
            cmd = ["env", f"RANK={r}"] + me
        kids.append(subprocess.Popen(cmd, env=env))
    forever()


def main():
    launcher, port = sys.argv[1], int(sys.argv[2])
    if launcher in ("mp-spawn", "mp-spawn-inner"):
        import torch.multiprocessing as mp

        inner = launcher == "mp-spawn-inner"
        if not inner:
            os.environ["MASTER_ADDR"] = "127.0.0.1"
            os.environ["MASTER_PORT"] = str(port)
        mp.spawn(spawned, args=(2, port, inner), nprocs=2)
    elif launcher == "ddp-spawn":
        trainer("ddp_spawn", port)
    elif launcher == "ddp-notebook":
        trainer("ddp_notebook", port)
    elif launcher == "shell-env":
        env_launch(port, "shell")
    elif launcher == "exec-env":
        env_launch(port, "env")
    elif launcher == "rank":
        env_rank()
    else:
        raise SystemExit(f"unknown launcher {launcher}")


if __name__ == "__main__":
    main()
