"""A throwaway OpenSSH server on 127.0.0.1 for Ansible tests: own host key, own client key, root by key only."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from rig.broker import free_port, terminate, wait_for_port

SSHD = "/usr/sbin/sshd"


def find_sshd() -> str | None:
    """Path of sshd and ssh-keygen both present, else None (the test then skips)."""
    sshd = shutil.which("sshd") or shutil.which("sshd", path="/usr/sbin:/sbin")
    if sshd is None or shutil.which("ssh-keygen") is None or shutil.which("ssh") is None:
        return None
    return sshd


@dataclass
class SshServer:
    """`sshd -D -e -f <config>` on a free loopback port; stopped by its pid."""

    workdir: Path
    binary: str = SSHD
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def client_key(self) -> Path:
        """The private key that may log in as root."""
        return self.workdir / "id_ed25519"

    @property
    def log_file(self) -> Path:
        """Where sshd's log (-e: stderr) goes."""
        return self.workdir / "sshd.log"

    def start(self) -> None:
        """Make the keys and the config, start sshd and wait until it accepts connections."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o700)
        host_key = self.workdir / "ssh_host_ed25519_key"
        for key in (host_key, self.client_key):
            if not key.exists():
                subprocess.run(
                    ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edge-agent-test", "-f", str(key)],
                    check=True,
                )
        authorized = self.workdir / "authorized_keys"
        authorized.write_text(self.client_key.with_suffix(".pub").read_text())
        authorized.chmod(0o600)
        config = self.workdir / "sshd_config"
        config.write_text(
            f"Port {self.port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {host_key}\n"
            f"PidFile {self.workdir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {authorized}\n"
            "PermitRootLogin prohibit-password\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "Subsystem sftp internal-sftp\n"
        )
        # sshd insists on its privilege separation directory
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"sshd did not start:\n{self.log_file.read_text(errors='replace')[-2000:]}") from None

    def stop(self) -> None:
        """Stop sshd (and so its connections' parent) by pid."""
        if self.process is None:
            return
        terminate(self.process)
        self.process = None

    def ssh_args(self) -> list[str]:
        """Options for ssh (and Ansible's ssh_common_args) to reach this server."""
        return [
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "LogLevel=ERROR",
        ]

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Block until a key login as root runs a command."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = subprocess.run(
                ["ssh", *self.ssh_args(), "-i", str(self.client_key), "-p", str(self.port), "root@127.0.0.1", "true"],
                capture_output=True,
                text=True,
            )
            if result.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"ssh login failed: {result.stderr}\n{self.log_file.read_text(errors='replace')}")
            time.sleep(0.2)
