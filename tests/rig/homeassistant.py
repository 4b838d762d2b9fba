"""A real Home Assistant (the `homeassistant` package, pinned) on loopback, with MQTT set up against the rig's
broker and a long-lived access token for its REST API. Its venv (Python 3.13) is built once, on demand, under
~/.cache/edge-agent/, with Home Assistant's own package constraints."""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rig.broker import free_port, terminate, wait_for_port

VERSION = "2025.4.4"  # the newest release that installs from the registry here (needs Python 3.13)
# Requirements of the integrations a bare config sets up anyway (frontend and the default ones), installed with
# the package so Home Assistant never installs at run time (it runs with --skip-pip).
EXTRA_REQUIREMENTS = ["paho-mqtt==2.1.0", "home-assistant-frontend==20250411.0", "isal==1.7.1"]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edge-agent"
PYTHONS = [Path.home() / ".pyenv/versions/3.13.0/bin/python3.13", Path("/usr/bin/python3.13")]
ADMIN_GROUP = "system-admin"


class HomeAssistantUnavailableError(RuntimeError):
    """Home Assistant cannot be installed on this machine (no Python 3.13, or the registry refused it)."""


def _python313() -> Path:
    found = shutil.which("python3.13")
    for candidate in [*PYTHONS, *([Path(found)] if found else [])]:
        if candidate.is_file():
            return candidate
    raise HomeAssistantUnavailableError(f"Home Assistant {VERSION} needs Python 3.13: none at {PYTHONS} or on PATH")


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise HomeAssistantUnavailableError(
            f"{what} failed ({done.returncode}): {(done.stderr or done.stdout)[-1500:]}"
        )


def install(cache: Path = CACHE) -> Path:
    """The venv with Home Assistant, built the first time (minutes) and reused after; a lock keeps parallel test
    runs from building it twice."""
    venv = cache / f"ha-venv-{VERSION}"
    marker, wanted = venv / ".installed", " ".join([VERSION, *EXTRA_REQUIREMENTS])
    if marker.is_file() and marker.read_text() == wanted:
        return venv
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f"ha-venv-{VERSION}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and marker.read_text() == wanted:
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        _run([str(_python313()), "-m", "venv", str(venv)], "creating the Home Assistant venv")
        pip = [str(venv / "bin" / "python"), "-m", "pip"]
        with tempfile.TemporaryDirectory() as tmp:
            _run([*pip, "download", "--no-deps", "-d", tmp, f"homeassistant=={VERSION}"], "downloading it")
            (wheel,) = Path(tmp).glob("homeassistant-*.whl")
            constraints = Path(tmp) / "constraints.txt"
            with zipfile.ZipFile(wheel) as archive:  # the pins Home Assistant is tested with, as its docs install
                constraints.write_bytes(archive.read("homeassistant/package_constraints.txt"))
            _run([*pip, "install", "-c", str(constraints), str(wheel), *EXTRA_REQUIREMENTS], "installing it")
        marker.write_text(wanted)
    return venv


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def access_token(refresh_token_id: str, jwt_key: str, lifetime_s: int) -> str:
    """The HS256 JWT Home Assistant issues for a refresh token (`iss` = its id, signed with its jwt_key)."""
    now = int(time.time())
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = _b64(json.dumps({"iss": refresh_token_id, "iat": now, "exp": now + lifetime_s}).encode())
    signature = hmac.new(jwt_key.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{_b64(signature)}"


def _store(key: str, data: dict[str, Any], version: int = 1, minor_version: int = 1) -> str:
    return json.dumps({"version": version, "minor_version": minor_version, "key": key, "data": data}, indent=1)


def _auth(user_id: str, token_id: str, jwt_key: str, created: str) -> dict[str, Any]:
    """`.storage/auth`: one owner in the admin group with one long-lived access token (no password login)."""
    user = {"id": user_id, "group_ids": [ADMIN_GROUP], "is_owner": True, "is_active": True, "name": "rig"}
    token = {
        "id": token_id,
        "user_id": user_id,
        "client_id": None,
        "client_name": "edge-agent rig",
        "client_icon": None,
        "token_type": "long_lived_access_token",
        "created_at": created,
        "access_token_expiration": 10 * 365 * 86400.0,
        "token": secrets.token_hex(64),
        "jwt_key": jwt_key,
        "last_used_at": None,
        "last_used_ip": None,
        "credential_id": None,
    }
    return {
        "users": [{**user, "system_generated": False, "local_only": False}],
        "groups": [{"id": ADMIN_GROUP, "name": "Administrators"}],
        "credentials": [],
        "refresh_tokens": [token],
    }


def _mqtt_entry(broker_host: str, broker_port: int, created: str) -> dict[str, Any]:
    """`.storage/core.config_entries` with the MQTT integration (version 1.2: options apart from data)."""
    entry = {
        "entry_id": uuid.uuid4().hex,
        "version": 1,
        "minor_version": 2,
        "domain": "mqtt",
        "title": broker_host,
        "data": {"broker": broker_host, "port": broker_port},
        "options": {"discovery": True, "discovery_prefix": "homeassistant"},
        "pref_disable_new_entities": False,
        "pref_disable_polling": False,
        "source": "user",
        "unique_id": None,
        "disabled_by": None,
        "created_at": created,
        "modified_at": created,
        "discovery_keys": {},
        "subentries": [],
    }
    return {"entries": [entry]}


CONFIGURATION = """\
homeassistant:
  name: edge-agent rig
  latitude: 0
  longitude: 0
  elevation: 0
  unit_system: metric
  time_zone: UTC
  currency: EUR
  country: DE
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
logger:
  default: warning
  logs:
    homeassistant.components.mqtt: info
"""


@dataclass
class HomeAssistant:
    """One Home Assistant process with its own config dir; `get()` calls its REST API with the token."""

    venv: Path
    config_dir: Path
    broker_host: str
    broker_port: int
    port: int = field(default_factory=free_port)
    token: str = ""
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        """Home Assistant's log."""
        return self.config_dir / "home-assistant.log"

    def write_config(self) -> None:
        """configuration.yaml, the MQTT config entry, an owner with a long-lived token, onboarding done."""
        storage = self.config_dir / ".storage"
        storage.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "configuration.yaml").write_text(CONFIGURATION.format(port=self.port))
        created = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
        user_id, token_id, jwt_key = uuid.uuid4().hex, uuid.uuid4().hex, secrets.token_hex(64)
        (storage / "auth").write_text(_store("auth", _auth(user_id, token_id, jwt_key, created)))
        entries = _mqtt_entry(self.broker_host, self.broker_port, created)
        (storage / "core.config_entries").write_text(_store("core.config_entries", entries, minor_version=5))
        done = {"done": ["user", "core_config", "analytics", "integration"]}
        (storage / "onboarding").write_text(_store("onboarding", done, version=4))
        self.token = access_token(token_id, jwt_key, 3600)

    def start(self, timeout_s: float = 180.0) -> None:
        """Start Home Assistant and wait until its API answers and MQTT is set up."""
        self.write_config()
        argv = [str(self.venv / "bin" / "hass"), "-c", str(self.config_dir), "--skip-pip"]
        argv += ["--log-file", str(self.log_file)]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        wait_for_port(self.port, timeout_s=timeout_s, host="127.0.0.1")
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"Home Assistant exited:\n{self.log()[-3000:]}"
            try:
                if "mqtt" in self.get("/api/config")["components"]:
                    return
            except (OSError, urllib.error.HTTPError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"Home Assistant did not set up MQTT in {timeout_s} s:\n{self.log()[-3000:]}")

    def get(self, path: str) -> Any:
        """GET a REST API path with the access token; the JSON answer."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def get_bytes(self, path: str) -> bytes:
        """GET a path (e.g. an image entity's picture) with the access token; the body."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return bytes(response.read())

    def states(self) -> dict[str, dict[str, Any]]:
        """Every entity's state, by entity id."""
        return {state["entity_id"]: state for state in self.get("/api/states")}

    def log(self) -> str:
        """What Home Assistant logged so far."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def stop(self) -> None:
        """Stop Home Assistant (SIGTERM, then SIGKILL)."""
        if self.process is not None and self.process.poll() is None:
            terminate(self.process)
