"""A process that holds a rendezvous port (stdlib only), for output tests.

usage: holder.py PORT [ANY ARGUMENTS...]

Runs as rank 0 of 1 with MASTER_PORT=PORT in its environment (it re-executes itself once to
put them there, same pid), listens on 127.0.0.1:PORT, prints READY and sleeps until killed. The
extra arguments are only there to be seen in its argv (secrets, control characters).
"""

import os
import socket
import sys
import time

if os.environ.get("MASTER_PORT") != sys.argv[1]:
    env = dict(os.environ, MASTER_PORT=sys.argv[1], MASTER_ADDR="127.0.0.1", RANK="0", WORLD_SIZE="1")
    os.execve(sys.executable, [sys.executable] + sys.argv, env)

s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(4)
print("READY", flush=True)
while True:
    time.sleep(3600)
