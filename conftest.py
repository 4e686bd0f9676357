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
from types import SimpleNamespace  # noqa: E402

import pytest  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def s3(monkeypatch, tmp_path):
    """A fresh bucket on moto's standalone S3 server, started on 127.0.0.1 and stopped after.

    Credentials and the endpoint reach the clients through the environment only (as in
    production; AWS config files are pointed at nothing). ``s3.url`` is ``s3://<bucket>``;
    ``s3.stop()`` / ``s3.start()`` drop and bring back the endpoint (moto keeps its objects in
    this process, so they survive), for tests of a connection lost mid-upload.
    """
    pytest.importorskip("s3fs", reason="needs the [s3] extra (s3fs)")
    moto_server = pytest.importorskip("moto.server", reason="needs moto[server] (dev group)")
    import s3fs

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
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
    state = SimpleNamespace(server=None)

    def start() -> None:
        state.server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
        state.server.start()

    def stop() -> None:
        state.server.stop()
        s3fs.S3FileSystem.clear_instance_cache()  # its pooled connections point at the old one

    start()
    s3fs.S3FileSystem.clear_instance_cache()  # an earlier test's filesystem has another endpoint
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem().mkdir(bucket)
    try:
        yield SimpleNamespace(
            url=f"s3://{bucket}", bucket=bucket, endpoint=endpoint, stop=stop, start=start
        )
    finally:
        stop()
        _reset_moto()


def _reset_moto() -> None:
    """Drop the objects moto keeps in this process (the next test has its own bucket anyway)."""
    try:
        from moto.moto_api._internal.models import moto_api_backend

        moto_api_backend.reset()
    except ImportError:  # another moto layout: the buckets stay until the process ends
        pass
