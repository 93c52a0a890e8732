"""Real torch / Lightning jobs for doctor's verdict tests (needs the managed venv).

usage:
  torch_job.py launch PORT WORLD N [STOP]   a plain subprocess launcher: starts ranks 0..N-1 with
                                            MASTER_ADDR/MASTER_PORT/RANK/WORLD_SIZE; rank STOP
                                            stops itself (SIGSTOP) before it joins
  torch_job.py rank                         one rank: init_process_group(gloo) from the environment
  torch_job.py ready                        a rank under torchrun: init, barrier, report, wait
  torch_job.py fabric                       Lightning Fabric, 2 CPU ranks, no MASTER_PORT set
  torch_job.py trainer                      Lightning Trainer, 2 CPU ranks, no MASTER_PORT set

Ranks that come up print `UP rank=R pid=P port=MASTER_PORT` and then wait until killed. The test
starts this in its own process group and kills the group.
"""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta


def up(rank):
    line = f"UP rank={rank} pid={os.getpid()} port={os.environ.get('MASTER_PORT', '')}\n"
    sys.stdout.flush()
    os.write(1, line.encode())


def forever():
    while True:
        time.sleep(3600)


def rank_main(barrier):
    if os.environ.get("DOCTOR_STOP_SELF") == "1":
        os.kill(os.getpid(), signal.SIGSTOP)
    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=timedelta(seconds=900))
    if barrier:
        dist.barrier()
    up(dist.get_rank())
    forever()


def launch(port, world, n, stop):
    me = [sys.executable, os.path.abspath(__file__), "rank"]
    kids = []
    for r in range(n):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(r),
                   LOCAL_RANK=str(r), WORLD_SIZE=str(world))
        if r == stop:
            env["DOCTOR_STOP_SELF"] = "1"
        kids.append(subprocess.Popen(me, env=env))
    print("PIDS " + " ".join(f"rank{r}={k.pid}" for r, k in enumerate(kids)), flush=True)
    print("READY", flush=True)
    forever()


def fabric_main():
    import lightning as L

    fabric = L.Fabric(accelerator="cpu", devices=2, strategy="ddp")
    fabric.launch()
    fabric.barrier()
    up(fabric.global_rank)
    forever()


def trainer_main():
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

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

    data = DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Waits(), data)


def main():
    mode = sys.argv[1]
    if mode == "launch":
        stop = int(sys.argv[5]) if len(sys.argv) > 5 else -1
        launch(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), stop)
    elif mode == "rank":
        rank_main(barrier=False)
    elif mode == "ready":
        rank_main(barrier=True)
    elif mode == "fabric":
        fabric_main()
    elif mode == "trainer":
        trainer_main()
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
