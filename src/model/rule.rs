//! The registry of finding codes, for every kind of check: one [`Severity`] and one enum of
//! codes, [`Rule`] (runtime D, cluster M, static S), each with its page: what it means, why it
//! matters, the fix and a real example. The pages live here and only here, as the doc comments of
//! the `rules!` table (as ruff keeps a rule's page in its doc comment); `doctor explain CODE`
//! prints them and `docs/findings/CODE.md` is generated from them
//! (`DOCTOR_BLESS=1 cargo test --test explain`; the test fails while a page there is stale).
//! A new rule adds one entry to the table: its page, then code, name, severity and summary.

use serde::{Deserialize, Serialize};

/// How bad a finding is. Ordered from least to most severe: `Error` is the greatest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }

    /// Parse the contract's spelling; anything else is `info`.
    pub fn parse(s: &str) -> Severity {
        match s {
            "error" => Severity::Error,
            "warning" => Severity::Warning,
            _ => Severity::Info,
        }
    }

    /// Whether this severity makes a command exit 1.
    pub fn is_problem(self) -> bool {
        self >= Severity::Warning
    }
}

/// Declares [`Rule`] and its table: one line per code (code, name, default severity, summary).
macro_rules! rules {
    ($($(#[doc = $doc:literal])* $rule:ident, $name:literal, $severity:ident, $summary:literal;)*) => {
        /// One finding code, like ruff's `Rule`: runtime D, cluster M, static S. Its name, default
        /// severity, summary and doc page hang off it; documents spell it as its code ("D001").
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Rule {
            $($rule,)*
        }

        impl Rule {
            /// Every code doctor can report, in code order. Names and codes are a contract
            /// (docs/findings/).
            pub const ALL: &'static [Rule] = &[$(Rule::$rule,)*];

            /// The code as documents spell it: "D001".
            pub fn code(self) -> &'static str {
                match self {
                    $(Rule::$rule => stringify!($rule),)*
                }
            }

            /// The fixed kebab-case name: "duplicate-init".
            pub fn name(self) -> &'static str {
                match self {
                    $(Rule::$rule => $name,)*
                }
            }

            /// The severity a finding of this code has unless its rule says otherwise.
            pub fn severity(self) -> Severity {
                match self {
                    $(Rule::$rule => $severity,)*
                }
            }

            /// One line: what the code means.
            pub fn summary(self) -> &'static str {
                match self {
                    $(Rule::$rule => $summary,)*
                }
            }

            /// The page's Markdown as written in the table: each line keeps the space that
            /// follows `///` (see [`Rule::page`]).
            fn doc_lines(self) -> &'static str {
                match self {
                    $(Rule::$rule => concat!($($doc, "\n",)*),)*
                }
            }
        }
    };
}

use Severity::{Error, Info, Warning};

rules! {
    /// # D001 duplicate-init (error)
    ///
    /// **What.** A descendant of a rank that is not itself a rank — a `spawn` or `forkserver` child,
    /// a fork child, or a DataLoader worker — carries that rank's rendezvous identity
    /// (`MASTER_PORT`, `LOCAL_RANK`/`RANK`) and binds, tries to bind, or connects to the rendezvous
    /// port on a socket of its own (sockets inherited through `fork` do not count).
    ///
    /// **Why.** The training script calls `fabric.launch()` (or `init_process_group`, `trainer.fit`)
    /// at module level. A `spawn`/`forkserver` DataLoader worker re-imports the script as
    /// `__mp_main__`, sees the rank's environment, and launches again as that rank. Under Lightning's
    /// launcher, rank 0's copy tries to bind `MASTER_PORT` and dies with
    /// `DistNetworkError ... EADDRINUSE`; copies of other ranks connect to the store as a second rank
    /// (a hang). Under torchrun the agent hosts the store, so the copy connects instead of failing.
    /// Python 3.14 made `forkserver` the Linux default, so this appears without any code change.
    ///
    /// **How doctor sees it.** The worker's argv is the multiprocessing spawn/forkserver signature (or
    /// comm `pt_data_worker`), its nearest ancestor with role `rank` has the same `MASTER_PORT` and
    /// rank, and the worker holds its own TCP socket listening on or connected to that port. Lightning's
    /// rank 0 has no rank in its own `/proc/PID/environ` (it sets `os.environ` after exec); doctor
    /// infers it from the children it started (marked `*`). The transient form, a bind that fails and
    /// exits within a second, is caught by `doctor run`.
    ///
    /// **Fix.** Move the launch into `main()` under `if __name__ == "__main__":`:
    ///
    /// ```python
    /// def main():
    ///     fabric = L.Fabric(accelerator="cpu", devices=2, strategy="ddp")
    ///     fabric.launch()
    ///     ...
    ///
    /// if __name__ == "__main__":
    ///     main()
    /// ```
    ///
    /// or start DataLoader workers with `multiprocessing_context="fork"` (a workaround, not a fix).
    /// `doctor scan train.py` points at the line before anything runs (S001/S002).
    ///
    /// **Example** (real processes: `tests/helpers/situations.py d001 29511`, a rank listening on the
    /// port and a spawn child that re-ran the launch and connected as a second local rank 0):
    ///
    /// ```
    /// $ doctor ports --port 29511
    ///  LOCAL            PEER             STATE        PID    USER  ROLE         RANK           JOB        AGE  COMMAND
    ///  127.0.0.1:29511  *                LISTEN       30809  root  rank         local 0 of 2*  job-30809  2s   /root/.pyenv/versions/3.11.7/bin/python3 tests/helpers/situations.py d001 29511
    ///  127.0.0.1:29511  127.0.0.1:42208  ESTABLISHED  30809  root  rank         local 0 of 2*  job-30809  2s   /root/.pyenv/versions/3.11.7/bin/python3 tests/helpers/situations.py d001 29511
    ///  127.0.0.1:42208  127.0.0.1:29511  ESTABLISHED  30812  root  spawn-child  local 0 of 2   job-30809  2s   /root/.pyenv/versions/3.11.7/bin/python3 -B -c from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=7, pipe_handle=9) --multiprocessing-fork
    ///
    /// error[D001] duplicate-init: pid 30812 (spawn-child, local 0 of 2) re-ran the training script's distributed launch: it carries the identity of rank pid 30809 and is connected to the rendezvous port 29511 with a socket of its own. Path: pid 30809 (rank, local 0 of 2*) -> pid 30812 (spawn-child, local 0 of 2)
    ///   = fix: move the distributed launch in tests/helpers/situations.py (`fabric.launch()`, `init_process_group(...)`, `trainer.fit(...)`) into `main()` under `if __name__ == "__main__":` so spawn/forkserver children do not run it again; `doctor scan` points at the line
    /// see: `doctor explain D001` (what the code means, why, the fix, an example)
    /// ```
    ///
    /// **Seen on real Lightning** (torch 2.15.0, lightning 2.6.6, CPU/gloo, the bundled module-level
    /// Fabric reproduction with a spawn DataLoader worker, wrapped in `doctor run`; the output of the
    /// training processes is above this part):
    ///
    /// ```
    /// $ doctor run -- ~/.cache/ddp-doctor/venv/bin/python /tmp/fabric_buggy.py --ctx spawn
    /// ...
    /// doctor: the command exited with status 1 after 17.2s (watched by seccomp-notify)
    /// doctor: pid 2096 (spawn-child, local 0 of 2) failed bind(:::47427) with errno 98 EADDRINUSE at 14.84s (its socket stayed unbound while another held the port: errno inferred)
    /// doctor: port 47427 was held by pid 1728 (rank, local 0 of 2*), which bound it at 4.69s
    /// doctor: path: 1728 rank -> 2096 spawn-child
    /// doctor: the line that ran again: /tmp/fabric_buggy.py:32    fabric.launch()
    /// warning[S001] module-level-launch: `fabric.launch()` starts distributed work at import time, outside `if __name__ == "__main__":` (doctor scan; the same line)
    ///  --> /tmp/fabric_buggy.py:32:1
    ///
    /// error[D001] duplicate-init: pid 2096 (spawn-child, local 0 of 2) re-ran `fabric.launch()` at /tmp/fabric_buggy.py:32 and tried to bind the rendezvous port 47427 of rank pid 1728 (rank, local 0 of 2*); it failed with EADDRINUSE because the rank holds it
    ///   = fix: move `fabric.launch()` at /tmp/fabric_buggy.py:32 into `main()` under `if __name__ == "__main__":` so spawn/forkserver children (DataLoader workers) do not run it again
    /// error[D001] duplicate-init: pid 2094 (spawn-child, local 1 of 2) re-ran the training script's distributed launch: it carries the identity of rank pid 2011 and is connected to the rendezvous port 47427 with a socket of its own. Path: pid 2011 (rank, local 1 of 2) -> pid 2094 (spawn-child, local 1 of 2)
    ///   = fix: move the distributed launch in /tmp/fabric_buggy.py (`fabric.launch()`, `init_process_group(...)`, `trainer.fit(...)`) into `main()` under `if __name__ == "__main__":` so spawn/forkserver children do not run it again; `doctor scan` points at the line
    /// see: `doctor explain D001` (what the code means, why, the fix, an example)
    /// doctor: cleaned up 3 leftover processes:
    ///   2011 SIGTERM /root/.cache/ddp-doctor/venv/bin/python /tmp/fabric_buggy.py --ctx spawn
    ///   2092 SIGTERM /root/.cache/ddp-doctor/venv/bin/python -B -c from multiprocessing.resource_tracker import main;mai…
    ///   2094 SIGTERM /root/.cache/ddp-doctor/venv/bin/python -B -c from multiprocessing.spawn import spawn_main; spawn_m…
    /// doctor: nothing of the run is left; its ports are free
    /// ```
    ///
    /// Both forms appear in one run: rank 0's worker failed to bind (the transient form, seen by
    /// tracing), and rank 1's worker connected to the store as a second rank 1 (seen by polling). Rank 1
    /// outlived rank 0 — the orphan pattern of D003 — and `doctor run` removed it.
    ///
    /// **Seen by `doctor ports` / `doctor tree` on real Lightning** (the same reproduction run bare with
    /// `MASTER_PORT=29531`, looked at while it hangs; rank 0's own worker had already died on its bind,
    /// rank 1's worker stays connected as a second rank 1):
    ///
    /// ```
    /// $ doctor tree --port 29531
    /// job-23620 on port 29531
    /// 23620 rank [local 0 of 2*] /root/.cache/ddp-doctor/venv/bin/python train.py --ctx spawn  {LISTEN :29531, ESTABLISHED :29531, ESTABLISHED :29531, ESTABLISHED :29531, ESTABLISHED ->:29531}
    /// ├─ 23649 rank [local 1 of 2] /root/.cache/ddp-doctor/venv/bin/python /tmp/mine/train.py --ctx spawn  {ESTABLISHED ->:29531}  <- D001
    /// │  ├─ 23691 resource-tracker [local 1 of 2] /root/.cache/ddp-doctor/venv/bin/python -B -c from multiprocessing.resource_tracker import main;main(11)
    /// │  └─ 23693 spawn-child [local 1 of 2] /root/.cache/ddp-doctor/venv/bin/python -B -c from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=12, pipe_handle=18) --mu…  {ESTABLISHED ->:29531}  <- D001
    /// ├─ 23690 resource-tracker [local 0 of 2] /root/.cache/ddp-doctor/venv/bin/python -B -c from multiprocessing.resource_tracker import main;main(23)
    /// └─ 23692 spawn-child [local 0 of 2] /root/.cache/ddp-doctor/venv/bin/python -B -c from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=24, pipe_handle=30) --multi…
    ///
    /// D001 path: 23649 rank -> 23693 spawn-child
    ///
    /// error[D001] duplicate-init: pid 23693 (spawn-child, local 1 of 2) re-ran the training script's distributed launch: it carries the identity of rank pid 23649 and is connected to the rendezvous port 29531 with a socket of its own. Path: pid 23649 (rank, local 1 of 2) -> pid 23693 (spawn-child, local 1 of 2)
    ///   = fix: move the distributed launch in /tmp/mine/train.py (`fabric.launch()`, `init_process_group(...)`, `trainer.fit(...)`) into `main()` under `if __name__ == "__main__":` so spawn/forkserver children do not run it again; `doctor scan` points at the line
    /// ```
    ///
    /// The test `ports_and_tree_see_the_real_duplicate_rank_connecting` (tests/run_torch.rs) checks this
    /// on every run.
    D001, "duplicate-init", Error, "a descendant of a rank initialises distributed again";
    /// # D002 port-held-by-other-job (error)
    ///
    /// **What.** The rendezvous port of one job is held (LISTEN) by a process of another job — another
    /// process tree, another `TORCHELASTIC_RUN_ID` or `SLURM_JOB_ID` — or by a program that is no
    /// training job at all.
    ///
    /// **Why.** torchrun's static rendezvous, accelerate and DeepSpeed all default to port 29500
    /// (`torchrun --standalone` used 29400); two jobs on one node with default settings collide. The
    /// second job's rank 0 fails with EADDRINUSE, or under c10d rendezvous silently joins the first
    /// job's store as a client and fails later.
    ///
    /// **How doctor sees it.** Jobs by rendezvous, not by launcher: launcher trees (or top-most ranks
    /// with their descendants) whose ranks share address, port, world size and run id, with distinct
    /// ranks, and are linked by one store, one `SLURM_JOB_ID` or one parent, are one job — however they
    /// were started (torchrun, Lightning, `srun`, `mpirun`, a subprocess launcher). For each job's
    /// `MASTER_PORT` doctor lists the listeners and reports those of *another job* here; a holder that
    /// belongs to no job is D008.
    ///
    /// **Fix.** Give each job its own port: the fix names one doctor just bound successfully, below the
    /// ephemeral range and named by no job (`MASTER_PORT=N`; `doctor ports --free` prints one), or let
    /// the launcher pick one (`--rdzv-endpoint localhost:0` / `--standalone`). The holder's job may be a
    /// healthy job that came first: its process group is named only when its launcher is gone (a
    /// leftover, D003 too); otherwise the fix stops what is left of the job that wants the port, when
    /// it waits connected to the other job's store.
    ///
    /// **Example** (real processes: `situations.py d002 29742`, job A with run id `job-a` listening,
    /// job B with run id `job-b` configured for the same port):
    ///
    /// ```
    /// $ doctor ports --port 29742
    ///  LOCAL            PEER  STATE   PID   USER  ROLE  RANK          JOB       AGE  COMMAND
    ///  127.0.0.1:29742  *     LISTEN  2557  root  rank  local 0 of 2  job-2557  1s   /root/.pyenv/versions/3.11.7/bin/python3 /work/wt/launchers/tests/helpers/situations.py rank 29742 listen
    ///
    /// error[D002] port-held-by-other-job: port 29742 is the rendezvous port of job-2575 (root pid 2575) but is held by pid 2557 (rank, local 0 of 2) of another job (job-2557, root pid 2557)
    ///   = fix: give each job its own port: start job-2575 again on MASTER_PORT=29510 (torchrun --master-port 29510)
    /// see: `doctor explain D002` (what the code means, why, the fix, an example)
    /// ```
    ///
    /// **Under `doctor run`** the same code is stated for the run that failed: the run's processes (gone
    /// by the time it is explained) are judged beside the machine's, as `doctor ports` would have judged
    /// them while the run stood. Real run (torchrun job A on 29612, then a second torchrun on it;
    /// traceback cut):
    ///
    /// ```
    /// $ doctor run -- torchrun --nproc-per-node 1 --master-port 29612 train.py
    /// ...
    /// torch.distributed.DistNetworkError: The server socket has failed to listen on any local network address. port: 29612, useIpv6: false, code: -98, name: EADDRINUSE, message: address already in use
    ///
    /// doctor: the command exited with status 1 after 15.0s (watched by seccomp-notify)
    /// doctor: pid 20328 (launcher) failed bind(:::29612) with errno 98 EADDRINUSE at 9.87s (its socket stayed unbound while another held the port: errno inferred)
    /// doctor: port 29612 is held by pid 19608 (launcher) outside this run
    ///
    /// error[D002] port-held-by-other-job: port 29612 is the rendezvous port of job-20328 (root pid 20328) but is held by pid 19608 (launcher) of another job (job-19608, root pid 19608)
    ///   = fix: give each job its own port: start job-20328 again on MASTER_PORT=29510 (torchrun --master-port 29510)
    /// see: `doctor explain D002` (what the code means, why, the fix, an example)
    /// doctor: nothing of the run is left; its ports are free
    /// ```
    D002, "port-held-by-other-job", Error, "the rendezvous port of one job is held by another job";
    /// # D003 stale-holder (error)
    ///
    /// **What.** The ranks of a job whose launcher is gone (killed with SIGKILL or crashed: they were
    /// re-parented to PID 1 or a subreaper), whether or not one of them still holds the rendezvous port
    /// (one finding per job, every live rank named, the launcher's death as the cause); or a rendezvous
    /// port held by a zombie, a child living on under a zombie parent, or a process stuck in
    /// uninterruptible sleep (state D).
    ///
    /// **Why.** When rank 0 of a Lightning job dies, rank 1 (a `Popen` child) is re-parented to PID 1
    /// and keeps its DataLoader workers and sockets; torchrun workers can outlive a killed agent. In
    /// containers without an init process, killed children stay zombies. The next run on the same port
    /// fails with EADDRINUSE. It is the second most common cause of this error.
    ///
    /// **How doctor sees it.** The holder carries a rank identity given by a launcher (`LOCAL_RANK`/
    /// `RANK` in its own environ) while its parent is PID 1, a subreaper (systemd, tini, ...) or gone;
    /// or its state is `Z`/`D`, or its parent is a zombie. The spawn and fork children of a killed
    /// `mp.spawn`, `ddp_spawn` or `ddp_notebook` parent carry no rank in their environ: they are its
    /// ranks when two or more of one process group share a rendezvous, and one left alone (its
    /// siblings exited too) when what it holds says so: a spawn child hosting a store (a listener
    /// with its own client connected) or connected to its `MASTER_PORT`, or a spawn or fork child
    /// whose connection to a rendezvous port (its own `MASTER_PORT`, one asked with `--port`, a
    /// default one, one another process names) was closed by the other end (`CLOSE_WAIT`: its store
    /// is gone). Adopted means re-parented to init, a subreaper or `doctor run` (for a spawn child also:
    /// under a live program that is not Python); a Python process under a live shell, `timeout`,
    /// `uv run` or `srun` step was started by it and is never a leftover. Adopted fork children (or
    /// plain Python processes) sharing only a `MASTER_PORT` in their environ (a shell's `export`) share
    /// no rendezvous: they need a socket on it. Not seen (a known gap): a fork child left alone that hosts the store, which looks
    /// like a healthy single process started in the background (`nohup python train.py &`); on an
    /// asked port it is D008, whose fix also stops it.
    ///
    /// **Fix.** Stop the leftover process group: `kill -TERM -- -PGID` (doctor prints the group);
    /// for D-state processes look at `/proc/PID/stack` (often a hung NFS mount or GPU driver) and use
    /// another port meanwhile; in containers run with `--init` (tini) so children are reaped.
    /// `doctor run -- CMD` guarantees nothing of a run survives it.
    ///
    /// **Example** (real processes: `situations.py d003 29733`, a rank whose launcher exited):
    ///
    /// ```
    /// $ doctor ports --port 29733
    ///  LOCAL            PEER  STATE   PID    USER  ROLE  RANK          JOB        AGE  COMMAND
    ///  127.0.0.1:29733  *     LISTEN  18296  root  rank  local 1 of 2  job-18296  0s   /root/.pyenv/versions/3.11.7/bin/python3 /work/wt/launchers/tests/helpers/situations.py d003-mid 29733
    ///
    /// error[D003] stale-holder: job-18296 lost its launcher (killed or crashed): its ranks were re-parented to pid 1 and live on: pid 18296 (rank, local 1 of 2); pid 18296 still holds rendezvous port 29733 (LISTEN), so a new job on 29733 fails with EADDRINUSE
    ///   = fix: these are leftover ranks of a job whose launcher died: stop them with `kill -TERM -- -18223` (process group 18223 of pid 18296); or launch the new job on MASTER_PORT=29510 (torchrun --master-port 29510)
    /// see: `doctor explain D003` (what the code means, why, the fix, an example)
    /// ```
    D003, "stale-holder", Error, "the port is held by an orphaned, zombie or stuck process";
    /// # D004 port-in-ephemeral-range (warning)
    ///
    /// **What.** A rendezvous port that someone *chose* lies inside `net.ipv4.ip_local_port_range`
    /// (often 32768-60999) and is not in `net.ipv4.ip_local_reserved_ports`. Chosen means: in the exec
    /// environment of a launcher or of a job's top-most rank (`/proc/PID/environ`), a launcher flag
    /// (`--master-port`, `--rdzv-endpoint`, `--main_process_port`), or asked with `--port`.
    ///
    /// Not D004: a port a launcher picked by itself. Lightning without `MASTER_PORT` binds port 0 to find
    /// a free port and sets it in `os.environ` after it starts (so rank 0's `/proc/PID/environ` lacks it
    /// while the ranks it starts have it); `torchrun --standalone` does the same in its agent. Such a port
    /// was free when picked and is held by the job: a healthy Fabric, Trainer or torchrun job gets no
    /// warning (real tests: the `fabric-picked` and `torchrun-standalone` healthy cells of `tests/matrix.rs`).
    ///
    /// **Why.** The kernel hands ports in that range to outgoing connections. Any connection on the host
    /// (a pip download, a metrics exporter, NCCL's own sockets) may be given your fixed rendezvous port as
    /// its local port, and then the store's bind fails although nobody listens (see D005).
    ///
    /// **Fix.** Use a port below the range — the fix names one that doctor just bound successfully
    /// (`MASTER_PORT=N`; for a snapshot read with `--from`, "a free port below N") — or reserve it:
    /// `sysctl -w net.ipv4.ip_local_reserved_ports=PORT` (persist it in `/etc/sysctl.d/`).
    ///
    /// **Example** (real processes: `verdicts.py subprocess-launcher 45123` — ranks exec'd with
    /// `MASTER_PORT=45123` in their environment):
    ///
    /// ```
    /// $ doctor ports --port 45123
    ///  LOCAL            PEER             STATE            PID    USER  ROLE  RANK      JOB        AGE  COMMAND
    ///  127.0.0.1:45123  *                LISTEN           30915  root  rank  rank 0/3  job-30915  1s   /root/.pyenv/versions/3.11.7/bin/python3 /work/wt/contract/tests/helpers/verdicts.py rank 45123
    ///  127.0.0.1:*      127.0.0.1:*      ESTABLISHED (3)  30915  root  rank  rank 0/3  job-30915  1s   /root/.pyenv/versions/3.11.7/bin/python3 /work/wt/contract/tests/helpers/verdicts.py rank 45123
    ///  127.0.0.1:33372  127.0.0.1:45123  ESTABLISHED      30917  root  rank  rank 1/3  job-30915  1s   /root/.pyenv/versions/3.11.7/bin/python3 /work/wt/contract/tests/helpers/verdicts.py rank 45123
    ///
    /// warning[D004] port-in-ephemeral-range: rendezvous port 45123 is a fixed choice (set in the job's environment, a launcher flag or --port) and lies inside the ephemeral port range 32768-60999 without being reserved: any outgoing connection on this host may be given it as its local port, and then the store cannot bind it
    ///   = fix: choose a port below 32768: MASTER_PORT=29510; or reserve it: `sysctl -w net.ipv4.ip_local_reserved_ports=45123` (add to /etc/sysctl.d to keep it)
    /// see: `doctor explain D004` (what the code means, why, the fix, an example)
    /// ```
    D004, "port-in-ephemeral-range", Warning, "a rendezvous port lies inside the ephemeral port range";
    /// # D005 ephemeral-collision (error)
    ///
    /// **What.** A TCP socket that is not a listener (an outgoing connection) uses a rendezvous port as
    /// its local port, and nobody listens on that port.
    ///
    /// **Why.** The port lies in the ephemeral range (D004) and the kernel gave it to a connection.
    /// Binding it fails with `EADDRINUSE` although `ss -ltn` shows no listener — the confusing case.
    /// Accepted connections on a listening port have the same local port; doctor does not count those.
    ///
    /// **Only when a bind like torch's fails.** Live, doctor binds the port for real the way torch's
    /// store does (`SO_REUSEADDR`, `[::]` dual-stack; closed at once, never listening) before it says
    /// binding fails: a connection that took the port without `SO_REUSEADDR` stops that bind; the
    /// leftovers of a store that was killed (its accepted connections in FIN_WAIT2, as a SIGKILLed
    /// torchrun agent leaves them) do not, and are information (D007), not D005. On a snapshot from
    /// elsewhere (`--from`), a closing socket that no process holds and whose peer on this host
    /// connected to the port is taken for such a leftover.
    ///
    /// **The probe's window.** While doctor's socket is bound (from `bind` returning to `close`
    /// returning: tens of microseconds, `scripts/bench/bind_probe.sh`, docs/performance.md), the port
    /// is doctor's. torch loses nothing in that window: its store binds with `SO_REUSEADDR` too, and
    /// two such sockets may share a port while neither listens, so a store that starts right then
    /// still binds and listens (`tests/bind_probe.rs`, a real `TCPStore` with the probe held across
    /// its whole start). A program that binds the port without `SO_REUSEADDR` in that window gets
    /// EADDRINUSE. The free port a fix names is checked the same way (never a listener).
    ///
    /// **Fix.** Launch on a free port below the ephemeral range (the fix names one doctor just bound),
    /// or reserve the port with `sysctl -w net.ipv4.ip_local_reserved_ports=PORT`; the port frees itself
    /// when that connection closes. When the connection belongs to no training job, D008 names the
    /// holder too, with how to stop it.
    ///
    /// **Example** (real processes: `situations.py d005 29514`, a client socket bound to 29514 connected
    /// to a server on an ephemeral port):
    ///
    /// ```
    /// $ doctor ports --port 29514
    ///  LOCAL        PEER         STATE            PID    USER  ROLE    RANK  JOB  AGE  COMMAND
    ///  127.0.0.1:*  127.0.0.1:*  ESTABLISHED (2)  15836  root  python  -     -    2s   /root/.pyenv/versions/3.11.7/bin/python3 tests/helpers/situations.py d005 29514
    ///
    /// error[D005] ephemeral-collision: pid 15836 (python) has an outgoing connection (ESTABLISHED to 127.0.0.1:43981) whose local port is the rendezvous port 29514; binding 29514 fails with EADDRINUSE although nobody listens on it; a bind as torch's store makes it (SO_REUSEADDR) failed just now
    ///   = fix: launch on MASTER_PORT=29510, or reserve 29514 so the kernel never hands it out: `sysctl -w net.ipv4.ip_local_reserved_ports=29514`; the connection frees it when it closes
    /// warning[D008] port-held-by-foreign-process: port 29514 (asked with --port) is held by pid 15836 (user root, `/root/.pyenv/versions/3.11.7/bin/python3 tests/helpers/situations.py d005 29514`, running for 2s), which belongs to no training job: it holds the port as the local port of an outgoing connection
    ///   = fix: either stop it: `kill 15836`; or launch the job on a free port: MASTER_PORT=29510 (torchrun --master-port 29510)
    /// see: `doctor explain D005`, `doctor explain D008` (what each code means, why, the fix, an example)
    /// ```
    D005, "ephemeral-collision", Error, "an outgoing connection uses the rendezvous port as its local port";
    /// # D006 duplicate-rank (error)
    ///
    /// **What.** Two live processes of one job, both with role `rank`, claim the same rank: equal
    /// `RANK`, or equal `NODE_RANK`/`GROUP_RANK` and `LOCAL_RANK`.
    ///
    /// **Why.** A wrong `--node-rank` on one node, several SLURM tasks per node each acting as a
    /// launcher, or a script started twice. The store sees one rank twice: a hang at rendezvous, or
    /// "duplicate rank" errors from NCCL/gloo.
    ///
    /// **Not a rank.** Only a Python process, or one with a socket on the rendezvous port, counts: a
    /// process that only carries a rank's environment (OpenMPI's `orted`, which inherits it on a GPU box;
    /// a shell, `env`, an `srun` step; a tool a rank runs) is no rank and gives no D006
    /// (`tests/rank_roles.rs` puts a stand-in `orted` and `bash -c "sleep ...; true"` beside real ranks).
    /// A frozen or compiled rank not named python counts once it uses the port.
    ///
    /// **Fix.** Give every node its own `--node-rank`; start one launcher per node
    /// (SLURM: `--ntasks-per-node=1` with torchrun, or let Lightning's SLURM environment set ranks).
    ///
    /// **Example** (real processes: `situations.py d006 29515`, a Lightning-style rank 0 that started two
    /// processes with `LOCAL_RANK=1`):
    ///
    /// ```
    /// $ doctor ports --port 29515
    ///  LOCAL            PEER  STATE   PID    USER  ROLE  RANK           JOB        AGE  COMMAND
    ///  127.0.0.1:29515  *     LISTEN  31113  root  rank  local 0 of 2*  job-31113  2s   /root/.pyenv/versions/3.11.7/bin/python3 tests/helpers/situations.py d006 29515
    ///
    /// error[D006] duplicate-rank: pid 31114, pid 31115 of job-31113 all claim local 1 of 2: the store sees the same rank twice (a hang at rendezvous, or 'duplicate rank' errors)
    ///   = fix: give every node its own --node-rank (NODE_RANK) and start one launcher per node (SLURM: --ntasks-per-node=1 with torchrun, or let Lightning/SLURM set the ranks)
    /// see: `doctor explain D006` (what the code means, why, the fix, an example)
    /// ```
    D006, "duplicate-rank", Error, "two live processes of one job claim the same rank";
    /// # D007 time-wait-only (info)
    ///
    /// **What.** Only TIME_WAIT sockets, or other leftovers of closed connections, use the port, and
    /// nobody listens on it: connections that were closed recently, kept by the kernel for up to a
    /// minute. A store that was killed with SIGKILL (a torchrun agent, Lightning's rank 0) leaves its
    /// accepted connections in FIN_WAIT2 while the ranks keep their ends open; live, doctor then binds
    /// the port as torch's store does (`SO_REUSEADDR`) and says that it succeeded.
    ///
    /// **Why it is harmless.** TCPStore sets `SO_REUSEADDR`, so on Linux a new bind over TIME_WAIT
    /// succeeds. It is a common false lead when `ss -tan` is read after a failure; the real holder is
    /// usually gone (D003) or was a duplicate init (D001). This finding does not change the exit code.
    ///
    /// **Fix.** Nothing. If the bind still fails, look for another holder (`doctor run` sees the short-lived ones).
    ///
    /// **Example** (real sockets: `situations.py time-wait 29516`, the server side closed first):
    ///
    /// ```
    /// $ doctor ports --port 29516
    ///  LOCAL            PEER             STATE      PID  USER  ROLE  RANK  JOB  AGE  COMMAND
    ///  127.0.0.1:29516  127.0.0.1:37924  TIME_WAIT  -    root  -     -     -    -    -
    ///
    /// info[D007] time-wait-only: only TIME_WAIT sockets use port 29516: closed connections the kernel keeps for a while
    ///   = fix: nothing to do: TCPStore binds with SO_REUSEADDR, so a new bind over TIME_WAIT succeeds on Linux; if the bind still fails, look for another holder
    /// see: `doctor explain D007` (what the code means, why, the fix, an example)
    /// ```
    D007, "time-wait-only", Info, "only TIME_WAIT sockets use the port (harmless)";
    /// # D008 port-held-by-foreign-process (warning; error when a job wants the port)
    ///
    /// **What.** A rendezvous port — one asked for with `--port`, the defaults 29500 and 29400, or any
    /// `MASTER_PORT` seen on the host — is held by a process that belongs to no training job: a
    /// forgotten server, a notebook kernel, a crashed job's helper, a service. The finding names the
    /// holder's pid, user, command and age, how it holds the port (a listener, an accepted connection,
    /// or the local port of an outgoing connection), and whether it is a service: a systemd unit (from
    /// `/proc/PID/cgroup`, `…/NAME.service`) or a container (`docker-ID.scope`, `kubepods/…`).
    ///
    /// **Why.** The store of the next job that uses the port (torch's `TCPStore` on rank 0, or torchrun's
    /// agent) cannot bind it and dies with `EADDRINUSE` (`The server socket has failed to listen on any
    /// local network address. port: 29500, useIpv6: false, code: -98, name: EADDRINUSE`). It is a warning
    /// while no job wants the port, and an error when a live job names the port as its `MASTER_PORT` but
    /// none of its processes holds it, or when `doctor run` saw a rank fail to bind it. A process that
    /// is one of a job's ranks is never D008 (D002 is about another *job* holding the port, D003 about a
    /// job's leftovers).
    ///
    /// **Fix.** Two ways, both printed with the finding:
    ///
    /// - stop the holder: `kill PID`; for a systemd service `systemctl stop UNIT` (`systemctl --user stop
    ///   UNIT` for a user unit; a service killed by hand may be restarted); for a container `docker stop ID`;
    /// - or launch on a free port: `MASTER_PORT=N` (`torchrun --master-port N`). On a live machine N is a
    ///   port doctor just bound successfully, below the ephemeral range, not reserved, and named by no
    ///   job; for a snapshot read with `--from`, doctor does not claim a port is free on the analysing
    ///   machine and says "a free port below 32768" instead. `doctor ports --free` prints one.
    ///
    /// **Example** (real processes: `tests/helpers/verdicts.py foreign-listener 29514`, a plain Python
    /// server that listens on 29514 and has accepted one connection):
    ///
    /// ```
    /// $ doctor ports --port 29514
    ///  LOCAL            PEER             STATE            PID    USER  ROLE    RANK  JOB  AGE  COMMAND
    ///  127.0.0.1:29514  *                LISTEN           31223  root  python  -     -    1s   /root/.pyenv/versions/3.11.7/bin/python3 tests/helpers/verdicts.py foreign-listener 29514
    ///  127.0.0.1:*      127.0.0.1:*      ESTABLISHED (2)  31223  root  python  -     -    1s   /root/.pyenv/versions/3.11.7/bin/python3 tests/helpers/verdicts.py foreign-listener 29514
    ///  127.0.0.1:43169  127.0.0.1:29514  TIME_WAIT        -      root  -       -     -    -    -
    ///
    /// warning[D008] port-held-by-foreign-process: port 29514 (asked with --port) is held by pid 31223 (user root, `/root/.pyenv/versions/3.11.7/bin/python3 tests/helpers/verdicts.py foreign-listener 29514`, running for 1s), which belongs to no training job: it holds the port as a listener and an accepted connection
    ///   = fix: either stop it: `kill 31223`; or launch the job on a free port: MASTER_PORT=29510 (torchrun --master-port 29510)
    /// see: `doctor explain D008` (what the code means, why, the fix, an example)
    /// ```
    ///
    /// With a rank 0 started with `MASTER_PORT=29514` in its environment that could not bind it
    /// (`verdicts.py wanting-rank 29514`), the same holder is an error:
    ///
    /// ```
    /// error[D008] port-held-by-foreign-process: port 29514 (the MASTER_PORT of job-8602 (root pid 8602)) is held by pid 8460 (user root, `/root/.pyenv/versions/3.11.7/bin/python3 tests/helpers/verdicts.py foreign-listener 29514`, running for 3s), which belongs to no training job: it holds the port as a listener and an accepted connection
    ///   = fix: either stop it: `kill 8460`; or launch the job on a free port: MASTER_PORT=29510 (torchrun --master-port 29510)
    /// ```
    ///
    /// Tests: `tests/verdicts.rs` (`foreign_listener_is_a_finding_with_two_fixes`,
    /// `foreign_outgoing_connection_is_a_finding`,
    /// `a_job_wanting_a_foreign_held_port_is_an_error_not_another_job`); each verifies by a bind that the
    /// `MASTER_PORT` it suggests is free.
    D008, "port-held-by-foreign-process", Warning, "a rendezvous port is held by a process that belongs to no training job";
    /// # D009 rendezvous-incomplete (error)
    ///
    /// **What.** A job whose store is on this host has fewer ranks connected than its world size, and
    /// has been waiting for longer than a healthy start takes (15 s: the youngest rank's age, from its
    /// start time, so one snapshot suffices). The finding names
    ///
    /// - the missing ranks: rank numbers in `0..WORLD_SIZE` that no live process on this host carries
    ///   (by the identities seen: `RANK`, else `LOCAL_RANK` on node 0);
    /// - ranks that are alive but not connected, with their state (a rank stopped with `SIGSTOP` or
    ///   Ctrl-Z shows `stopped (state T)`);
    /// - what each connected rank is blocked in: the system call (`/proc/PID/syscall`), the kernel wait
    ///   channel (`/proc/PID/wchan`), and — when `py-spy` is installed (on `PATH` or next to the rank's
    ///   interpreter; the managed environment has it) — the innermost Python frames from
    ///   `py-spy dump --nonblocking --pid PID`.
    ///
    /// A rank is connected when it holds a connection to the store's port, or hosts the store — unless
    /// `MASTER_ADDR` is an IP address that is not one of this host's (the snapshot's `host.addresses`)
    /// while the store is here and no connection to that address and port is established: then rank
    /// 0's own client goes elsewhere, hosting the store connects nobody, and the finding says which
    /// address, that it is not this host's and that nothing answers there (the fix: a `MASTER_ADDR` of
    /// this host). A host name is not judged (doctor does not resolve names).
    ///
    /// **Not judged: ranks without a world size.** The spawn and fork ranks of `mp.spawn`, Lightning
    /// `ddp_spawn` and `ddp_notebook`/`ddp_fork` carry no `RANK` or `WORLD_SIZE` in their environment:
    /// torch hands `world_size` and the rank to the function it starts (pickled through a pipe), and
    /// Lightning sets `LOCAL_RANK` in `os.environ` inside the child, after exec; the number of
    /// siblings is the local world size only on one node. So D009 does not count these ranks, and
    /// says nothing either way; `doctor ports` and `doctor tree` (table output) say so on stderr
    /// instead of staying silent: `note: job-N on port P: its ranks (pids ...) carry no WORLD_SIZE
    /// ... not judged (no D009 either way); py-spy dump --locals --pid PID shows the world_size
    /// init_process_group was given` (`-q` leaves it out; the JSON/YAML documents show it as a job
    /// without `world_size`). Real test: `tests/matrix.rs`
    /// `a_spawn_job_without_world_size_is_said_to_be_unjudged`.
    ///
    /// Under `doctor run --timeout N` the machine is observed at the moment the timeout stops the
    /// command, and the findings `doctor ports` would give then about the run's processes are stated:
    /// a rendezvous not complete by the timeout is D009 (the 15 s wait does not apply: the timeout is
    /// the wait). The same holds when the command is stopped otherwise — Ctrl-C, a signal, torchrun's
    /// `SignalException`, or torch's own rendezvous timeout (`Timed out ... waiting for clients`, a
    /// client that could not reach the store) — except that the moment is known only afterwards: a
    /// Ctrl-C at a terminal reaches the command's process group, not doctor, and a rank blocked in
    /// the store does not even react to it (torch 2.15 waits in C++; only the launcher around it
    /// dies). doctor then judges the run as its polls last saw it standing still for at least a
    /// second, before it began to end, beside the machine's other processes now; it passes the
    /// signal on exactly as before and exits with the command's status. Real run (torch 2.15, gloo:
    /// `tests/helpers/torch_job.py launch 29517 2 1`, a plain launcher that starts rank 0 of a world of
    /// 2; SIGINT to the command's process group, as a terminal's Ctrl-C, once the store had listened
    /// for 2 s; the launcher's `KeyboardInterrupt` traceback cut):
    ///
    /// ```
    /// $ doctor run -- ~/.cache/ddp-doctor/venv/bin/python tests/helpers/torch_job.py launch 29517 2 1
    /// ...
    /// KeyboardInterrupt
    ///
    /// doctor: the command was killed by SIGINT (status 130) after 17.1s (watched by seccomp-notify)
    /// doctor: the command was stopped (SIGINT) while its rendezvous had not completed (D009 on port 29517; the run as seen at 16.8s)
    ///
    /// error[D009] rendezvous-incomplete: job-3627 (root pid 3627) has waited at rendezvous for at least 17s: its store on port 29517 has 1 of 2 ranks connected; missing: rank 1 (no live process on this host carries that identity); the connected ranks: pid 3627 (rank, rank 0/2) waits in state S
    ///   = fix: start rank 1 with MASTER_ADDR=127.0.0.1 MASTER_PORT=29517 WORLD_SIZE=2 (and check it can reach 127.0.0.1:29517), or relaunch with WORLD_SIZE equal to the number of ranks you start (1 here)
    /// see: `doctor explain D009` (what the code means, why, the fix, an example)
    /// doctor: cleaned up 1 leftover processes:
    ///   3627 SIGTERM /root/.cache/ddp-doctor/venv/bin/python /work/wt/runhostile/tests/helpers/torch_job.py rank
    /// doctor: nothing of the run is left; its ports are free
    /// ```
    ///
    /// What a rank was blocked in is not said for that moment (doctor knows it only for a live look).
    ///
    /// Connections to the store from other hosts count as connected ranks (their rank numbers are not
    /// known here, so no rank is called missing then). Jobs whose launcher is gone, or whose store
    /// holder's parent is a zombie or is stuck in state D, are leftovers (D003), not a start that hangs.
    ///
    /// **Why.** `init_process_group` (and Lightning's `fabric.launch()` / `trainer.fit()`, torchrun's
    /// workers) blocks until all `WORLD_SIZE` ranks have joined the store; until the timeout (30 minutes
    /// by default for gloo/NCCL) nothing is printed. Typical causes: `WORLD_SIZE` larger than the ranks
    /// started (a wrong `--nproc-per-node`, `--nnodes`, `devices=`), a rank that died or never started,
    /// a rank stopped in a terminal, a rank that points at another `MASTER_ADDR`/`MASTER_PORT`.
    ///
    /// **Fix.** Start the missing ranks with the same `MASTER_ADDR`, `MASTER_PORT` and `WORLD_SIZE` (and
    /// check they can reach the address), or relaunch with `WORLD_SIZE` equal to the number of ranks
    /// started; resume a stopped rank with `kill -CONT PID`; for a rank alive but not connecting, look at
    /// its stack (`py-spy dump --pid PID`) and its environment.
    ///
    /// **Example** (real torch 2.15, gloo: `tests/helpers/torch_job.py launch 29517 3 2`, a plain Python
    /// launcher that starts ranks 0 and 1 of a world of 3; `doctor ports` 25 s later):
    ///
    /// ```
    /// $ doctor ports --port 29517
    ///  LOCAL            PEER             STATE            PID    USER  ROLE  RANK      JOB        AGE  COMMAND
    ///  [::]:29517       *                LISTEN           31239  root  rank  rank 0/3  job-31239  25s  /root/.cache/ddp-doctor/venv/bin/python /work/wt/contract/tests/helpers/torch_job.py rank
    ///  127.0.0.1:*      127.0.0.1:*      ESTABLISHED (3)  31239  root  rank  rank 0/3  job-31239  25s  /root/.cache/ddp-doctor/venv/bin/python /work/wt/contract/tests/helpers/torch_job.py rank
    ///  127.0.0.1:38004  127.0.0.1:29517  ESTABLISHED      31240  root  rank  rank 1/3  job-31239  25s  /root/.cache/ddp-doctor/venv/bin/python /work/wt/contract/tests/helpers/torch_job.py rank
    ///
    /// error[D009] rendezvous-incomplete: job-31239 (root pid 31239) has waited at rendezvous for at least 26s: its store on port 29517 has 2 of 3 ranks connected; missing: rank 2 (no live process on this host carries that identity); the connected ranks: pid 31239 (rank, rank 0/3) waits in syscall clock_nanosleep (wchan hrtimer_nanosleep); Python: _create_c10d_store (torch/distributed/rendezvous.py:215) <- _env_rendezvous_handler (torch/distributed/rendezvous.py:296) <- init_process_group (torch/distributed/distributed_c10d.py:2714) <- _time_logger.<locals>.wrapper (torch/distributed/c10d_logger.py:97); pid 31240 (rank, rank 1/3) waits in syscall poll (wchan poll_schedule_timeout.constprop.0); Python: _create_gloo_process_group (torch/distributed/distributed_c10d.py:757) <- _new_process_group_helper (torch/distributed/distributed_c10d.py:3121) <- init_process_group (torch/distributed/distributed_c10d.py:2721) <- _time_logger.<locals>.wrapper (torch/distributed/c10d_logger.py:97)
    ///   = fix: start rank 2 with MASTER_ADDR=127.0.0.1 MASTER_PORT=29517 WORLD_SIZE=3 (and check it can reach 127.0.0.1:29517), or relaunch with WORLD_SIZE equal to the number of ranks you start (2 here)
    /// see: `doctor explain D009` (what the code means, why, the fix, an example)
    /// ```
    ///
    /// The two ranks were started as plain subprocesses of one Python parent: doctor sees one job
    /// (`job-31239`), not two. With all three ranks started and rank 2 stopping itself with `SIGSTOP`
    /// before it joins (`torch_job.py launch PORT 3 3 2`), the finding says `rank 2 pid N (...) is alive
    /// but not connected: stopped (state T, e.g. SIGSTOP or Ctrl-Z)` and the fix `kill -CONT N`.
    ///
    /// Tests: the `subprocess` x `missing-rank` and `stopped-rank` cells of the launcher matrix
    /// (`tests/matrix.rs`, `tests/helpers/matrix.json`), both with real torch.
    D009, "rendezvous-incomplete", Error, "a job's store has fewer ranks connected than its world size";
    /// # M001 master-not-found (warning; error when MASTER_ADDR is loopback on several nodes)
    ///
    /// **What.** `MASTER_ADDR` of the job names no node among the merged reports: it is neither a
    /// host name (long or short) nor an address of any node. Or it is a loopback address
    /// (`127.0.0.1`, `localhost`) while ranks run on more than one node (then an error).
    ///
    /// **Why.** Every rank connects to `MASTER_ADDR:MASTER_PORT`, where rank 0 (or torchrun's agent)
    /// hosts the store. An address that no node owns makes every non-master rank time out; a
    /// loopback address makes each node meet only itself (several one-node jobs that never finish).
    /// A missing report (the master node was not included) gives the same finding: add it.
    ///
    /// **How doctor sees it.** Each report records the host name and the addresses of its network
    /// namespace (`/proc/net/fib_trie`, `/proc/net/if_inet6`). `merge` takes the
    /// (MASTER_ADDR, MASTER_PORT) pair most ranks use (or the shell's variables when no rank runs) and
    /// looks for the node that owns it.
    ///
    /// **Fix.** Set `MASTER_ADDR` to the host name or address of the node where rank 0 runs, the
    /// same on every node (SLURM: the first host of `scontrol show hostnames $SLURM_JOB_NODELIST`);
    /// or add the master node's report to the merge.
    ///
    /// **Example** (real run: `scripts/demo/merge-netns.sh wrongaddr`, two network namespaces with
    /// 10.77.0.1 and 10.77.0.2, ranks told `MASTER_ADDR=10.77.0.9`):
    ///
    /// ```
    /// $ doctor merge report-node-a.yaml report-node-b.yaml
    /// warning[M001] master-not-found: MASTER_ADDR 10.77.0.9 is not the host name or an address of any of the 2 reports
    ///   = fix: add the report of the node that has 10.77.0.9 (`doctor report` there), or fix MASTER_ADDR: it must name the node where rank 0 runs, reachable from every node
    /// ```
    M001, "master-not-found", Error, "no node of the cluster hosts the master";
    /// # M002 master-port-not-listening (warning)
    ///
    /// **What.** The master node is known, ranks exist, but nothing on the master node listens on
    /// `MASTER_PORT`.
    ///
    /// **Why.** Rank 0's TCPStore (or torchrun's agent store) listens there; without it the other
    /// ranks retry until the rendezvous timeout (default 30 min for `init_process_group`, 900 s for
    /// c10d), which looks like a hang. Usual causes: rank 0 has not started yet, crashed (often on
    /// EADDRINUSE, see D001/D002), or runs on another node than `MASTER_ADDR` says.
    ///
    /// **How doctor sees it.** In the master node's report, no LISTEN socket has local port
    /// `MASTER_PORT`.
    ///
    /// **Fix.** Start rank 0 (`NODE_RANK=0`) on the node `MASTER_ADDR` names, read its log for the
    /// error that stopped it, and run `doctor ports --port N` on that node.
    ///
    /// **Example** (real run: `scripts/demo/merge-netns.sh idle`, rank 0 on node-a started but not
    /// listening):
    ///
    /// ```
    /// $ doctor merge report-node-a.yaml report-node-b.yaml
    /// warning[M002] master-port-not-listening: nothing listens on MASTER_PORT 28123 on the master node node-a: rank 0's store (or torchrun's agent store) is not up, so ranks on other nodes wait and time out
    ///   = fix: start rank 0 (NODE_RANK=0) on node-a first, check it did not crash (its log), and that nothing there refused the bind; `doctor ports --port 28123` on that node
    /// ```
    M002, "master-port-not-listening", Warning, "nothing listens on the master port on the master node";
    /// # M003 port-held-by-other-job (error on the master node, warning elsewhere)
    ///
    /// **What.** On some node, the job's `MASTER_PORT` is held (LISTEN) by a process that is not part
    /// of the job: no rendezvous identity for this port, or another run id (`TORCHELASTIC_RUN_ID`) or
    /// SLURM job id than the job's.
    ///
    /// **Why.** On the master node this is the classic EADDRINUSE (or, under c10d, the ranks join the
    /// other job's store). On another node it does no harm today, but breaks the job as soon as that
    /// node becomes the master (SLURM hands out nodes in another order next time).
    ///
    /// On the master node, M003 is the cluster-level verdict: the agents and ranks of the other nodes
    /// that wait on the master (a connection, established or still connecting, to the master's address
    /// and port) are named with it, so one finding says which nodes wait, on what (node, pid, command,
    /// job of the holder) and what to do on which node. The pids in the fix are those of the report's
    /// PID namespace (a container's or pod's when `host.pid_namespace.init` is false); a process group
    /// is named only when it is visible there (never 0 or 1).
    ///
    /// **How doctor sees it.** The holders of each report (the same rows as `doctor ports`), their
    /// identity and job record, compared with the ids of the job's ranks on all nodes.
    ///
    /// **Fix.** End the other job, or give this job a port of its own (e.g.
    /// `MASTER_PORT=$((20000 + SLURM_JOB_ID % 10000))`, below the ephemeral range); `doctor ports
    /// --port N` on that node shows the holder's tree.
    ///
    /// **Example** (real run: `scripts/demo/merge-netns.sh dup`, another program listening on the port
    /// on node-b; node-b's own report also has D008):
    ///
    /// ```
    /// $ doctor merge report-node-a.yaml report-node-b.yaml
    /// warning[M003] port-held-by-other-job: on node-b, port 28123 is held by pid 10559 (python) `/root/.pyenv/versions/3.11.7/bin/python3 /work/main/tests/helpers/multinode.py listen 28123`, a program that is no training job; harmless while node-a is the master, a failure as soon as this node hosts rank 0
    ///   = fix: on node-b: `kill -TERM -- -10559`, or give this job another MASTER_PORT (one per job: e.g. MASTER_PORT=$((20000 + SLURM_JOB_ID % 10000)), below the ephemeral range)
    /// ```
    ///
    /// **Cluster verdict** (the master node's holder). Real run of `scripts/testbed/cluster.sh OUT leftover` (tests/cluster_torchrun.rs): nodes as network + PID + UTS + mount namespaces, real torchrun 2.15 with gloo ranks, `doctor report` taken inside each node, merged with `doctor merge DIR`. A rank 0
    /// left by an earlier job (run id job-old, SLURM job 4100, its launcher gone) still serves its store
    /// on the master port of node-a: node-a's agent fails with EADDRINUSE, node-b's agent connects to the
    /// leftover and waits. The merge ties node-b's wait to that holder and gives the fix on node-a, with
    /// pids of node-a's PID namespace (the two reports of that run are recorded in
    /// tests/fixtures/reports/testbed-leftover; tests/explain.rs re-runs this example on them):
    ///
    /// ```
    /// $ doctor merge tests/fixtures/reports/testbed-leftover/*.yaml
    /// doctor merge 2 nodes; rendezvous 10.78.0.1:29577 on master node node-a
    ///   holder: pid 4 (rank) python /work/wt/cluster/tests/helpers/cluster_train.py store 29577
    ///
    /// node-a (master)  10.78.0.1 fe80::b0e8:65ff:fee6:7d81  torch 2.15.0 nccl 2.30.7 lightning 2.6.6
    ///   pids of PID namespace pid:[4026532444] (a container's or pod's, not host pids)
    ///   agents: none
    ///   ranks: rank 0 (pid 4, another job, SLURM job 4100)
    ///   error[D003] stale-holder: pid 4 (rank, rank 0/2) holds rendezvous port 29577 (LISTEN) and belongs to job-4 whose launcher is gone (root pid 4 was re-parented to pid 0)
    ///     = fix: these are leftover ranks of a finished job: stop them with `kill -TERM 4` (its process group 0 is not one of this PID namespace's)
    /// node-b  10.78.0.2 fe80::f01e:d1ff:feec:e7fb  torch 2.15.0 nccl 2.30.7 lightning 2.6.6
    ///   pids of PID namespace pid:[4026532447] (a container's or pod's, not host pids)
    ///   agents: torchrun pid 4 (static 10.78.0.1:29577, node rank 1, nnodes 2)
    ///   ranks: none
    ///
    /// summary: 2 errors, 1 warning, 0 info (nodes' own findings included)
    /// error[M003] port-held-by-other-job: on the master node node-a, MASTER_PORT 29577 is held by pid 4 (rank) `python /work/wt/cluster/tests/helpers/cluster_train.py store 29577`, a leftover of another job (run id job-old, SLURM job 4100, its launcher gone): this job's rank 0 (or torchrun's agent) cannot bind it (EADDRINUSE); node-b (agent pid 4 connected) waits on 10.78.0.1:29577, talking to that holder instead of this job's store; the job cannot start until the port is free
    ///   = fix: on node-a: `kill -TERM 4` (pids of node-a's PID namespace pid:[4026532444], not host pids: run it there, e.g. `srun -w node-a ...` or `kubectl exec`), then start the job again on every node; or give this job another MASTER_PORT, the same on every node (e.g. MASTER_PORT=$((20000 + SLURM_JOB_ID % 10000)))
    /// warning[M010] missing-ranks: torchrun expects 2 nodes (--nnodes) but only 1 run its agent (node-b): no agent in the report of node-a (it exited, e.g. on EADDRINUSE, or never started); the agents wait at the rendezvous until every node has joined
    ///   = fix: start torchrun on every node of the job (scheduler log: did each task start? `srun -N` and --nnodes must agree); add the reports of the nodes not merged; on a node whose agent exited, its log says why
    /// see: `doctor explain D003`, `doctor explain M003`, `doctor explain M010` (what each code means, why, the fix, an example)
    /// ```
    ///
    /// The same with another program holding the port (`scripts/testbed/cluster.sh OUT foreign` (tests/cluster_torchrun.rs): nodes as network + PID + UTS + mount namespaces, real torchrun 2.15 with gloo ranks, `doctor report` taken inside each node, merged with `doctor merge DIR`):
    ///
    /// ```
    /// $ doctor merge reports/   # scripts/testbed/cluster.sh OUT foreign
    /// error[M003] port-held-by-other-job: on the master node node-a, MASTER_PORT 29577 is held by pid 4 (python) `python3 -m http.server 29577 --bind 0.0.0.0`, a program that is no training job: this job's rank 0 (or torchrun's agent) cannot bind it (EADDRINUSE); node-b (agent pid 4 connected) waits on 10.78.0.1:29577, talking to that holder instead of this job's store; the job cannot start until the port is free
    ///   = fix: on node-a: `kill -TERM 4` (pids of node-a's PID namespace pid:[4026532444], not host pids: run it there, e.g. `srun -w node-a ...` or `kubectl exec`), then start the job again on every node; or give this job another MASTER_PORT, the same on every node (e.g. MASTER_PORT=$((20000 + SLURM_JOB_ID % 10000)))
    /// ```
    M003, "port-held-by-other-job", Error, "the master port is held by another job on some node";
    /// # M004 duplicate-rank-across-nodes (error)
    ///
    /// **What.** Two nodes run a rank with the same global `RANK`, or (when ranks carry no `RANK`,
    /// as Lightning's) the same `NODE_RANK` and `LOCAL_RANK`, for the same rendezvous. Nodes are
    /// machines: two reports of one machine (same host name and addresses, M009), such as a job
    /// reported before and after a restart on the same port, show its ranks twice on one node, not
    /// on two; ranks of different run ids are of different jobs.
    ///
    /// **Why.** Usually every node got `NODE_RANK=0` (or the same `--node-rank`), or several SLURM tasks
    /// per node each act as a launcher. The store sees two "rank 0"s: one of them fails to bind on its
    /// node, the other hangs in the first collective, or the job runs with half of its ranks twice.
    /// (Within one node the same mistake is D006.)
    ///
    /// **How doctor sees it.** The ranks (role `rank`) of each report with their rendezvous identity,
    /// grouped by (MASTER_ADDR, MASTER_PORT).
    ///
    /// **Fix.** Give each node its own `NODE_RANK` (`torchrun --node-rank=$SLURM_NODEID`, or
    /// `--rdzv-backend=c10d`, which assigns ranks), and start one launcher per node
    /// (`srun --ntasks-per-node=1`).
    ///
    /// **Example** (real run: `scripts/demo/merge-netns.sh dup`, a second `RANK=0` with
    /// `NODE_RANK=0` on node-b):
    ///
    /// ```
    /// $ doctor merge report-node-a.yaml report-node-b.yaml
    /// error[M004] duplicate-rank-across-nodes: RANK 0 runs on 2 nodes: node-a, node-b
    ///   = fix: give each node its own NODE_RANK (torchrun --node-rank=$SLURM_NODEID, or --rdzv-backend=c10d, which assigns them) so global ranks do not repeat; with SLURM use one launcher per node (--ntasks-per-node=1)
    /// ```
    ///
    /// **torchrun agents with one --node-rank.** Real run of `scripts/testbed/cluster.sh OUT duprank` (tests/cluster_torchrun.rs): nodes as network + PID + UTS + mount namespaces, real torchrun 2.15 with gloo ranks, `doctor report` taken inside each node, merged with `doctor merge DIR`; both nodes started
    /// with `--node-rank 0`, each agent hosts its own store and waits:
    ///
    /// ```
    /// $ doctor merge reports/   # scripts/testbed/cluster.sh OUT duprank
    /// error[M004] duplicate-rank-across-nodes: torchrun runs with --node-rank 0 on 2 nodes: node-a, node-b; each hosts or joins the store as node 0, so the job waits for nodes that never come
    ///   = fix: give each node its own --node-rank (0 on the master node, 1.. on the others: --node-rank=$SLURM_NODEID), or use --rdzv-backend=c10d, which assigns them
    /// ```
    M004, "duplicate-rank-across-nodes", Error, "two nodes claim the same global rank";
    /// # M005 version-mismatch (error for torch, its CUDA build and NCCL; warning for lightning)
    ///
    /// **What.** The nodes have different versions of torch, of torch's CUDA build, of NCCL (the
    /// `nvidia-nccl-*` wheel), of lightning or pytorch_lightning — or one node lacks a package the
    /// others have.
    ///
    /// **Why.** Collectives between different NCCL or torch versions hang or fail with obscure
    /// errors; a node whose environment lacks torch runs the job under another interpreter.
    ///
    /// **How doctor sees it.** Each report reads package metadata of the interpreters it finds
    /// (`DOCTOR_PYTHON`, `VIRTUAL_ENV`, `CONDA_PREFIX`, `python3` on PATH, the managed venv) without
    /// importing torch; the node's versions are those of the first interpreter with torch. CUDA and
    /// NCCL are compared among the nodes that have torch; pytorch_lightning only when lightning agrees.
    ///
    /// **Fix.** One container image or one lock file for the job, installed from the same index on
    /// every node.
    ///
    /// **Example** (real run: the multi-node test `tests/merge.rs`, node-b without the venv; reports
    /// kept in `tests/fixtures/reports/`):
    ///
    /// ```
    /// $ doctor merge tests/fixtures/reports/report-node-*.yaml
    /// doctor merge 2 nodes; rendezvous 10.77.0.1:23476 on master node node-a
    ///   holder: pid 5753 (rank) /root/.pyenv/versions/3.11.7/bin/python3 /work/wt-report/tests/helper…
    ///   world size 2, 3 ranks visible
    ///
    /// node-a (master)  10.77.0.1 fe80::5404:1fff:fe32:87b3  torch 2.15.0 nccl 2.30.7 lightning 2.6.6
    ///   agents: none
    ///   ranks: rank 0 (pid 5753)
    /// node-b  10.77.0.2 fe80::5462:20ff:fec8:8e68  torch - nccl - lightning -
    ///   agents: none
    ///   ranks: rank 1 (pid 5796), rank 0 (pid 5838)
    ///   error[D002] port-held-by-other-job: port 23476 is the rendezvous port of job-5796 (root pid 5796) but is held by pid 5881 (python), which is not part of this job
    ///     = fix: give each job its own port: start one of them with another MASTER_PORT (torchrun --master-port N, or --rdzv-endpoint localhost:0 / --standalone); check a port with `doctor ports --check N`; if the holder is a leftover, stop it with `kill -TERM -- -5881` (process group 5881 of pid 5881)
    ///
    /// summary: 3 errors, 2 warnings, 0 info (nodes' own findings included)
    /// error[M004] duplicate-rank-across-nodes: RANK 0 runs on 2 nodes: node-a, node-b
    ///   = fix: give each node its own NODE_RANK (torchrun --node-rank=$SLURM_NODEID, or --rdzv-backend=c10d, which assigns them) so global ranks do not repeat; with SLURM use one launcher per node (--ntasks-per-node=1)
    /// error[M005] version-mismatch: torch differs between nodes: 2.15.0 on node-a; not installed on node-b
    ///   = fix: install the same torch on every node (one container image or one lock file for the job, packages from the same index); mixed versions hang or fail in the first collective
    /// warning[M003] port-held-by-other-job: on node-b, port 23476 is held by pid 5881 (python) `/root/.pyenv/versions/3.11.7/bin/python3 /work/wt-report/tests/helpers/multinode.py listen 23476`, a program that is no training job; harmless while node-a is the master, a failure as soon as this node hosts rank 0
    ///   = fix: on node-b: `kill -TERM -- -5881`, or give this job another MASTER_PORT (one per job: e.g. MASTER_PORT=$((20000 + SLURM_JOB_ID % 10000)), below the ephemeral range)
    /// warning[M005] version-mismatch: lightning differs between nodes: 2.6.6 on node-a; not installed on node-b
    ///   = fix: install the same lightning on every node (one container image or one lock file for the job, packages from the same index); mixed versions hang or fail in the first collective
    /// see: `doctor explain D002`, `doctor explain M003`, `doctor explain M004`, `doctor explain M005` (what each code means, why, the fix, an example)
    /// ```
    M005, "version-mismatch", Error, "torch / CUDA / NCCL / Lightning versions differ across nodes";
    /// # M006 mixed-jobs (warning)
    ///
    /// **What.** The merged reports come from different jobs: different SLURM job ids (the shell's
    /// `SLURM_JOB_ID` or the ranks'), or ranks with different `TORCHELASTIC_RUN_ID`.
    ///
    /// **Why.** A cluster view of two jobs mixes their ranks and ports. If they are one job, its nodes
    /// were started with different rendezvous ids: under c10d they never meet.
    ///
    /// **Fix.** Merge the reports of one job (take them inside its allocation:
    /// `srun --jobid=$SLURM_JOB_ID --ntasks-per-node=1 doctor report -o report-%N.yaml`); for one job
    /// started with different ids, pass the same `--rdzv-id` to torchrun on every node.
    ///
    /// **Example** (real run: `scripts/demo/merge-netns.sh idle`):
    ///
    /// ```
    /// $ doctor merge report-node-a.yaml report-node-b.yaml
    /// warning[M006] mixed-jobs: the reports come from different jobs: SLURM job ids 4242 on node-a; 4243 on node-b
    ///   = fix: merge the reports of one job only: take them inside the job's allocation (`srun --jobid=$SLURM_JOB_ID --ntasks-per-node=1 doctor report -o report-%N.yaml`)
    /// warning[M006] mixed-jobs: the reports come from different jobs: run ids (TORCHELASTIC_RUN_ID) job-77 on node-a; job-78 on node-b
    ///   = fix: if these nodes are one job, start torchrun with the same --rdzv-id on every node (it becomes TORCHELASTIC_RUN_ID); otherwise merge the reports of one job only
    /// ```
    M006, "mixed-jobs", Warning, "the reports belong to different jobs";
    /// # M007 stale-reports (warning)
    ///
    /// **What.** The reports were taken further apart than `--max-spread` minutes (default 10).
    ///
    /// **Why.** A report from an hour ago describes another moment of the job: ranks may have restarted,
    /// ports moved, processes died. Findings across such reports can be wrong.
    ///
    /// **Fix.** Take all reports at once (`srun --ntasks-per-node=1 doctor report -o report-%N.yaml`,
    /// `pdsh -w NODES doctor report -o ...`) while the job is in the state to show.
    ///
    /// **Example** (real reports of the multi-node test, taken about a second apart, merged with
    /// `--max-spread 0` to show the finding):
    ///
    /// ```
    /// $ doctor merge --max-spread 0 tests/fixtures/reports/report-node-*.yaml
    /// doctor merge 2 nodes; rendezvous 10.77.0.1:23476 on master node node-a
    ///   holder: pid 5753 (rank) /root/.pyenv/versions/3.11.7/bin/python3 /work/wt-report/tests/helper…
    ///   world size 2, 3 ranks visible
    ///
    /// node-a (master)  10.77.0.1 fe80::5404:1fff:fe32:87b3  torch 2.15.0 nccl 2.30.7 lightning 2.6.6
    ///   agents: none
    ///   ranks: rank 0 (pid 5753)
    /// node-b  10.77.0.2 fe80::5462:20ff:fec8:8e68  torch - nccl - lightning -
    ///   agents: none
    ///   ranks: rank 1 (pid 5796), rank 0 (pid 5838)
    ///   error[D002] port-held-by-other-job: port 23476 is the rendezvous port of job-5796 (root pid 5796) but is held by pid 5881 (python), which is not part of this job
    ///     = fix: give each job its own port: start one of them with another MASTER_PORT (torchrun --master-port N, or --rdzv-endpoint localhost:0 / --standalone); check a port with `doctor ports --check N`; if the holder is a leftover, stop it with `kill -TERM -- -5881` (process group 5881 of pid 5881)
    ///
    /// summary: 3 errors, 3 warnings, 0 info (nodes' own findings included)
    /// error[M004] duplicate-rank-across-nodes: RANK 0 runs on 2 nodes: node-a, node-b
    ///   = fix: give each node its own NODE_RANK (torchrun --node-rank=$SLURM_NODEID, or --rdzv-backend=c10d, which assigns them) so global ranks do not repeat; with SLURM use one launcher per node (--ntasks-per-node=1)
    /// error[M005] version-mismatch: torch differs between nodes: 2.15.0 on node-a; not installed on node-b
    ///   = fix: install the same torch on every node (one container image or one lock file for the job, packages from the same index); mixed versions hang or fail in the first collective
    /// warning[M003] port-held-by-other-job: on node-b, port 23476 is held by pid 5881 (python) `/root/.pyenv/versions/3.11.7/bin/python3 /work/wt-report/tests/helpers/multinode.py listen 23476`, a program that is no training job; harmless while node-a is the master, a failure as soon as this node hosts rank 0
    ///   = fix: on node-b: `kill -TERM -- -5881`, or give this job another MASTER_PORT (one per job: e.g. MASTER_PORT=$((20000 + SLURM_JOB_ID % 10000)), below the ephemeral range)
    /// warning[M005] version-mismatch: lightning differs between nodes: 2.6.6 on node-a; not installed on node-b
    ///   = fix: install the same lightning on every node (one container image or one lock file for the job, packages from the same index); mixed versions hang or fail in the first collective
    /// warning[M007] stale-reports: the reports were taken 0.5s apart (node-a at 2026-11-29T00:48:03Z, node-b at 2026-11-29T00:48:03Z), more than 0 minutes: they may describe different moments of the job
    ///   = fix: take all reports at once (`srun --ntasks-per-node=1 doctor report -o report-%N.yaml` or `pdsh -w NODES doctor report -o ...`) while the job is in the state you want to show
    /// see: `doctor explain D002`, `doctor explain M003`, `doctor explain M004`, `doctor explain M005`, `doctor explain M007` (what each code means, why, the fix, an example)
    /// ```
    M007, "stale-reports", Warning, "the reports were taken far apart in time";
    /// # M008 master-mismatch (error)
    ///
    /// **What.** The ranks of some node all name another rendezvous endpoint
    /// (`MASTER_ADDR:MASTER_PORT`) than the job's: the endpoint found on the most nodes (ties go to the
    /// one the reports' shells name). Several jobs on one node are not this finding (see D002).
    ///
    /// **Why.** Ranks that look for different stores never meet: each group waits for the others until
    /// the rendezvous times out. Typical: a per-node script that picks a random or per-host port, or
    /// `MASTER_ADDR=$(hostname)` evaluated on every node.
    ///
    /// **Fix.** Compute `MASTER_ADDR` and `MASTER_PORT` once for the job and pass the same values to
    /// every node (torchrun: the same `--rdzv-endpoint` or `--master-addr`/`--master-port`).
    ///
    /// **Example** (real run: `scripts/demo/merge-netns.sh wrongaddr`, node-b's ranks use the next port):
    ///
    /// ```
    /// $ doctor merge report-node-a.yaml report-node-b.yaml
    /// error[M008] master-mismatch: the nodes do not agree on the rendezvous: the job's is 10.77.0.9:28123 (on node-a), but node-b uses 10.77.0.9:28124
    ///   = fix: give every node the same MASTER_ADDR and MASTER_PORT (torchrun: the same --rdzv-endpoint / --master-addr --master-port; SLURM: derive them once from the first host of $SLURM_JOB_NODELIST)
    /// ```
    ///
    /// **torchrun agents with another port.** Real run of `scripts/testbed/cluster.sh OUT wrongport` (tests/cluster_torchrun.rs): nodes as network + PID + UTS + mount namespaces, real torchrun 2.15 with gloo ranks, `doctor report` taken inside each node, merged with `doctor merge DIR`; node-b's torchrun got
    /// `--master-port` one higher (the endpoint is read from torchrun's arguments):
    ///
    /// ```
    /// $ doctor merge reports/   # scripts/testbed/cluster.sh OUT wrongport
    /// error[M008] master-mismatch: the nodes do not agree on the rendezvous: the job's is 10.78.0.1:29577 (on node-a, node-b), but node-b uses 10.78.0.1:29578
    ///   = fix: give every node the same MASTER_ADDR and MASTER_PORT (torchrun: the same --rdzv-endpoint / --master-addr --master-port; SLURM: derive them once from the first host of $SLURM_JOB_NODELIST)
    /// ```
    M008, "master-mismatch", Error, "nodes use different rendezvous endpoints";
    /// # M009 duplicate-node (warning)
    ///
    /// **What.** Two merged reports come from the same node (same host name, same addresses).
    ///
    /// **Why.** Usually several tasks per node each wrote a report (`srun` without
    /// `--ntasks-per-node=1`), or an old and a new report of one node were both passed (a job
    /// restarted between them). The merge counts such reports as one node: their ranks are not
    /// duplicates across nodes (M004), a loopback `MASTER_ADDR` is not "ranks on several nodes"
    /// (M001), and each rank counts once. The same report passed twice (one file named twice,
    /// a copy of it, or its YAML and JSON forms) is not this finding but bad input: `error:` and
    /// `hint:`, exit 2.
    ///
    /// **Fix.** One report per node; merge only the latest of each.
    ///
    /// **Example** (real: two reports of one node, taken 2 s apart):
    ///
    /// ```
    /// $ doctor merge report-vm-1.yaml report-vm-2.yaml
    /// warning[M009] duplicate-node: 2 reports come from the same node vm
    ///   = fix: take one report per node (`srun --ntasks-per-node=1 ...`) and merge only the latest of each node
    /// ```
    M009, "duplicate-node", Warning, "the same node was reported twice";
    /// # M010 missing-ranks (info)
    ///
    /// **What.** The ranks' `WORLD_SIZE` is larger than the number of ranks the reports show.
    ///
    /// **Why.** Reports of some nodes are missing, or some ranks did not start (scheduler, OOM, a crash
    /// before rendezvous). Lightning's rank 0 gets its identity in `os.environ` after start, so it shows
    /// only once it has started children (see D001's notes): a one-rank gap on a Lightning job is expected.
    ///
    /// **Fix.** Add the reports of the missing nodes; check the scheduler log of ranks that did not start.
    ///
    /// **Example** (real run: `scripts/demo/merge-netns.sh idle`, `WORLD_SIZE=4` on two ranks):
    ///
    /// ```
    /// $ doctor merge report-node-a.yaml report-node-b.yaml
    /// info[M010] missing-ranks: WORLD_SIZE is 4 but the reports show 2 ranks (Lightning's rank 0 shows only once it has started children)
    ///   = fix: add the reports of the missing nodes, or check why their ranks did not start (scheduler log)
    /// ```
    ///
    /// **Fewer nodes than --nnodes, or an agent gone.** Real runs of `scripts/testbed/cluster.sh OUT missing` (tests/cluster_torchrun.rs): nodes as network + PID + UTS + mount namespaces, real torchrun 2.15 with gloo ranks, `doctor report` taken inside each node, merged with `doctor merge DIR` (`--nnodes 3`,
    /// node-c never started) and of `agentkilled` (node-b's agent killed with SIGKILL after the ranks
    /// started):
    ///
    /// ```
    /// $ doctor merge reports/   # scripts/testbed/cluster.sh OUT missing
    /// warning[M010] missing-ranks: torchrun expects 3 nodes (--nnodes) but only 2 run its agent (node-a, node-b): 1 node without a report; the agents wait at the rendezvous until every node has joined
    ///   = fix: start torchrun on every node of the job (scheduler log: did each task start? `srun -N` and --nnodes must agree); add the reports of the nodes not merged; on a node whose agent exited, its log says why
    ///
    /// $ doctor merge reports/   # scripts/testbed/cluster.sh OUT agentkilled
    /// warning[M010] missing-ranks: on node-b, the job's ranks (pid 7) run without their torchrun agent (killed or crashed) while the other nodes' agents still run: nobody restarts them or reports their failure, and the next rendezvous round waits for node-b
    ///   = fix: on node-b: `kill -TERM 7` (pids of node-b's PID namespace pid:[4026532447], not host pids: run it there), then restart torchrun there with the same arguments; check its log or dmesg for why the agent died (OOM killer?)
    /// ```
    M010, "missing-ranks", Info, "fewer ranks were seen than WORLD_SIZE";
    /// # S001 module-level-launch
    ///
    /// Severity: **warning**. When the program also makes spawn/forkserver children, the launch line is
    /// reported once, as [S002](S002.md) (an error), not as S001 and S002 (issue 19); with `--select
    /// S001` (S002 not selected) it is still reported, as S001. `# noqa`, `# noqa: S001` or
    /// `# noqa: S002` on the line silences it.
    ///
    /// Star imports: `from utils import *` is followed to a sibling `utils.py` (or `utils/__init__.py`,
    /// relative imports too, three levels deep), whose imports count as the file's; with no sibling, a
    /// name the file never binds is read as the library it is spelled like (`torch`, `dist` for
    /// `torch.distributed`, `L` for `lightning`, `pl`, `accelerate`, `deepspeed`), or as a member of a
    /// star-imported library (`from torch.distributed import *` then `init_process_group()`).
    ///
    /// The help shows the flagged statement's own text, with its arguments, moved into `main()`; a call
    /// of a same-file function that launches (a bare `main()` at module level) is shown guarded where
    /// it is.
    ///
    /// ## What
    ///
    /// A distributed launch or process-group init is reachable at import time, outside
    /// `if __name__ == "__main__":`. `doctor scan` recognises:
    ///
    /// - `Fabric(...).launch()` and `fabric.launch()` on a variable assigned from `Fabric(...)`
    ///   (`lightning`, `lightning.fabric`, `lightning_fabric`, `pytorch_lightning`, any alias);
    /// - `Trainer(...).fit/validate/test/predict(...)` (also through a variable) when the Trainer asks
    ///   for several processes: a `ddp*`/`fsdp*`/`deepspeed*` strategy string or a `DDPStrategy`/
    ///   `FSDPStrategy`/`DeepSpeedStrategy` object, `devices` > 1, `-1`, `"-1"`, `"0,1"` or a list of
    ///   several, `num_nodes` > 1. `devices="auto"` and non-literal values are not counted (a plain
    ///   `Trainer()` would otherwise always be flagged);
    /// - torch: `torch.distributed.init_process_group`, `TCPStore(...)`, `init_device_mesh(...)` and
    ///   `DeviceMesh(...)` (they call `init_process_group()` when no default group exists:
    ///   `DeviceMesh._setup_world_group_and_device`), `torch.distributed.rpc.init_rpc`,
    ///   `torch.multiprocessing.spawn` / `start_processes`,
    ///   `torch.distributed.elastic.multiprocessing.start_processes`,
    ///   `torch.distributed.launcher.api.elastic_launch` / `launch_agent`, and torchrun as a library
    ///   call (`torch.distributed.run.main` / `run`, `torch.distributed.launch.main`);
    /// - accelerate: `Accelerator()`, the state objects `PartialState()` and `AcceleratorState()` (their
    ///   `__init__` initialises the process group when the environment says distributed),
    ///   `notebook_launcher`, `debug_launcher`;
    /// - DeepSpeed: `deepspeed.initialize`, `init_distributed` (also `deepspeed.comm.init_distributed`),
    ///   `deepspeed.zero.Init()` (calls `init_distributed()` when no group exists), and
    ///   `deepspeed.init_inference(..., mp_size=N)` / `tensor_parallel={"tp_size": N}` with N not a
    ///   literal 1 (its `InferenceEngine` creates the model-parallel group with `init_distributed()`);
    /// - Lightning: `LightningCLI(...)` (which fits on construction) unless it is given `run=False`;
    ///
    /// A decorator is a call of the decorator with the function; one that only calls the function when
    /// its module is `__main__` is no launch: fastcore's `@call_parse` checks the caller's `__name__`,
    /// so a spawn child (which imports the script as `__mp_main__`) does not run it.
    ///
    /// `# noqa: S001` (or a bare `# noqa`) on the line of the finding suppresses it, as in ruff.
    ///
    ///
    /// through every import form: `import lightning as L`, `from lightning.fabric import Fabric as F`,
    /// `from torch import distributed as dist`, `import torch.distributed as d` (any alias),
    /// `from torch.distributed import init_process_group`, `import torch` then
    /// `torch.distributed.init_process_group`, and so on; and through a module-level name bound to
    /// the launch function (`init = dist.init_process_group` then `init("gloo")`), to its
    /// `functools.partial` (`start = partial(dist.init_process_group, "gloo")` then `start()`) or to
    /// a lambda that calls it (`go = lambda: dist.init_process_group("gloo")` then `go()`), and
    /// such a partial or lambda called where it is made (`partial(dist.init_process_group,
    /// "gloo")()`, `(lambda: dist.init_process_group("gloo"))()`). Not found: a launch function
    /// kept in a container (`fns["pg"]("gloo")`), reached through `getattr(dist, name)`, or passed
    /// as an argument to a function of another module.
    ///
    /// "At import time" means: top-level statements; everything nested in top-level `try`/`with`/`for`/
    /// `while`/`if`/`match` blocks (other than the body of the main guard, which is recognised in both
    /// orders, `__name__ == "__main__"` and `"__main__" == __name__`; its `else` branch *is* import
    /// time, and so is the body of `if __name__ != "__main__":`); class bodies; decorators (a decorator
    /// is called when the function is defined); default arguments; comprehensions. Lambda and function
    /// bodies are not, unless a same-file function is called from import-time code (also a same-file
    /// class, which runs its `__init__`, a method called on an instance of one: `runner = Runner()`
    /// then `runner.start()`, or `Runner().start()`, and `self.method()` inside its methods): such
    /// calls are followed transitively, with recursion cycles cut, and the finding is reported at the import-time call with the launch itself
    /// as a note. `if __name__ == "__main__" and ...:` counts as a main guard too.
    ///
    /// ## Why
    ///
    /// Every process that imports the file runs the launch again. Lightning's launcher starts ranks
    /// 1..N-1 by re-running the script, which is why `fabric.launch()` at module level works with the
    /// default `fork` start method; but a spawn or forkserver child (a DataLoader worker with
    /// `multiprocessing_context="spawn"`, the platform default on macOS, or on Linux from Python 3.14)
    /// re-imports the main file as `__mp_main__` and launches a second time. See [S002](S002.md).
    ///
    /// ## Fix
    ///
    /// Move the launch into a function that only runs under the main guard:
    ///
    /// ```python
    /// def main():
    ///     fabric.launch()
    ///     ...
    ///
    /// if __name__ == "__main__":
    ///     main()
    /// ```
    ///
    /// Creating the `Fabric(...)` or `Trainer(...)` object at module level is harmless; launching or
    /// fitting is what must move.
    ///
    /// `doctor scan --fix FILE` does this rewrite (`--diff` shows it first) and
    /// `doctor repro FILE --verify-fix` proves it on the script under spawn, forkserver and fork: see
    /// [scan-fix.md](../scan-fix.md).
    ///
    /// ## Example
    ///
    /// `tests/fixtures/scan/trainer_pl.py`:
    ///
    /// ```python
    /// import pytorch_lightning as pl
    /// from tiny_module import TinyPL
    ///
    /// model = TinyPL()
    /// trainer = pl.Trainer(strategy="ddp", devices=2, fast_dev_run=True)
    /// trainer.fit(model)  # expect: S001
    /// ```
    ///
    /// ```text
    /// $ doctor scan --platform linux --python-version 3.11 tests/fixtures/scan/trainer_pl.py
    /// warning[S001] module-level-launch: `trainer.fit()` starts distributed work at import time, outside `if __name__ == "__main__":`
    ///  --> tests/fixtures/scan/trainer_pl.py:6:1
    ///   |
    /// 6 | trainer.fit(model)  # expect: S001
    ///   | ^^^^^^^^^^^^^^^^^^
    ///   |
    ///   = fix: move it under a main guard:
    ///         def main():
    ///             trainer.fit(model)  # expect: S001
    ///             ...
    ///
    ///         if __name__ == "__main__":
    ///             main()
    ///
    /// Found 1 problem (0 errors, 1 warning) in 1 file; 1 file scanned.
    /// $ echo $?
    /// 1
    /// ```
    ///
    /// Through same-file calls (`tests/fixtures/scan/transitive_calls.py`, which also holds a
    /// `ping`/`pong` recursion cycle that launches nothing and is not reported):
    ///
    /// ```text
    /// $ doctor scan --platform linux --python-version 3.11 tests/fixtures/scan/transitive_calls.py
    /// warning[S001] module-level-launch: `setup()` starts distributed work at import time through `fabric.launch()` (line 7), outside `if __name__ == "__main__":`
    ///   --> tests/fixtures/scan/transitive_calls.py:34:1
    ///    |
    /// 34 | setup()  # expect: S001
    ///    | ^^^^^^^
    ///    |
    ///    = note: `fabric.launch()` is called here, inside `launch_it()`
    ///   --> tests/fixtures/scan/transitive_calls.py:7:5
    ///    |
    ///  7 |     fabric.launch()
    ///    |     ^^^^^^^^^^^^^^^
    ///    |
    ///    = fix: move it under a main guard:
    ///          if __name__ == "__main__":
    ///              setup()  # expect: S001
    ///
    /// warning[S001] module-level-launch: `rec_a()` starts distributed work at import time through `fabric.launch()` (line 30), outside `if __name__ == "__main__":`
    ///   --> tests/fixtures/scan/transitive_calls.py:35:1
    ///    |
    /// 35 | rec_a()  # expect: S001
    ///    | ^^^^^^^
    ///    |
    ///    = note: `fabric.launch()` is called here, inside `rec_b()`
    ///   --> tests/fixtures/scan/transitive_calls.py:30:5
    ///    |
    /// 30 |     fabric.launch()
    ///    |     ^^^^^^^^^^^^^^^
    ///    |
    ///    = fix: move it under a main guard:
    ///          if __name__ == "__main__":
    ///              rec_a()  # expect: S001
    ///
    /// Found 2 problems (0 errors, 2 warnings) in 1 file; 1 file scanned.
    /// $ echo $?
    /// 1
    /// ```
    ///
    /// Through aliases, `functools.partial` and lambdas (`tests/fixtures/scan/launch_aliases.py`):
    ///
    /// ```python
    /// # The launch through a module alias, a name bound to it, functools.partial or a lambda, and a
    /// # partial or lambda called where it is made.
    /// import functools
    /// from functools import partial
    ///
    /// import torch.distributed as d
    /// from torch import distributed
    ///
    /// init = d.init_process_group
    /// start = functools.partial(d.init_process_group, "gloo")
    /// go = lambda: distributed.init_process_group("gloo")
    ///
    /// init("gloo")  # expect: S001
    /// d.destroy_process_group()
    /// start()  # expect: S001
    /// d.destroy_process_group()
    /// go()  # expect: S001
    /// d.destroy_process_group()
    /// partial(d.init_process_group, "gloo")()  # expect: S001
    /// d.destroy_process_group()
    /// (lambda: distributed.init_process_group("gloo"))()  # expect: S001
    /// ```
    ///
    /// ```text
    /// $ doctor scan --platform linux --python-version 3.11 tests/fixtures/scan/launch_aliases.py
    /// warning[S001] module-level-launch: `init()` starts distributed work at import time, outside `if __name__ == "__main__":`
    ///   --> tests/fixtures/scan/launch_aliases.py:13:1
    ///    |
    /// 13 | init("gloo")  # expect: S001
    ///    | ^^^^^^^^^^^^
    ///    |
    ///    = fix: move it under a main guard:
    ///          def main():
    ///              init("gloo")  # expect: S001
    ///              ...
    ///
    ///          if __name__ == "__main__":
    ///              main()
    ///
    /// warning[S001] module-level-launch: `start()` starts distributed work at import time, outside `if __name__ == "__main__":`
    ///   --> tests/fixtures/scan/launch_aliases.py:15:1
    ///    |
    /// 15 | start()  # expect: S001
    ///    | ^^^^^^^
    ///    |
    ///    = fix: move it under a main guard:
    ///          def main():
    ///              start()  # expect: S001
    ///              ...
    ///
    ///          if __name__ == "__main__":
    ///              main()
    ///
    /// warning[S001] module-level-launch: `go()` starts distributed work at import time, outside `if __name__ == "__main__":`
    ///   --> tests/fixtures/scan/launch_aliases.py:17:1
    ///    |
    /// 17 | go()  # expect: S001
    ///    | ^^^^
    ///    |
    ///    = fix: move it under a main guard:
    ///          def main():
    ///              go()  # expect: S001
    ///              ...
    ///
    ///          if __name__ == "__main__":
    ///              main()
    ///
    /// warning[S001] module-level-launch: `partial(d.init_process_group, ...)()` starts distributed work at import time, outside `if __name__ == "__main__":`
    ///   --> tests/fixtures/scan/launch_aliases.py:19:1
    ///    |
    /// 19 | partial(d.init_process_group, "gloo")()  # expect: S001
    ///    | ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
    ///    |
    ///    = fix: move it under a main guard:
    ///          def main():
    ///              partial(d.init_process_group, "gloo")()  # expect: S001
    ///              ...
    ///
    ///          if __name__ == "__main__":
    ///              main()
    ///
    /// warning[S001] module-level-launch: `(lambda: distributed.init_process_group())()` starts distributed work at import time, outside `if __name__ == "__main__":`
    ///   --> tests/fixtures/scan/launch_aliases.py:21:1
    ///    |
    /// 21 | (lambda: distributed.init_process_group("gloo"))()  # expect: S001
    ///    | ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
    ///    |
    ///    = fix: move it under a main guard:
    ///          def main():
    ///              (lambda: distributed.init_process_group("gloo"))()  # expect: S001
    ///              ...
    ///
    ///          if __name__ == "__main__":
    ///              main()
    ///
    /// Found 5 problems (0 errors, 5 warnings) in 1 file; 1 file scanned.
    /// $ echo $?
    /// 1
    /// ```
    ///
    /// ## Limits
    ///
    /// - One file at a time: a launch inside another module of the project is reported in that module's
    ///   own scan, and spawn evidence in one file is not linked to a launch in another (S002).
    /// - Names resolve through `import`/`from ... import` (any alias, any scope); `from x import *`,
    ///   `getattr` and re-exports through the project's own modules are not followed.
    /// - Variables holding a `Fabric`/`Trainer`/class instance are tracked by name across the file,
    ///   without flow analysis.
    /// - A `Trainer` whose `devices`/`strategy` are not literals (`devices=args.gpus`) or are `"auto"`
    ///   is not counted as multi-process; `Fabric(...).launch()` is always counted.
    /// - Functions defined inside other functions, and methods inherited from a base class, are not
    ///   followed (`self.method()` within a same-file class is).
    ///
    /// Measured on real library code (the test `no_false_positives_on_torch_and_lightning`): 0 S001
    /// and 0 S002 in the 3009 files of torch 2.15, lightning, lightning_fabric and pytorch_lightning
    /// 2.6.6 (and 0 in all 7400 files of the managed venv's site-packages).
    S001, "module-level-launch", Warning, "Distributed launch or init reachable at import time";
    /// # S002 spawn-reimports-main
    ///
    /// Severity: **error**. It is the [S001](S001.md) finding of a program that makes spawn/forkserver
    /// children: one diagnostic per launch line (not S001 and S002 at the same line, since issue 19),
    /// with the places that make the children attached as notes, as ruff attaches secondary spans.
    ///
    /// ## What
    ///
    /// The program starts spawn or forkserver children while a launch runs at import time (S001). The
    /// evidence can be anywhere in the file, also inside `main()` or under the guard, because it is the
    /// children that re-import the file:
    ///
    /// - `multiprocessing_context=` / `mp_context=` / `start_method=` set to `"spawn"` or `"forkserver"`;
    /// - `set_start_method("spawn" | "forkserver")`, `get_context("spawn" | "forkserver")`, and
    ///   `get_context()` with no argument when the platform default is spawn or forkserver;
    /// - `torch.multiprocessing.spawn(...)`, `start_processes(...)` without a `start_method`, and a
    ///   Lightning strategy string containing `spawn` (`"ddp_spawn"`);
    /// - with the platform default: a `DataLoader` with `num_workers` > 0 (a non-zero literal, or any
    ///   non-literal value) and no `multiprocessing_context`, or `multiprocessing.Process`/`Pool`,
    ///   `ProcessPoolExecutor` without a context. The default is spawn on macOS and Windows, forkserver
    ///   on Linux from Python 3.14, fork on Linux before 3.14. `--platform linux|macos|windows` and
    ///   `--python-version X.Y` set the assumption; by default it is this machine's OS and the version of
    ///   `python3` on PATH (3.11 when there is none). JSON output records the assumption in `assumed`.
    ///
    /// The finding is reported at the launch line; the line that makes the children is a note
    /// (`related` in JSON, `relatedLocations` in SARIF).
    ///
    /// ## Why
    ///
    /// What the message says depends on the kind of launch:
    ///
    /// - The launch itself starts the children (`torch.multiprocessing.spawn(...)`,
    ///   `start_processes(...)` at module level): each child re-imports the file, reaches the same line
    ///   while it is still starting, and fails with `RuntimeError: An attempt has been made to start a
    ///   new process before the current process has finished its bootstrapping phase.` (CPython's
    ///   `multiprocessing.spawn._check_not_importing_main`), the parent then with
    ///   `ProcessRaisedException`/`ProcessExitedException`.
    /// - Any other launch (init, a store, `fabric.launch()`, `Accelerator()`) with children made
    ///   elsewhere: the child runs it again, as below.
    ///
    /// A spawn or forkserver child runs `multiprocessing.spawn`'s `_fixup_main_from_path`, which
    /// re-imports the main script as `__mp_main__`. Its unguarded `fabric.launch()` sees the
    /// `LOCAL_RANK`/`MASTER_PORT` the parent's launcher put in the environment, believes it is rank 0
    /// again, and its TCPStore binds the rendezvous port the parent already holds:
    /// `DistNetworkError: ... port: 33281 ... EADDRINUSE`. Children of ranks >= 1 connect to rank 0's
    /// store as a duplicate rank and hang. With `fork` nothing is re-imported, so the same script passes.
    ///
    /// ## Fix
    ///
    /// Move the launch under the main guard (as for S001); the children then import the file without
    /// launching. Choosing a `"fork"` context also avoids the re-import, but only on Linux and only until
    /// something else picks spawn; the guard is the fix.
    ///
    /// `doctor scan --fix FILE` moves the launch into `main()` under the guard; see
    /// [scan-fix.md](../scan-fix.md).
    ///
    /// ## Example
    ///
    /// The seed case, `tests/fixtures/scan/seed.py`:
    ///
    /// ```python
    /// import torch
    /// import lightning as L
    /// from torch.utils.data import DataLoader, TensorDataset
    ///
    /// fabric = L.Fabric(accelerator="cpu", devices=2, strategy="ddp")
    /// fabric.launch()
    ///
    /// def main():
    ///     ds = TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
    ///     loader = DataLoader(ds, batch_size=8, num_workers=1, multiprocessing_context="spawn")
    ///     model = torch.nn.Linear(4, 1)
    ///     ...
    ///
    /// if __name__ == "__main__":
    ///     main()
    /// # expect: S001@6 S002@6
    /// ```
    ///
    /// ```text
    /// $ doctor scan --platform linux --python-version 3.11 tests/fixtures/scan/seed.py
    /// error[S002] spawn-reimports-main: `fabric.launch()` starts distributed work at import time, and this program makes spawn/forkserver children, which re-import the file as `__mp_main__` and run it again: the child binds the rendezvous port its parent already holds (EADDRINUSE), or, where a launcher's agent hosts the store (torchrun), joins as a duplicate rank and hangs
    ///   --> tests/fixtures/scan/seed.py:6:1
    ///    |
    ///  6 | fabric.launch()
    ///    | ^^^^^^^^^^^^^^^
    ///    |
    ///    = note: spawn/forkserver children are made here: multiprocessing_context="spawn"
    ///   --> tests/fixtures/scan/seed.py:10:58
    ///    |
    /// 10 |     loader = DataLoader(ds, batch_size=8, num_workers=1, multiprocessing_context="spawn")
    ///    |                                                          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
    ///    |
    ///    = fix: keep the launch under the main guard, which children skip:
    ///          def main():
    ///              fabric.launch()
    ///              ...
    ///
    ///          if __name__ == "__main__":
    ///              main()
    ///      (a "fork" context also avoids the re-import, on Linux only)
    ///
    /// Found 1 problem (1 error, 0 warnings) in 1 file; 1 file scanned.
    /// $ echo $?
    /// 1
    /// ```
    ///
    /// The fixed form (`tests/fixtures/scan/seed_fixed.py`, launch inside `main()`) is clean:
    ///
    /// ```text
    /// $ doctor scan --platform linux --python-version 3.11 tests/fixtures/scan/seed_fixed.py
    /// No problems found: 1 file scanned.
    /// $ echo $?
    /// 0
    /// ```
    ///
    /// With the platform default (`tests/fixtures/scan/num_workers_linux_314.py`, a DataLoader with
    /// `num_workers=4` and no context): S001 only on Python 3.11, S002 on 3.14:
    ///
    /// ```text
    /// $ doctor scan --platform linux --python-version 3.11 tests/fixtures/scan/num_workers_linux_314.py
    /// warning[S001] module-level-launch: `fabric.launch()` starts distributed work at import time, outside `if __name__ == "__main__":`
    ///  --> tests/fixtures/scan/num_workers_linux_314.py:6:1
    ///   |
    /// 6 | fabric.launch()  # expect: S002
    ///   | ^^^^^^^^^^^^^^^
    ///   |
    ///   = fix: move it under a main guard:
    ///         def main():
    ///             fabric.launch()  # expect: S002
    ///             ...
    ///
    ///         if __name__ == "__main__":
    ///             main()
    ///
    /// Found 1 problem (0 errors, 1 warning) in 1 file; 1 file scanned.
    /// $ echo $?
    /// 1
    ///
    /// $ doctor scan --platform linux --python-version 3.14 tests/fixtures/scan/num_workers_linux_314.py
    /// error[S002] spawn-reimports-main: `fabric.launch()` starts distributed work at import time, and this program makes spawn/forkserver children, which re-import the file as `__mp_main__` and run it again: the child binds the rendezvous port its parent already holds (EADDRINUSE), or, where a launcher's agent hosts the store (torchrun), joins as a duplicate rank and hangs
    ///  --> tests/fixtures/scan/num_workers_linux_314.py:6:1
    ///   |
    /// 6 | fabric.launch()  # expect: S002
    ///   | ^^^^^^^^^^^^^^^
    ///   |
    ///   = note: spawn/forkserver children are made here: DataLoader(num_workers=4) with the platform default start method "forkserver"
    ///  --> tests/fixtures/scan/num_workers_linux_314.py:9:14
    ///   |
    /// 9 |     loader = DataLoader([], batch_size=4, num_workers=4)
    ///   |              ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
    ///   |
    ///   = fix: keep the launch under the main guard, which children skip:
    ///         def main():
    ///             fabric.launch()  # expect: S002
    ///             ...
    ///
    ///         if __name__ == "__main__":
    ///             main()
    ///     (a "fork" context also avoids the re-import, on Linux only)
    ///
    /// Found 1 problem (1 error, 0 warnings) in 1 file; 1 file scanned.
    /// $ echo $?
    /// 1
    /// ```
    S002, "spawn-reimports-main", Error, "Spawn or forkserver children re-run the module-level launch";
    /// # S003 module-level-cuda
    ///
    /// Severity: **warning**.
    ///
    /// ## What
    ///
    /// CUDA work at import time: a `torch.cuda.*` call that initialises CUDA, `.cuda()`,
    /// `.to("cuda...")`, `.to(device="cuda")`, `.to(torch.device("cuda"))`, or a `torch.*` call with
    /// `device="cuda..."`. Not reported: the `amp`, `nvtx`, `jiterator` and private `_*` helpers other
    /// than `_lazy_init`, and these calls, which do not initialise CUDA (decided from torch 2.15's own
    /// source, `torch/cuda/__init__.py`, `random.py`, `memory.py`):
    ///
    /// | call | why it creates no CUDA context |
    /// |---|---|
    /// | `is_available`, `device_count` | NVML or `cudaGetDeviceCount`, no context (documented "will NOT poison fork" with NVML) |
    /// | `is_initialized`, `get_arch_list`, `get_gencode_flags`, `is_current_stream_capturing` | queries of torch's own state or build |
    /// | `manual_seed`, `manual_seed_all`, `seed`, `seed_all`, `set_rng_state`, `set_rng_state_all` | queued with `_lazy_call` until CUDA is initialised ("safe to call if CUDA is not available") |
    /// | `empty_cache` | `if is_initialized(): ...` — nothing before initialisation |
    /// | `memory_stats`, `memory_stats_as_nested_dict`, `memory_allocated`, `max_memory_allocated`, `memory_reserved`, `max_memory_reserved`, `memory_cached`, `max_memory_cached` | `if not is_initialized(): return {}` |
    ///
    /// Still reported because they do initialise: `set_device` (`_cuda_setDevice`), `current_device`,
    /// `synchronize`, `get_device_properties`/`get_device_name`/`get_device_capability`
    /// (`_lazy_init()`), `get_rng_state`, `reset_peak_memory_stats`, `mem_get_info`,
    /// `set_per_process_memory_fraction`, and `is_bf16_supported` (it calls `current_device()` when CUDA
    /// is available). The list lives in `src/scan/symbols.rs` (`LAZY_CUDA`).
    ///
    /// `# noqa: S003` (or a bare `# noqa`) on the line suppresses the finding, as in ruff.
    /// Import time is defined as for [S001](S001.md), same-file calls included.
    ///
    /// ## Why
    ///
    /// Every spawn or forkserver child (DataLoader workers, `mp.spawn` ranks) re-imports the main file
    /// and repeats the work: each creates a CUDA context (hundreds of MiB, often on GPU 0), and a
    /// DataLoader worker that touches CUDA can crash. CUDA also cannot be re-initialised in a forked
    /// child, so module-level CUDA work breaks `fork` as well.
    ///
    /// ## Fix
    ///
    /// Do the CUDA work in `main()` under the main guard, or in a function called from there.
    ///
    /// ## Example
    ///
    /// `tests/fixtures/scan/cuda_module_level.py`:
    ///
    /// ```python
    /// import torch
    ///
    /// HAS_CUDA = torch.cuda.is_available()
    /// torch.cuda.set_device(0)  # expect: S003
    /// model = torch.nn.Linear(4, 1).cuda()  # expect: S003
    /// x = torch.zeros(3).to("cuda:0")  # expect: S003
    /// y = torch.ones(3).to(device="cuda")  # expect: S003
    /// z = torch.randn(3, device="cuda")  # expect: S003
    /// w = torch.ones(3).to(torch.device("cuda", 1))  # expect: S003
    /// cpu = torch.ones(3).to("cpu")
    /// ```
    ///
    /// ```text
    /// $ doctor scan --platform linux --python-version 3.11 --select S003 tests/fixtures/scan/cuda_module_level.py
    /// warning[S003] module-level-cuda: `torch.cuda.set_device()` does CUDA work at import time; every spawn/forkserver child repeats it
    ///  --> tests/fixtures/scan/cuda_module_level.py:4:1
    ///   |
    /// 4 | torch.cuda.set_device(0)  # expect: S003
    ///   | ^^^^^^^^^^^^^^^^^^^^^^^^
    ///   |
    ///   = fix: move it under a main guard:
    ///         def main():
    ///             torch.cuda.set_device(0)  # expect: S003
    ///             ...
    ///
    ///         if __name__ == "__main__":
    ///             main()
    ///
    /// warning[S003] module-level-cuda: `torch.nn.Linear(...).cuda()` does CUDA work at import time; every spawn/forkserver child repeats it
    ///  --> tests/fixtures/scan/cuda_module_level.py:5:9
    ///   |
    /// 5 | model = torch.nn.Linear(4, 1).cuda()  # expect: S003
    ///   |         ^^^^^^^^^^^^^^^^^^^^^^^^^^^^
    ///   |
    ///   = fix: move it under a main guard:
    ///         def main():
    ///             model = torch.nn.Linear(4, 1).cuda()  # expect: S003
    ///             ...
    ///
    ///         if __name__ == "__main__":
    ///             main()
    ///
    /// warning[S003] module-level-cuda: `torch.zeros(...).to("cuda")` does CUDA work at import time; every spawn/forkserver child repeats it
    ///  --> tests/fixtures/scan/cuda_module_level.py:6:5
    ///   |
    /// 6 | x = torch.zeros(3).to("cuda:0")  # expect: S003
    ///   |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^
    ///   |
    ///   = fix: move it under a main guard:
    ///         def main():
    ///             x = torch.zeros(3).to("cuda:0")  # expect: S003
    ///             ...
    ///
    ///         if __name__ == "__main__":
    ///             main()
    ///
    /// warning[S003] module-level-cuda: `torch.ones(...).to("cuda")` does CUDA work at import time; every spawn/forkserver child repeats it
    ///  --> tests/fixtures/scan/cuda_module_level.py:7:5
    ///   |
    /// 7 | y = torch.ones(3).to(device="cuda")  # expect: S003
    ///   |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
    ///   |
    ///   = fix: move it under a main guard:
    ///         def main():
    ///             y = torch.ones(3).to(device="cuda")  # expect: S003
    ///             ...
    ///
    ///         if __name__ == "__main__":
    ///             main()
    ///
    /// warning[S003] module-level-cuda: `torch.randn(device="cuda")` does CUDA work at import time; every spawn/forkserver child repeats it
    ///  --> tests/fixtures/scan/cuda_module_level.py:8:5
    ///   |
    /// 8 | z = torch.randn(3, device="cuda")  # expect: S003
    ///   |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
    ///   |
    ///   = fix: move it under a main guard:
    ///         def main():
    ///             z = torch.randn(3, device="cuda")  # expect: S003
    ///             ...
    ///
    ///         if __name__ == "__main__":
    ///             main()
    ///
    /// warning[S003] module-level-cuda: `torch.ones(...).to("cuda")` does CUDA work at import time; every spawn/forkserver child repeats it
    ///  --> tests/fixtures/scan/cuda_module_level.py:9:5
    ///   |
    /// 9 | w = torch.ones(3).to(torch.device("cuda", 1))  # expect: S003
    ///   |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
    ///   |
    ///   = fix: move it under a main guard:
    ///         def main():
    ///             w = torch.ones(3).to(torch.device("cuda", 1))  # expect: S003
    ///             ...
    ///
    ///         if __name__ == "__main__":
    ///             main()
    ///
    /// Found 6 problems (0 errors, 6 warnings) in 1 file; 1 file scanned.
    /// $ echo $?
    /// 1
    /// ```
    ///
    /// ## Known hits in library code
    ///
    /// On torch 2.15's own sources `doctor scan` reports 7 S003, all in `torch/testing/_internal/`
    /// (`common_device_type.py`, `common_methods_invocations.py`, `common_utils.py`, `jit_utils.py`):
    /// test helpers that really do query devices or set memory fractions at import time, behind
    /// `if torch.cuda.is_available()`-style conditions. They are true findings for test utilities that
    /// are never the main module of a training job.
    S003, "module-level-cuda", Warning, "CUDA work at import time";
    /// # S900 parse-error
    ///
    /// Severity: **error**.
    ///
    /// ## What
    ///
    /// The file is not valid Python (ruff's parser, `ruff_python_parser` 0.0.10, which accepts the 3.12+
    /// syntax: `type` aliases, PEP 695 generics, `match`, the walrus operator). The diagnostic carries
    /// the location of the first syntax error; the file is not analysed further, and the scan goes on
    /// with the other files.
    ///
    /// Also reported: what the parser accepts but Python's compiler rejects before running anything: a
    /// `from __future__` import after other statements (only the docstring and other future imports
    /// may precede it: "from __future__ imports must occur at the beginning of the file"), and an unknown
    /// future feature ("future feature X is not defined"; `braces`: "not a chance").
    ///
    /// Also reported, beside what the rest of the file gives: code nested more than 400 levels deep
    /// (`scan::walk::MAX_DEPTH`; a 1,000-term `+` chain, `.a()` or `[0]` chains, `not not ...`),
    /// which Python compiles but doctor's analysis does not descend into, so a launch down there
    /// would be missed: "not fully checked: the code here is nested more than 400 levels deep",
    /// at the start of the deepest expression that was checked. The file is never reported clean, and `--fix` refuses
    /// to rewrite it ("not fixed PATH: line N is nested more than 400 levels deep and was not
    /// checked"). Split the expression (assign parts of it to variables).
    ///
    /// Files that cannot be decoded are not S900: they are listed in `files_skipped` (JSON) and as
    /// `warning: skipped PATH: reason` on stderr, without changing the exit code. Decoding follows
    /// PEP 263: UTF-8 by default (a UTF-8 BOM is accepted), or the coding declaration on line 1 or 2
    /// (`utf-8`, `latin-1`/`iso-8859-1`, `ascii`, `cp1252` and their aliases). Skipped: non-UTF-8
    /// text without a declaration, unknown encodings, binary files (NUL bytes), files over 10 MiB.
    ///
    /// A file that names none of the launch and CUDA names the rules need (`scan::NEEDLES`:
    /// `init_process_group`, `Fabric`, `Trainer`, `cuda`, ...) is not parsed at all, so a syntax error
    /// in it is not reported: `doctor scan` is not a syntax checker (`python -m py_compile` or
    /// `ruff check --select E9` is). See [performance.md](../performance.md#the-byte-prefilter-issue-13).
    ///
    /// ## Why
    ///
    /// A file that does not parse, or not all of which was analysed, cannot be called clean;
    /// reporting it keeps a broken or very deep file from hiding a launch.
    ///
    /// ## Fix
    ///
    /// Fix the syntax error; `python -m py_compile FILE` reports the same error.
    ///
    /// ## Example
    ///
    /// `tests/fixtures/scan/syntax_error.py`:
    ///
    /// ```python
    /// import lightning as L
    ///
    /// fabric = L.Fabric(devices=2
    /// fabric.launch()
    ///
    /// def broken(:  # expect: S900@4
    ///     pass
    /// ```
    ///
    /// ```text
    /// $ doctor scan --platform linux --python-version 3.11 tests/fixtures/scan/syntax_error.py
    /// error[S900] parse-error: syntax error: Expected `,`, found name
    ///  --> tests/fixtures/scan/syntax_error.py:4:1
    ///   |
    /// 4 | fabric.launch()
    ///   | ^^^^^^
    ///   |
    ///   = fix: fix the syntax error (`python -m py_compile FILE` reports the same); the file was not analysed
    ///
    /// Found 1 problem (1 error, 0 warnings) in 1 file; 1 file scanned.
    /// $ echo $?
    /// 1
    /// ```
    S900, "parse-error", Error, "The file could not be parsed or fully checked";

}

impl Rule {
    /// The rule a code names ("D001"), if any.
    pub fn from_code(code: &str) -> Option<Rule> {
        Rule::ALL.iter().copied().find(|r| r.code() == code)
    }

    /// The page that explains it, in Markdown: a `# CODE name (severity)` title, then what,
    /// why, the fix and a real example. `doctor explain CODE` prints it.
    pub fn page(self) -> String {
        let mut page = String::new();
        for line in self.doc_lines().lines() {
            page.push_str(line.strip_prefix(' ').unwrap_or(line));
            page.push('\n');
        }
        page
    }

    /// The page's stable address, the `url` of every finding of this code: the same wherever
    /// doctor is installed (never a path inside a source checkout). [`DOCS_URL`] is the one
    /// place that names the host.
    pub fn url(self) -> String {
        format!("{DOCS_URL}{}", self.code())
    }

    /// Where the generated copy of the page lives in the repository.
    pub fn page_path(self) -> String {
        format!("docs/findings/{}.md", self.code())
    }
}

/// The line text output ends its findings with: `see: \`doctor explain D001\`, ...` for the
/// distinct codes, in order (None without findings).
pub fn explain_line(codes: impl IntoIterator<Item = Rule>) -> Option<String> {
    let codes: std::collections::BTreeSet<Rule> = codes.into_iter().collect();
    if codes.is_empty() {
        return None;
    }
    let list: Vec<String> = codes
        .iter()
        .map(|c| format!("`doctor explain {c}`"))
        .collect();
    Some(format!(
        "see: {} (what {} means, why, the fix, an example)",
        list.join(", "),
        if codes.len() == 1 {
            "the code"
        } else {
            "each code"
        }
    ))
}

/// Where the finding pages are published: `url()` of a rule is this and its code. The host is
/// the one the JSON Schemas' `$id`s use (docs/schema); `doctor explain CODE` prints the same page
/// offline.
pub const DOCS_URL: &str = "https://ddp-doctor.invalid/findings/";

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(self.code())
    }
}

/// `#[serde(flatten, serialize_with = "code_and_name")]` on a `Rule` field: the two keys
/// `"code"` and `"name"` every finding document starts with.
pub fn code_and_name<S: serde::Serializer>(rule: &Rule, ser: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct CodeAndName {
        code: &'static str,
        name: &'static str,
    }
    CodeAndName {
        code: rule.code(),
        name: rule.name(),
    }
    .serialize(ser)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_documented() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for (i, r) in Rule::ALL.iter().enumerate() {
            assert!(Rule::ALL[..i].iter().all(|d| d < r), "{r} out of order");
            assert!(
                Rule::ALL[..i]
                    .iter()
                    .all(|d| d.name() != r.name() || d.code()[..1] != r.code()[..1]),
                "{r}: name {} twice in one family",
                r.name()
            );
            assert_eq!(Rule::from_code(r.code()), Some(*r));
            assert!(root.join(r.page_path()).is_file(), "{r} has no doc page");
            let page = r.page();
            assert!(
                page.starts_with(&format!("# {} {}", r.code(), r.name())),
                "{r}: the page's title is not `# {} {}`: {:?}",
                r.code(),
                r.name(),
                page.lines().next()
            );
            assert!(page.lines().count() > 5, "{r}: the page is a stub");
            assert_eq!(
                serde_json::to_string(r).unwrap(),
                format!("\"{}\"", r.code())
            );
        }
        assert_eq!(Rule::from_code("D000"), None);
        assert_eq!(Rule::D001.code(), "D001");
        assert_eq!(Rule::S900.name(), "parse-error");
    }

    #[test]
    fn error_is_the_most_severe() {
        assert!(Severity::Error > Severity::Warning && Severity::Warning > Severity::Info);
        assert!(Severity::Warning.is_problem() && !Severity::Info.is_problem());
    }
}
