"""Drive an interactive bash (job control on) in a real pseudo-terminal, like a person would.

Usage: pty_session.py STEPS_JSON

STEPS_JSON is a list of steps:
  ["send", TEXT]                 write TEXT to the terminal (\x1a is Ctrl-Z, \x03 Ctrl-C)
  ["expect", REGEX, SECONDS]     wait until the output since the last match matches REGEX
  ["absent", REGEX, SECONDS]     for SECONDS, the new output must not match REGEX
  ["state", FILE, STATES, SECONDS]  wait until the pid written in FILE has a /proc state in STATES

Prints the whole transcript at the end. Exit 0 when every step passed, 1 (with the failing step)
otherwise. Every process of the terminal's session is killed by pid at the end, pass or fail.
"""

import json
import os
import pty
import re
import select
import signal
import sys
import time


def session_members(sid):
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid:
            out.append(int(name))
    return out


def proc_state(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().decode("utf-8", "replace").rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def main():
    steps = json.loads(sys.argv[1])
    env = dict(os.environ, PS1="$ ", TERM="dumb", PROMPT_COMMAND="")
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe("bash", ["bash", "--norc", "--noprofile", "-i"], env)
    transcript = b""
    seen = 0  # transcript offset of the end of the last match

    def read_for(seconds):
        nonlocal transcript
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            r, _, _ = select.select([fd], [], [], min(left, 0.05))
            if r:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    return
                if not data:
                    return
                transcript += data

    ok = True
    failed = None
    try:
        read_for(0.5)
        for step in steps:
            kind = step[0]
            if kind == "send":
                os.write(fd, step[1].encode())
            elif kind == "expect":
                pattern = re.compile(step[1].encode())
                end = time.monotonic() + step[2]
                while True:
                    m = pattern.search(transcript, seen)
                    if m:
                        seen = m.end()
                        break
                    if time.monotonic() > end:
                        ok, failed = False, step
                        break
                    read_for(0.05)
            elif kind == "absent":
                start = len(transcript)
                read_for(step[2])
                if re.search(step[1].encode(), transcript[start:]):
                    ok, failed = False, step
            elif kind == "state":
                end = time.monotonic() + step[3]
                while True:
                    try:
                        with open(step[1]) as f:
                            target = int(f.read().split()[0])
                    except (OSError, ValueError, IndexError):
                        target = None
                    if target is not None and proc_state(target) in step[2]:
                        break
                    if time.monotonic() > end:
                        ok, failed = False, step + [proc_state(target) if target else "no pid"]
                        break
                    read_for(0.05)
            if not ok:
                break
    finally:
        for p in session_members(pid):
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            os.waitpid(pid, 0)
        except OSError:
            pass
    sys.stdout.write(transcript.decode("utf-8", "replace"))
    if not ok:
        sys.stdout.write(f"\n--- FAILED at step {json.dumps(failed)}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
