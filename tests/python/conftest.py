"""Fixtures: a real `skiff server` on a free loopback port, and the official Python client."""

import os
import pathlib
import subprocess
import tempfile
import time

import pytest
from kubernetes import client, config

ROOT = pathlib.Path(__file__).resolve().parents[2]


def skiff_bin() -> str:
    path = os.environ.get("SKIFF_BIN") or str(
        pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / "skiff"
    )
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing: run `cargo build --bin skiff` first (or set SKIFF_BIN)")
    return path


class Server:
    """`skiff server` serving the API alone (no controllers): these tests check API semantics,
    and controllers writing status would change the objects under them."""

    def __init__(self, data_dir: pathlib.Path, controllers: bool = False):
        self.data_dir = data_dir
        self.kubeconfig = data_dir / "kubeconfig"
        self.log = open(data_dir.with_suffix(".log"), "ab")
        if self.kubeconfig.exists():
            self.kubeconfig.unlink()  # written anew once the server listens
        self.proc = subprocess.Popen(
            [skiff_bin(), "server", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0"]
            + ([] if controllers else ["--no-controllers"]),
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
        )
        deadline = time.time() + 30
        while not self.kubeconfig.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"skiff server exited with {self.proc.returncode}")
            if time.time() > deadline:
                raise RuntimeError("skiff server did not write its kubeconfig in 30 s")
            time.sleep(0.05)

    def api_client(self) -> client.ApiClient:
        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()


@pytest.fixture
def server():
    with tempfile.TemporaryDirectory() as tmp:
        s = Server(pathlib.Path(tmp) / "data")
        try:
            yield s
        finally:
            s.stop()


@pytest.fixture
def api(server):
    c = server.api_client()
    yield c
    c.close()


class Raw:
    """Plain HTTPS requests with the admin client certificate, for inputs no client would send."""

    def __init__(self, server: "Server", tmp: pathlib.Path):
        import base64

        import requests
        import yaml

        kc = yaml.safe_load(server.kubeconfig.read_text())
        cluster = kc["clusters"][0]["cluster"]
        user = kc["users"][0]["user"]
        self.base = cluster["server"]
        ca, crt, key = tmp / "ca.crt", tmp / "admin.crt", tmp / "admin.key"
        ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        crt.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.write_bytes(base64.b64decode(user["client-key-data"]))
        self.session = requests.Session()
        # Passed on every request: a session's `verify` loses to REQUESTS_CA_BUNDLE otherwise.
        self.verify = str(ca)
        self.cert = (str(crt), str(key))

    def request(self, method, path, body=None, content_type="application/json", **kw):
        headers = {"Content-Type": content_type} if body is not None else {}
        headers.update(kw.pop("headers", {}))
        return self.session.request(
            method, self.base + path, data=body, headers=headers, timeout=30, verify=self.verify, cert=self.cert, **kw
        )


@pytest.fixture
def raw(server, tmp_path):
    return Raw(server, tmp_path)
