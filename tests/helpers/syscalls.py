"""The rows of the differential test of `doctor run` (tests/run_differential.rs): each case makes
real socket calls and reports what the kernel returned. Run bare and under `doctor run`, as root
and as an unprivileged user, every row must come out the same: doctor only watches.

Usage: syscalls.py PORT_A PORT_B   (two free ports; prints one JSON object: case -> [rc, errno])
Stdlib only; the raw calls go through ctypes so that bad lengths, families and pointers reach the
kernel as given.
"""

import ctypes
import ctypes.util
import errno as E
import json
import os
import socket
import struct
import subprocess
import sys
import time

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
libc.bind.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
libc.listen.argtypes = [ctypes.c_int, ctypes.c_int]
libc.connect.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]


def raw(fn, *args):
    ctypes.set_errno(0)
    rc = fn(*args)
    return [rc, ctypes.get_errno() if rc != 0 else 0]


def sockaddr_in(port, ip="127.0.0.1", family=socket.AF_INET):
    return struct.pack("=H", family) + struct.pack("!H", port) + socket.inet_aton(ip) + b"\0" * 8


def call(fn):
    """A Python-level call: [0, 0] or [-1, errno]."""
    try:
        r = fn()
        return [0, 0] if r is None or isinstance(r, int) and r == 0 else [0, 0]
    except OSError as e:
        return [-1, e.errno]


def bind_raw(addr_bytes, length=None, sock=None):
    s = sock or socket.socket()
    buf = ctypes.create_string_buffer(addr_bytes, max(len(addr_bytes), 1))
    n = len(addr_bytes) if length is None else length
    return raw(libc.bind, s.fileno(), ctypes.cast(buf, ctypes.c_void_p), n)


def holder(port, ip="127.0.0.1", family=socket.AF_INET, reuse=False, v6only=None):
    s = socket.socket(family)
    if reuse:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if v6only is not None:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
    s.bind((ip, port))
    s.listen()
    return s


def own_seccomp_denies_bind():
    """Install a filter of our own that fails bind() with EPERM, in a child, then bind there."""
    code = r"""
import ctypes, socket, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
def stmt(code, k): return struct.pack("=HBBI", code, 0, 0, k)
def jump(code, k, jt, jf): return struct.pack("=HBBI", code, jt, jf, k)
BPF_LD_W_ABS, BPF_JEQ_K, BPF_RET_K = 0x20, 0x15, 0x06
prog = b"".join([stmt(BPF_LD_W_ABS, 0), jump(BPF_JEQ_K, 49, 0, 1),
                 stmt(BPF_RET_K, 0x00050000 | 1), stmt(BPF_RET_K, 0x7fff0000)])
buf = ctypes.create_string_buffer(prog)
class Fprog(ctypes.Structure): _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fp = Fprog(4, ctypes.cast(buf, ctypes.c_void_p))
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.byref(fp), 0, 0) == 0  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
try:
    socket.socket().bind(("127.0.0.1", 0)); print("0 0")
except OSError as e:
    print(-1, e.errno)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split()
    return [int(out[0]), int(out[1])] if len(out) == 2 else ["child failed", 0]


def other_netns(port_held):
    """A socket made in our namespace keeps it after unshare(CLONE_NEWNET); a new one does not."""
    if os.geteuid() != 0:
        return {"netns-skip-unprivileged": [0, 0]}
    code = f"""
import ctypes, socket
libc = ctypes.CDLL(None, use_errno=True)
old = socket.socket()
assert libc.unshare(0x40000000) == 0  # CLONE_NEWNET
def r(f):
    try: f(); return [0, 0]
    except OSError as e: return [-1, e.errno]
new = socket.socket()
import json
print(json.dumps([r(lambda: old.bind(("127.0.0.1", {port_held}))), r(lambda: new.bind(("127.0.0.1", {port_held})))]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    try:
        a, b = json.loads(out)
    except ValueError:
        return {"netns-old-socket": ["child failed", 0], "netns-new-socket": ["child failed", 0]}
    return {"netns-old-socket": a, "netns-new-socket": b}


def main():
    port_a, port_b = int(sys.argv[1]), int(sys.argv[2])
    r = {}
    # Privileged ports: EACCES without CAP_NET_BIND_SERVICE, 0 with it.
    r["privileged-port-81"] = call(lambda: socket.socket().bind(("127.0.0.1", 81)))
    r["privileged-port-81-v6"] = call(lambda: socket.socket(socket.AF_INET6).bind(("::1", 81)))
    # Arguments the kernel checks.
    r["addrlen-200"] = bind_raw(sockaddr_in(0), 200)
    r["addrlen-minus-1"] = bind_raw(sockaddr_in(0), -1)
    r["addrlen-short"] = bind_raw(sockaddr_in(0), 4)
    r["family-bad"] = bind_raw(sockaddr_in(0, family=0x7777))
    r["family-unix-on-inet"] = bind_raw(struct.pack("=H", socket.AF_UNIX) + b"/tmp/x\0")
    s = socket.socket()
    r["pointer-null"] = raw(libc.bind, s.fileno(), None, 16)
    r["pointer-bad"] = raw(libc.bind, s.fileno(), ctypes.c_void_p(8), 16)
    r["fd-not-socket"] = raw(libc.bind, 0, ctypes.cast(ctypes.create_string_buffer(sockaddr_in(0)), ctypes.c_void_p), 16)
    r["fd-closed"] = raw(libc.bind, 999, ctypes.cast(ctypes.create_string_buffer(sockaddr_in(0)), ctypes.c_void_p), 16)
    r["address-not-local"] = call(lambda: socket.socket().bind(("192.0.2.77", 0)))
    # Ports in use, as a child holds them (the diagnosis names the child and this process).
    held = subprocess.Popen(
        [sys.executable, "-c",
         "import socket,sys,time\n"
         f"s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0',{port_a})); s.listen()\n"
         "print('up', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE)
    held.stdout.readline()
    r["eaddrinuse"] = call(lambda: socket.socket().bind(("127.0.0.1", port_a)))
    def reuse_bind():
        t = socket.socket()
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind(("127.0.0.1", port_a))
    r["eaddrinuse-reuseaddr"] = call(reuse_bind)
    def dual_stack():
        socket.socket(socket.AF_INET6).bind(("::", port_a))
    r["eaddrinuse-v6-dual-stack"] = call(dual_stack)
    def v6only():
        t = socket.socket(socket.AF_INET6)
        t.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        t.bind(("::", port_a))
    r["v6only-beside-v4"] = call(v6only)
    r["netns"] = None
    r.update(other_netns(port_a))
    del r["netns"]
    held.kill()
    held.wait()
    # SO_REUSEPORT: two sockets of one user share a port; without it on the second, refused.
    a = socket.socket()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    a.bind(("127.0.0.1", port_b))
    a.listen()
    def reuseport(flag):
        t = socket.socket()
        if flag:
            t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        t.bind(("127.0.0.1", port_b))
        t.listen()
        t.close()
    r["reuseport-both"] = call(lambda: reuseport(True))
    r["reuseport-second-without"] = call(lambda: reuseport(False))
    a.close()
    # Two SO_REUSEADDR sockets bound before either listens: the second listen fails.
    x, y = socket.socket(), socket.socket()
    for t in (x, y):
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    r["reuseaddr-bind-x"] = call(lambda: x.bind(("127.0.0.1", port_b)))
    r["reuseaddr-bind-y"] = call(lambda: y.bind(("127.0.0.1", port_b)))
    r["listen-x"] = call(lambda: x.listen())
    r["listen-y-eaddrinuse"] = call(lambda: y.listen())
    x.close(); y.close()
    # Port 0, a second bind, listen without bind.
    z = socket.socket()
    r["port-0"] = call(lambda: z.bind(("127.0.0.1", 0)))
    r["bind-twice"] = call(lambda: z.bind(("127.0.0.1", 0)))
    r["listen-unbound"] = call(lambda: socket.socket().listen())
    # Unix and abstract sockets.
    path = f"/tmp/doctor-diff-{os.getpid()}.sock"
    u = socket.socket(socket.AF_UNIX)
    r["unix-path"] = call(lambda: u.bind(path))
    r["unix-path-again"] = call(lambda: socket.socket(socket.AF_UNIX).bind(path))
    os.unlink(path)
    name = f"\0doctor-diff-{os.getpid()}"
    v = socket.socket(socket.AF_UNIX)
    r["unix-abstract"] = call(lambda: v.bind(name))
    r["unix-abstract-again"] = call(lambda: socket.socket(socket.AF_UNIX).bind(name))
    # connect: a closed port, and a non-blocking connect.
    r["connect-refused"] = call(lambda: socket.socket().connect(("127.0.0.1", port_b)))
    nb = socket.socket()
    nb.setblocking(False)
    r["connect-nonblocking"] = [-1, nb.connect_ex(("127.0.0.1", port_b))]
    time.sleep(0.05)
    r["connect-nonblocking-so-error"] = [0, nb.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)]
    r["own-seccomp-denies-bind"] = own_seccomp_denies_bind()
    # A port freed by close is free at once: doctor may not keep the caller's socket alive (a
    # failed bind on a bound or listening socket, then close, then another socket binds it).
    failures = 0
    for listen in (False, True):
        for _ in range(40):
            s1 = socket.socket()
            s1.bind(("127.0.0.1", port_b))
            if listen:
                s1.listen()
            try:
                s1.bind(("127.0.0.1", port_b))
            except OSError:
                pass
            s1.close()
            s2 = socket.socket()
            try:
                s2.bind(("127.0.0.1", port_b))
            except OSError:
                failures += 1
            s2.close()
    r["rebind-after-close-x80"] = [0 if failures == 0 else -1, failures]
    r["_pid"] = [os.getpid(), 0]
    print(json.dumps(r, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
