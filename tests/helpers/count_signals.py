"""Counts the SIGINT, SIGTERM and SIGHUP it receives (a real handler), writes the counts to FILE
after each one, and ends after SECONDS. Usage: count_signals.py FILE [SECONDS]"""

import json
import signal
import sys
import time

out = sys.argv[1]
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
counts = {"SIGINT": 0, "SIGTERM": 0, "SIGHUP": 0}


def write():
    with open(out + ".tmp", "w") as f:
        json.dump(counts, f)
    import os
    os.replace(out + ".tmp", out)


def handler(sig, frame):
    counts[signal.Signals(sig).name] += 1
    write()


for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, handler)
write()
print("ready", flush=True)
end = time.time() + seconds
while time.time() < end:
    time.sleep(0.02)
