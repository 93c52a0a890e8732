"""Failing binds whose errno doctor must not get wrong (tests/run_differential.rs): each case runs
in a child process of its own while a listener holds PORT, so that a careless inference ("another
socket holds the port: EADDRINUSE") would be wrong for all but the last. Prints one JSON object:
child pid -> [case, real errno].

Usage: errno_cases.py PORT"""

import ctypes
import json
import os
import socket
import struct
import subprocess
import sys

CHILD = r"""
import ctypes, os, socket, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
case, port = sys.argv[1], int(sys.argv[2])
def sin(ip, p, fam=socket.AF_INET):
    return struct.pack("=H", fam) + struct.pack("!H", p) + socket.inet_aton(ip) + b"\0" * 8
def raw(fd, addr, n):
    buf = ctypes.create_string_buffer(addr, max(len(addr), n if n > 0 else 1))
    ctypes.set_errno(0)
    rc = libc.bind(fd, ctypes.cast(buf, ctypes.c_void_p), n)
    return ctypes.get_errno() if rc != 0 else 0
if case == "not-a-socket":
    fd = os.open("/dev/null", os.O_RDONLY)
    e = raw(fd, sin("127.0.0.1", port), 16)
elif case == "short-length":
    s = socket.socket()
    e = raw(s.fileno(), sin("127.0.0.1", port), 15)
elif case == "long-length":
    s = socket.socket()
    e = raw(s.fileno(), sin("127.0.0.1", port), 200)
elif case == "v4-address-on-v6-socket":
    s = socket.socket(socket.AF_INET6)
    e = raw(s.fileno(), sin("127.0.0.1", port), 16)
elif case == "not-this-hosts-address":
    try:
        socket.socket().bind(("192.0.2.77", port)); e = 0
    except OSError as x:
        e = x.errno
elif case == "bound-already":
    s = socket.socket(); s.bind(("127.0.0.1", 0))
    try:
        s.bind(("127.0.0.1", port)); e = 0
    except OSError as x:
        e = x.errno
elif case == "in-use":
    try:
        socket.socket().bind(("127.0.0.1", port)); e = 0
    except OSError as x:
        e = x.errno
print(e)
"""

CASES = ["not-a-socket", "short-length", "long-length", "v4-address-on-v6-socket",
         "not-this-hosts-address", "bound-already", "in-use"]


def main():
    port = int(sys.argv[1])
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("0.0.0.0", port))
    holder.listen()
    out = {}
    for case in CASES:
        p = subprocess.Popen([sys.executable, "-c", CHILD, case, str(port)], stdout=subprocess.PIPE, text=True)
        errno = int(p.communicate()[0].strip() or -1)
        out[str(p.pid)] = [case, errno]
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
