"""The sandbox's launcher: run as ``python -I -S sandbox_launcher.py SPEC_JSON`` by
`llm_eval.sandbox`, it isolates itself, then replaces itself with the untrusted program.

Standard library only, and nothing here imports llm_eval: it runs before any isolation, with
the parent's privileges, so it must be small enough to read in one sitting. It writes to the
status pipe only when something fails before ``execve`` (then it exits 125): a setup error,
never the program's fault. ``execve`` closes the pipe, so an empty read means the program
started.

``namespaces`` isolation (Linux):
  1. As root, no user namespace is needed; otherwise a new user namespace maps our uid to 0 so
     that the rest is allowed without privileges.
  2. New mount, network, PID, IPC and UTS namespaces. The network namespace has only a loopback
     interface that is down: no address, not even 127.0.0.1, is reachable.
  3. Fork: the child is PID 1 of the new PID namespace (a small init that reaps orphans and
     forks the program), so when it ends the kernel kills every process the program started,
     a fork bomb included; it dies with the launcher (``PR_SET_PDEATHSIG``), which the parent
     kills on a timeout.
  4. The child builds a new root on a tmpfs: read-only bind mounts of /usr (and /lib*, /bin
     links), of the interpreter's prefix, of /dev/null, /dev/zero, /dev/urandom; the work
     directory read-write at /sandbox; a fresh /proc that shows only the sandbox's processes
     (left empty where the kernel refuses it); the tmpfs root itself is then read-only.
     ``pivot_root`` into it and detach the old root: no other path of the host is reachable.
  5. Drop privileges: as root, become an unprivileged uid; otherwise empty the capability
     bounding set. Either way the program has no capability, so the mounts above cannot be
     changed (unmounted, remounted read-write), and ``PR_SET_NO_NEW_PRIVS`` keeps it so.
  6. Resource limits, then ``execve`` the interpreter on the program in /sandbox.

``rlimits`` isolation (the fallback where namespaces are not allowed): resource limits, a
dropped uid when root (if the interpreter is reachable for it), and the program runs under an
audit hook (PEP 578) that refuses sockets, new processes, ``ctypes``, other processes' /proc
files and changes to files outside the work directory. That hook is a guard against accidents,
not a security boundary (see the README).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import resource
import signal
import sys

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}  # syscall numbers (glibc has no wrapper)
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38
SETUP_FAILED = 125
SANDBOX = "/sandbox"  # the work directory, as the program sees it
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
DEVICES = ("null", "zero", "urandom", "random")
# statvfs flags -> mount flags: a read-only remount must keep these (the kernel locks them)
KEEP_FLAGS = {os.ST_NOSUID: MS_NOSUID, os.ST_NODEV: MS_NODEV, os.ST_NOEXEC: MS_NOEXEC}

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_void_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.unshare.argtypes = [ctypes.c_int]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None):
    enc = [None if s is None else s.encode() for s in (src, dst, fstype, data)]
    _check(libc.mount(enc[0], enc[1], enc[2], flags, enc[3]), f"mount {src} on {dst}")


def bind(src: str, dst: str, *, readonly: bool = True) -> None:
    """Bind ``src`` on ``dst`` (created), then remount it read-only keeping its locked flags."""
    if os.path.isdir(src):
        os.makedirs(dst, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        open(dst, "a").close()
    mount(src, dst, None, MS_BIND | MS_REC)
    if readonly:
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY
        f_flag = os.statvfs(src).f_flag
        flags |= sum(ms for st, ms in KEEP_FLAGS.items() if f_flag & st)
        mount(None, dst, None, flags)


def write_id_maps(inside: int, outside_uid: int, outside_gid: int) -> None:
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{inside} {outside_uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{inside} {outside_gid} 1")


def build_root(new_root: str, workdir: str, readonly_paths: list[str]) -> None:
    """A tmpfs root with only the system directories, the interpreter and the work directory;
    pivot into it and detach the host's root."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount leaks back to the host
    mount("tmpfs", new_root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for name in SYSTEM_DIRS:
        host = f"/{name}"
        if os.path.islink(host):  # merged /usr: /lib -> usr/lib
            os.symlink(os.readlink(host), f"{new_root}/{name}")
        elif os.path.isdir(host):
            bind(host, f"{new_root}/{name}")
    for path in readonly_paths:  # the interpreter's prefix when it lives outside /usr
        if not os.path.exists(f"{new_root}{path}"):
            bind(path, f"{new_root}{path}")
    for dev in DEVICES:
        if os.path.exists(f"/dev/{dev}"):
            bind(f"/dev/{dev}", f"{new_root}/dev/{dev}", readonly=False)
    bind(workdir, f"{new_root}{SANDBOX}", readonly=False)
    for name in ("proc", "tmp", ".old_root"):
        os.makedirs(f"{new_root}/{name}", exist_ok=True)
    os.chdir(new_root)
    machine = os.uname().machine
    if machine not in PIVOT_ROOT:
        raise OSError(f"pivot_root: syscall number unknown on {machine}")
    _check(libc.syscall(PIVOT_ROOT[machine], b".", b".old_root"), "pivot_root")
    os.chroot(".")
    _check(libc.umount2(b"/.old_root", MNT_DETACH), "umount old root")
    os.rmdir("/.old_root")
    # our PID namespace's processes only; refused to a user namespace under a masked /proc
    # (containers), where /proc stays empty
    with contextlib.suppress(PermissionError):
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)  # nothing writable


def set_limits(spec: dict) -> None:
    cpu = int(spec["cpu_seconds"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU at the soft limit
    memory = spec["memory_mb"] << 20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    files = spec["file_mb"] << 20
    resource.setrlimit(resource.RLIMIT_FSIZE, (files, files))
    resource.setrlimit(resource.RLIMIT_NPROC, (spec["max_processes"],) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def world_executable(path: str) -> bool:
    """Whether any uid may run ``path``: it and every directory above it are o+x."""
    while path != "/":
        if not os.stat(path).st_mode & 0o001:
            return False
        path = os.path.dirname(path)
    return True


def drop_root(uid: int) -> None:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def drop_capabilities() -> None:
    """Empty the capability bounding set: the program, uid 0 of our user namespace, then gets
    no capability at ``execve``, so it cannot unmount or remount anything we set up."""
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            if ctypes.get_errno() == errno.EINVAL:  # past the kernel's last capability
                return
            _check(-1, f"prctl(CAPBSET_DROP, {cap})")


def exec_program(spec: dict, status_fd: int, argv: list[str]) -> None:
    """Limits, then the program; a failure on the way is written to the status pipe."""
    try:
        _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
        set_limits(spec)
        os.execve(spec["python"], argv, spec["env"])
    except BaseException as err:  # noqa: BLE001 - report any setup failure, then exit
        fail(status_fd, err)


def fail(status_fd: int, err: BaseException) -> None:
    try:
        os.write(status_fd, f"sandbox setup failed: {err}".encode())
    finally:
        os._exit(SETUP_FAILED)


def namespaces(spec: dict, status_fd: int) -> int:
    root = os.getuid() == 0
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    uid, gid = os.getuid(), os.getgid()
    _check(libc.unshare(flags | (0 if root else CLONE_NEWUSER)), "unshare(namespaces)")
    if not root:
        write_id_maps(0, uid, gid)
    pid = os.fork()
    if pid:  # outside the PID namespace: relay the program's end
        os.close(status_fd)
        return _wait_status(pid)
    try:
        _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
        build_root(spec["new_root"], spec["workdir"], spec["readonly_paths"])
        os.chdir(SANDBOX)
        if root:
            drop_root(spec["uid"])
        else:
            drop_capabilities()
        program = os.fork()
        if program == 0:
            exec_program(spec, status_fd, [spec["python"], "-I", "-S", spec["program"]])
        os.close(status_fd)
        os._exit(_init(program))
    except BaseException as err:  # noqa: BLE001 - report any setup failure, then exit
        fail(status_fd, err)
    return SETUP_FAILED  # not reached


def _init(program: int) -> int:
    """PID 1 of the sandbox: reap every orphan until the program ends, then return its
    status; our exit makes the kernel kill whatever the program left running. (The program
    is not PID 1 itself because PID 1 ignores signals it has no handler for, SIGXCPU too.)"""
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == program:
            return _exit_code(status)


# runs inside the program's interpreter in `rlimits` mode, before the program
AUDIT_GUARD = """
import os, sys
_workdir = os.path.realpath(os.getcwd())
_refused = ("socket.", "subprocess.", "os.exec", "os.posix_spawn", "os.fork", "os.forkpty",
            "os.system", "os.spawn", "os.kill", "os.killpg", "ctypes.", "pty.")
_modules = {"_posixsubprocess", "_ctypes", "_multiprocessing", "_socket", "fcntl"}
_changes = {"os.remove", "os.rmdir", "os.mkdir", "os.rename", "os.chmod", "os.chown",
            "os.link", "os.symlink", "os.truncate", "os.utime", "shutil.rmtree"}
_write = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
def _inside(path):
    path = os.path.realpath(os.fsdecode(path))
    return path == _workdir or path.startswith(_workdir + os.sep)
def _guard(event, args):
    if event.startswith(_refused) or event == "import" and args[0] in _modules:
        raise PermissionError(f"sandbox: {event} {args[0] if args else ''} is not allowed")
    if event == "open" and isinstance(args[0], (str, bytes)):
        path, mode, flags = args
        if os.path.realpath(os.fsdecode(path)).startswith("/proc/") and not _inside(path):
            raise PermissionError(f"sandbox: reading {path} is not allowed")  # others' environ
        writes = any(c in (mode or "") for c in "wax+") or (flags or 0) & _write
        if writes and not _inside(path):
            raise PermissionError(f"sandbox: writing {path} is not allowed")
    if event in _changes:
        for path in args:
            if isinstance(path, (str, bytes, os.PathLike)) and not _inside(path):
                raise PermissionError(f"sandbox: {event} {path} is not allowed")
sys.addaudithook(_guard)
del _guard
__file__ = PROGRAM
exec(compile(open(__file__).read(), __file__, "exec"), {"__name__": "__main__"})
"""


def rlimits(spec: dict, status_fd: int) -> int:
    os.chdir(spec["workdir"])
    if os.getuid() == 0 and world_executable(spec["python"]):  # else the uid could not run it
        drop_root(spec["uid"])
    guard = AUDIT_GUARD.replace("PROGRAM", repr(spec["program"]))
    exec_program(spec, status_fd, [spec["python"], "-I", "-S", "-c", guard])
    return SETUP_FAILED  # not reached


def _wait_status(pid: int) -> int:
    return _exit_code(os.waitpid(pid, 0)[1])


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def main() -> int:
    spec = json.loads(sys.argv[1])
    status_fd = spec["status_fd"]
    os.set_inheritable(status_fd, False)  # closed by execve: the parent then sees EOF
    try:
        if spec["isolation"] == "namespaces":
            return namespaces(spec, status_fd)
        return rlimits(spec, status_fd)
    except BaseException as err:  # noqa: BLE001 - report any setup failure, then exit
        fail(status_fd, err)
        return SETUP_FAILED  # not reached


if __name__ == "__main__":
    sys.exit(main())
