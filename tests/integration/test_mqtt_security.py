"""TLS with a client certificate and a password-protected broker; bad credentials are logged and retried."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rig.binaries import require
from rig.broker import Mosquitto, free_port
from rig.daemon import Daemon
from rig.subscriber import Subscriber

KEY_PASSWORD = "key-secret"


@dataclass(frozen=True)
class Pki:
    """A throwaway CA with a broker and a client certificate, and a second CA nobody should trust."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path  # encrypted with KEY_PASSWORD
    rogue_ca: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([str(require("openssl")), *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(name: str, cwd: Path) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
             "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=cwd)  # fmt: skip


def _signed(name: str, ca: str, cwd: Path, extra: str = "", key_args: tuple[str, ...] = ("-nodes",)) -> None:
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", *key_args,
             "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=cwd)  # fmt: skip
    (cwd / f"{name}.ext").write_text(extra or "basicConstraints=CA:FALSE\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=cwd)  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    cwd = tmp_path_factory.mktemp("pki")
    _ca("ca", cwd)
    _ca("rogue", cwd)
    _signed("server", "ca", cwd, "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _signed("client", "ca", cwd, key_args=("-passout", f"pass:{KEY_PASSWORD}"))
    return Pki(cwd / "ca.crt", cwd / "server.crt", cwd / "server.key", cwd / "client.crt", cwd / "client.key",
               cwd / "rogue.crt")  # fmt: skip


@pytest.fixture
def tls_broker(make_broker: Callable[..., Mosquitto], pki: Pki) -> Iterator[tuple[Mosquitto, int]]:
    """A broker with a plain listener (for the test's subscriber) and a TLS one that requires a client cert."""
    port = free_port()
    broker = make_broker(
        f"listener {port} 127.0.0.1\ncafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
        "require_certificate true\n"
    )
    yield broker, port


def daemon_config(write_config: Callable[..., Path], tmp_path: Path, mqtt: str) -> Path:
    (tmp_path / "model").mkdir(exist_ok=True)
    return write_config(
        f"""
        device: {{id: sec1}}
        mqtt: {{host: 127.0.0.1, reconnect_max_s: 2, discovery: false, spool_path: {tmp_path / "spool.db"}, {mqtt}}}
        model: {{path: {tmp_path / "model"}}}
        """
    )


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_tls_with_a_client_certificate(
    tls_broker: tuple[Mosquitto, int], pki: Pki, write_config: Callable[..., Path], tmp_path: Path, protocol: str
) -> None:
    broker, tls_port = tls_broker
    sub = Subscriber(broker.host, broker.port, ["edge_agent/sec1/availability"])
    tls = f"{{ca: {pki.ca}, cert: {pki.client_cert}, key: {pki.client_key}, key_password: {KEY_PASSWORD}}}"
    daemon = Daemon(daemon_config(write_config, tmp_path, f"port: {tls_port}, protocol: '{protocol}', tls: {tls}"))
    try:
        sub.wait_for(lambda _: sub.on("edge_agent/sec1/availability")[-1:] == [b"online"], timeout_s=60)
    finally:
        assert daemon.stop() == 0
        sub.wait_for(lambda _: sub.on("edge_agent/sec1/availability")[-1:] == [b"offline"], timeout_s=20)
        sub.close()


def test_an_untrusted_broker_certificate_is_logged_and_retried(
    tls_broker: tuple[Mosquitto, int], pki: Pki, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    _, tls_port = tls_broker
    tls = f"{{ca: {pki.rogue_ca}, cert: {pki.client_cert}, key: {pki.client_key}, key_password: {KEY_PASSWORD}}}"
    daemon = Daemon(daemon_config(write_config, tmp_path, f"port: {tls_port}, tls: {tls}"))
    try:
        attempts = daemon.wait_for_lines("CERTIFICATE_VERIFY_FAILED", count=3, timeout_s=60)
        assert all("retrying with backoff" in line for _, line in attempts)
        assert attempts[2][0] - attempts[0][0] >= 2.5  # waits 1 s, then 2 s: a backoff, not a tight loop
        assert daemon.alive
    finally:
        assert daemon.stop() == 0


@pytest.fixture
def password_broker(make_broker: Callable[..., Mosquitto], tmp_path: Path) -> Mosquitto:
    passwords = tmp_path / "passwords"
    subprocess.run([str(require("mosquitto_passwd")), "-b", "-c", str(passwords), "agent", "right"], check=True)
    subprocess.run([str(require("mosquitto_passwd")), "-b", str(passwords), "watcher", "watch"], check=True)
    return make_broker(f"allow_anonymous false\npassword_file {passwords}\n")


def test_a_password_protected_broker(
    password_broker: Mosquitto, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    sub = Subscriber(password_broker.host, password_broker.port, ["edge_agent/sec1/#"], auth=("watcher", "watch"))
    daemon = Daemon(
        daemon_config(write_config, tmp_path, f"port: {password_broker.port}, username: agent, password: right")
    )
    try:
        sub.wait_for(lambda _: sub.on("edge_agent/sec1/availability")[-1:] == [b"online"], timeout_s=60)
        sub.wait_for(lambda _: bool(sub.on("edge_agent/sec1/state")), timeout_s=30)
    finally:
        assert daemon.stop() == 0
        sub.close()


def test_a_wrong_password_is_logged_and_retried(
    password_broker: Mosquitto, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    anonymous = Subscriber(password_broker.host, password_broker.port, ["#"])  # refused too: nothing leaks
    daemon = Daemon(
        daemon_config(write_config, tmp_path, f"port: {password_broker.port}, username: agent, password: wrong")
    )
    try:
        attempts = daemon.wait_for_lines("refused the connection", count=3, timeout_s=60)
        assert all("retrying with backoff" in line for _, line in attempts)
        assert any(word in attempts[0][1].lower() for word in ("not authorized", "bad user name or password"))
        assert attempts[2][0] - attempts[0][0] >= 2.5
        assert daemon.alive
    finally:
        assert daemon.stop() == 0
        anonymous.close()
    assert anonymous.messages == []
