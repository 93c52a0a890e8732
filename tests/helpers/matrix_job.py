"""Real torch / Lightning jobs for the launcher x situation matrix (needs the managed venv).

usage: matrix_job.py LAUNCHER PORT [WORLD [STARTED [STOP]]]

Starts a 2-rank CPU (gloo) job with LAUNCHER on PORT. Every rank that comes up prints
`UP rank=R pid=P port=MASTER_PORT` once it passed a barrier (or, with a rank missing, once its
store connection is made), then waits until killed. The launcher prints `LAUNCHER pid=P` (the
process a "launcher killed" situation SIGKILLs). The test starts this in its own process group,
drives the situations with signals, and kills every process it saw (group and descendants, and
the ranks a killed launcher orphaned).

Situations a live rank makes on a signal (one job serves several cells in turn):
  SIGUSR1   the rank starts a spawn-context child that runs the rank's own
            `init_process_group(...)` again, as a DataLoader worker re-running a module-level
            launch does; the child prints `DUP pid=P` and connects to the rendezvous port (rank 1's
            child connects to the store as a client and waits there)

Launchers:
  torchrun-static    torchrun --nnodes 1 --nproc-per-node 2 --master-port PORT (static rendezvous;
                     the agent hosts the store)
  torchrun-c10d      torchrun --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:PORT
  torchrun-standalone  torchrun --standalone (the agent picks the port; PORT unused)
  torch-run-module   python -m torch.distributed.run --nproc-per-node 2 --master-port PORT
  accelerate         accelerate launch --multi_gpu --num_processes 2 --main_process_port PORT
                     (CPU: accelerate hands the ranks to torch.distributed.run in its own process)
  trainer-ddp        Lightning Trainer(strategy="ddp") (Lightning's subprocess launcher; rank 0 is
                     the script, MASTER_PORT set in os.environ by the script)
  fabric             Lightning Fabric(strategy="ddp"), launched as `MASTER_PORT=PORT python script`
  fabric-picked      Fabric with no MASTER_PORT anywhere: Lightning picks a port (PORT unused)
  subprocess         a plain launcher: Popen of RANK=r WORLD_SIZE=WORLD python rank for r < STARTED;
                     rank STOP stops itself (SIGSTOP) before it joins; MASTER_ADDR is
                     $MATRIX_MASTER_ADDR when set (an address of no host here: the ranks wait)
  mp-spawn           torch.multiprocessing.spawn; MASTER_ADDR/MASTER_PORT set in os.environ of the
                     parent before it spawns (its children carry them)
  mp-spawn-inner     the PyTorch tutorial shape: each spawned function sets MASTER_* itself
  mp-forkserver      torch.multiprocessing.start_processes(start_method="forkserver"): the ranks
                     are children of the forkserver the script started
  ddp-spawn          Lightning Trainer(strategy="ddp_spawn")
  ddp-notebook       Lightning Trainer(strategy="ddp_notebook") (fork children)
  shell-env          srun/job-script shape: RANK=r ... bash -c "python rank; true" per rank
  exec-env           `env RANK=r ... python rank` per rank (env execs the rank)
  direct-rank        no launcher: rank 0 of WORLD alone, this process exec'd into it
"""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

HERE = os.path.abspath(__file__)
TIMEOUT = timedelta(seconds=900)


def say(line):
    sys.stdout.flush()
    os.write(1, (line + "\n").encode())


def forever():
    while True:
        time.sleep(3600)


def dup_init(rank, world):
    """What a spawn child re-running the module-level launch does: init again, same identity."""
    say(f"DUP pid={os.getpid()} rank={rank}")
    import torch.distributed as dist

    try:
        dist.init_process_group("gloo", rank=rank, world_size=world, timeout=TIMEOUT)
    except Exception as e:  # noqa: BLE001 - the live situation is what matters; say what happened
        say(f"DUPFAILED pid={os.getpid()} {type(e).__name__}")
    forever()


def serve(rank, world):
    """A live rank: says it is up, then makes the situations it is signalled for."""
    import multiprocessing as mp

    kids = []

    def on_usr1(_sig, _frame):
        p = mp.get_context("spawn").Process(target=dup_init, args=(rank, world), daemon=False)
        p.start()
        kids.append(p)

    signal.signal(signal.SIGUSR1, on_usr1)
    say(f"UP rank={rank} pid={os.getpid()} port={os.environ.get('MASTER_PORT', '')}")
    forever()


def spawned(rank, world, port, inner):
    if inner:
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(port)
    import torch.distributed as dist

    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=TIMEOUT)
    dist.barrier()
    serve(rank, world)


def env_rank():
    if os.environ.get("DOCTOR_STOP_SELF") == "1":
        os.kill(os.getpid(), signal.SIGSTOP)
    import torch.distributed as dist

    world = int(os.environ["WORLD_SIZE"])
    rank = int(os.environ["RANK"])
    if os.environ.get("MATRIX_PARTIAL") == "1":
        # A rank of a job whose world never completes: it waits in init_process_group (the
        # missing-rank situation); the launcher's PIDS line names it.
        dist.init_process_group("gloo", timeout=TIMEOUT)
        forever()
    dist.init_process_group("gloo", timeout=TIMEOUT)
    dist.barrier()
    serve(rank, world)


if len(sys.argv) > 1 and sys.argv[1] in ("ddp-spawn", "ddp-notebook", "trainer-ddp"):
    # At module level: ddp_spawn pickles the module for its spawn children.
    import lightning as L
    import torch

    class Waits(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def on_train_start(self):
            self.trainer.strategy.barrier()
            serve(self.global_rank, self.trainer.world_size)

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
    if t.global_rank == 0:
        say(f"LAUNCHER pid={os.getpid()}")
    t.fit(Waits(), data)


def fabric(port):
    if port and os.environ.get("MASTER_PORT") != str(port):
        # The user's shape: `MASTER_PORT=P python train.py` (the port is in the exec environment).
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        os.execve(sys.executable, [sys.executable, HERE, "fabric", str(port)], env)
    import lightning as L

    f = L.Fabric(accelerator="cpu", devices=2, strategy="ddp")
    if os.environ.get("LOCAL_RANK", "0") == "0":
        say(f"LAUNCHER pid={os.getpid()}")
    f.launch()
    f.barrier()
    serve(f.global_rank, f.world_size)


def env_launch(port, wrap, world=2, started=2, stop=-1):
    me = [sys.executable, HERE, "rank", str(port)]
    kids = []
    for r in range(started):
        # MATRIX_MASTER_ADDR: an address that is not this host's (the addr-not-local situation).
        addr = os.environ.get("MATRIX_MASTER_ADDR", "127.0.0.1")
        env = dict(os.environ, MASTER_ADDR=addr, MASTER_PORT=str(port), RANK=str(r),
                   LOCAL_RANK=str(r), WORLD_SIZE=str(world))
        if started < world or addr != "127.0.0.1":
            env["MATRIX_PARTIAL"] = "1"
        if r == stop:
            env["DOCTOR_STOP_SELF"] = "1"
        if wrap == "shell":
            env.update(SLURM_JOB_ID="4243", SLURM_PROCID=str(r))
            cmd = ["bash", "-c", " ".join(me) + "; true"]
        elif wrap == "env":
            env.update(SLURM_JOB_ID="4243", SLURM_PROCID=str(r))
            cmd = ["env", f"RANK={r}"] + me
        else:
            cmd = me
        kids.append(subprocess.Popen(cmd, env=env))
    say("PIDS " + " ".join(f"rank{r}={k.pid}" for r, k in enumerate(kids)))
    forever()


def torchrun_cmd(launcher, port):
    prog = [HERE, "rank", str(port)]
    if launcher == "torchrun-static":
        return [os.path.join(os.path.dirname(sys.executable), "torchrun"), "--nnodes", "1",
                "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port",
                str(port)] + prog
    if launcher == "torchrun-c10d":
        return [os.path.join(os.path.dirname(sys.executable), "torchrun"), "--nnodes", "1",
                "--nproc-per-node", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint",
                f"127.0.0.1:{port}", "--rdzv-id", f"matrix{port}"] + prog
    if launcher == "torchrun-standalone":
        return [os.path.join(os.path.dirname(sys.executable), "torchrun"), "--standalone",
                "--nproc-per-node", "2"] + prog
    if launcher == "torch-run-module":
        return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node",
                "2", "--master-addr", "127.0.0.1", "--master-port", str(port)] + prog
    if launcher == "accelerate":
        return [os.path.join(os.path.dirname(sys.executable), "accelerate"), "launch", "--multi_gpu",
                "--num_processes", "2", "--num_machines", "1", "--main_process_ip", "127.0.0.1",
                "--main_process_port", str(port), "--mixed_precision", "no", "--dynamo_backend",
                "no"] + prog
    return None


def main():
    launcher, port = sys.argv[1], int(sys.argv[2])
    extra = [int(x) for x in sys.argv[3:]]
    if launcher in ("mp-spawn", "mp-spawn-inner", "mp-forkserver", "ddp-spawn", "ddp-notebook"):
        # Started as a job script starts it (`python train.py &` in a non-interactive shell:
        # SIGINT ignored, inherited by the children). torch's spawn and fork children ask for
        # SIGINT on their parent's death (PR_SET_PDEATHSIG) and die of it otherwise, unless they
        # are blocked in a collective; this way they live on when the launcher is killed.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    cmd = torchrun_cmd(launcher, port)
    if cmd is not None:
        # The launcher is this process (exec): the test's pid for it is the agent's.
        say(f"LAUNCHER pid={os.getpid()}")
        os.execv(cmd[0], cmd)
    if launcher in ("mp-spawn", "mp-spawn-inner"):
        import torch.multiprocessing as mp

        say(f"LAUNCHER pid={os.getpid()}")
        inner = launcher == "mp-spawn-inner"
        if not inner:
            os.environ["MASTER_ADDR"] = "127.0.0.1"
            os.environ["MASTER_PORT"] = str(port)
        mp.spawn(spawned, args=(2, port, inner), nprocs=2)
    elif launcher == "mp-forkserver":
        import torch.multiprocessing as mp

        say(f"LAUNCHER pid={os.getpid()}")
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(port)
        mp.start_processes(spawned, args=(2, port, False), nprocs=2, start_method="forkserver")
    elif launcher == "ddp-spawn":
        say(f"LAUNCHER pid={os.getpid()}")
        trainer("ddp_spawn", port)
    elif launcher == "ddp-notebook":
        say(f"LAUNCHER pid={os.getpid()}")
        trainer("ddp_notebook", port)
    elif launcher == "trainer-ddp":
        trainer("ddp", port)
    elif launcher == "fabric":
        fabric(port)
    elif launcher == "fabric-picked":
        fabric(0)
    elif launcher in ("shell-env", "exec-env", "subprocess"):
        say(f"LAUNCHER pid={os.getpid()}")
        wrap = {"shell-env": "shell", "exec-env": "env", "subprocess": None}[launcher]
        env_launch(port, wrap, *extra)
    elif launcher == "direct-rank":
        # No launcher: this process becomes rank 0 of a world of WORLD (default 2) by exec, as
        # `RANK=0 WORLD_SIZE=2 ... python train.py` typed at a prompt (or as doctor run's command).
        world = extra[0] if extra else 2
        say(f"PIDS rank0={os.getpid()}")
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0",
                   LOCAL_RANK="0", WORLD_SIZE=str(world), MATRIX_PARTIAL="1")
        os.execve(sys.executable, [sys.executable, HERE, "rank", str(port)], env)
    elif launcher == "rank":
        env_rank()
    else:
        raise SystemExit(f"unknown launcher {launcher}")


if __name__ == "__main__":
    main()
