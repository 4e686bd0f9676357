"""Session-wide test setup, loaded before any package's tests.

Without a CUDA device the Triton kernels run in Triton's CPU interpreter, so the kernel tests
check the real kernels everywhere (CI sets TRITON_INTERPRET=1 itself; this makes a plain
`uv run pytest` do the same). It must be set before any `@triton.jit` function is defined.
Torch may be absent: llm-tokenize and the core of llm-data are tested without it.
"""

import os

try:
    import torch
except ImportError:
    torch = None

if torch is None or not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


# --- object storage: a real S3 endpoint (moto's server) on 127.0.0.1 ---------------------------
import socket  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import pytest  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def _moto_server():
    """One moto S3 server on 127.0.0.1 for the session (each test gets its own bucket):
    ``start()`` / ``stop()`` bring it up and down on the same port."""
    moto_server = pytest.importorskip("moto.server", reason="needs moto[server] (dev group)")
    state = SimpleNamespace(server=None, port=_free_port())

    def start() -> None:
        state.server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=state.port)
        state.server.start()

    def stop() -> None:
        state.server.stop()
        state.server = None

    state.start, state.stop = start, stop
    start()
    yield state
    if state.server is not None:
        stop()


@pytest.fixture
def s3(monkeypatch, tmp_path, request):
    """A fresh bucket on moto's standalone S3 server (one per session, on 127.0.0.1).

    Credentials and the endpoint reach the clients through the environment only (as in
    production; AWS config files are pointed at nothing). ``s3.url`` is ``s3://<bucket>``;
    ``s3.stop()`` / ``s3.start()`` drop and bring back the endpoint (moto keeps its objects in
    this process, so they survive), for tests of a connection lost mid-upload.
    """
    pytest.importorskip("s3fs", reason="needs the [s3] extra (s3fs)")
    import s3fs

    server = request.getfixturevalue("_moto_server")
    endpoint = f"http://127.0.0.1:{server.port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_MAX_ATTEMPTS": "2",  # a dropped endpoint fails in seconds, after one retry
        "AWS_RETRY_MODE": "standard",
        "NO_PROXY": "127.0.0.1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)

    def stop() -> None:
        server.stop()
        s3fs.S3FileSystem.clear_instance_cache()  # its pooled connections point at the old one

    s3fs.S3FileSystem.clear_instance_cache()  # an earlier test's filesystem has other settings
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem().mkdir(bucket)
    try:
        yield SimpleNamespace(
            url=f"s3://{bucket}", bucket=bucket, endpoint=endpoint, stop=stop, start=server.start
        )
    finally:
        if server.server is None:  # a test that stopped it and failed before starting it again
            server.start()
        s3fs.S3FileSystem.clear_instance_cache()
        _reset_moto()


def _reset_moto() -> None:
    """Drop the objects moto keeps in this process (the next test has its own bucket anyway)."""
    try:
        from moto.moto_api._internal.models import moto_api_backend

        moto_api_backend.reset()
    except ImportError:  # another moto layout: the buckets stay until the process ends
        pass


class _CuttingProxy:
    """A TCP proxy on 127.0.0.1 in front of moto that drops the connection in the middle of an
    upload's body: the first ``times`` requests ``PUT /<bucket>/<key>...`` whose key contains
    ``key`` are forwarded up to half their body, then both sockets are closed (what a lost
    link does to a client). Everything else passes through untouched."""

    def __init__(self, upstream_port: int) -> None:
        import threading

        self.upstream_port, self.rules, self.cut, self.puts = upstream_port, [], [], []
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def fail(self, key: str, times: int) -> None:
        """Cut the next ``times`` uploads of an object whose key contains ``key``."""
        with self._lock:
            self.rules.append([key.encode(), times])

    def close(self) -> None:
        self._sock.close()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:  # closed
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
            threading.Thread(target=self._inspect, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _pump(src, dst) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                s.close()

    def _match(self, pending: bytes) -> int | None:
        """Where in ``pending`` an upload to cut starts (and the rule spent), or None; records
        each complete ``PUT`` request line in ``puts``."""
        start = pending.find(b"PUT /")
        while start >= 0 and b"\r\n" in pending[start:]:
            line = pending[start : pending.find(b"\r\n", start)]
            with self._lock:
                self.puts.append(line.decode(errors="replace"))
                for rule in self.rules:
                    if rule[1] > 0 and rule[0] in line.split(b"?")[0]:
                        rule[1] -= 1
                        self.cut.append(self.puts[-1])
                        return start
            start = pending.find(b"PUT /", start + 1)
        return None

    def _inspect(self, client, upstream) -> None:
        pending = b""  # client bytes not forwarded yet: at most one unfinished request line
        try:
            while data := client.recv(65536):
                pending += data
                start = self._match(pending)
                if start is None:  # hold back only an unfinished "PUT /..." request line
                    last = pending.rfind(b"PUT /")
                    keep = last if last >= 0 and b"\r\n" not in pending[last:] else len(pending)
                    upstream.sendall(pending[:keep])
                    pending = pending[keep:]
                    continue
                upstream.sendall(pending[:start])
                self._cut(client, upstream, pending[start:])
                return
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                s.close()

    @staticmethod
    def _cut(client, upstream, request: bytes) -> None:
        """Forward the request's head and half of its body, then return (the caller closes)."""
        while b"\r\n\r\n" not in request:
            request += client.recv(65536) or b"\r\n\r\n"
        head, _, body = request.partition(b"\r\n\r\n")
        length = next(
            (int(v) for k, _, v in (h.partition(b":") for h in head.split(b"\r\n"))
             if k.strip().lower() == b"content-length"), 2,
        )  # fmt: skip
        upstream.sendall(head + b"\r\n\r\n")
        half = max(1, length // 2)
        while len(body) < half:
            upstream.sendall(body)
            half -= len(body)
            body = client.recv(65536)
            if not body:
                return
        upstream.sendall(body[:half])


@pytest.fixture
def s3_cut(s3, monkeypatch):
    """``s3``, reached through a proxy that can drop an upload's connection mid-body:
    ``s3_cut.fail(key, times)``; ``s3_cut.cut`` lists the request lines it cut, ``s3_cut.puts``
    every upload's."""
    import s3fs

    proxy = _CuttingProxy(int(s3.endpoint.rsplit(":", 1)[1]))
    endpoint = f"http://127.0.0.1:{proxy.port}"
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.setenv(name, endpoint)
    s3fs.S3FileSystem.clear_instance_cache()  # a cached filesystem would bypass the proxy
    try:
        yield proxy
    finally:
        proxy.close()
        s3fs.S3FileSystem.clear_instance_cache()


_STORAGE_LOGGERS = ("botocore", "aiobotocore", "s3fs", "fsspec", "urllib3", "streaming")


@pytest.fixture
def s3_secret(s3, monkeypatch, tmp_path):
    """``s3`` with a unique ``AWS_SECRET_ACCESS_KEY`` and the log records of the test written to
    ``tmp_path/debug.log`` (INFO and up from everything, DEBUG from the storage clients, which
    is where request details are logged); ``s3_secret.holders(*roots)`` lists the files under
    ``tmp_path`` and ``roots`` and the bucket's objects that contain the secret."""
    import logging

    import s3fs

    secret = f"secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    s3fs.S3FileSystem.clear_instance_cache()  # a cached filesystem holds the old credentials
    handler = logging.FileHandler(tmp_path / "debug.log")
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    clients = [logging.getLogger(n) for n in _STORAGE_LOGGERS]
    levels = [root.level] + [c.level for c in clients]
    root.setLevel(logging.INFO)  # DEBUG from every library would slow a training run severalfold
    for client in clients:
        client.setLevel(logging.DEBUG)
    root.addHandler(handler)

    def holders(*roots) -> list[str]:
        handler.flush()
        needle = secret.encode()
        files = [p for r in (tmp_path, *roots) for p in Path(r).rglob("*") if p.is_file()]
        found = [str(p) for p in files if needle in p.read_bytes()]
        fs = s3fs.S3FileSystem()
        fs.invalidate_cache()
        return found + [key for key in fs.find(s3.bucket) if needle in fs.cat_file(key)]

    try:
        yield SimpleNamespace(value=secret, holders=holders, log=tmp_path / "debug.log")
    finally:
        root.removeHandler(handler)
        for logger, level in zip([root, *clients], levels, strict=True):
            logger.setLevel(level)
        handler.close()
        s3fs.S3FileSystem.clear_instance_cache()
