"""Find the external programs the rig needs, failing with what to install when one is missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

_PACKAGES = {
    "mosquitto": "mosquitto",
    "mosquitto_sub": "mosquitto-clients",
    "espeak-ng": "espeak-ng",
    "sox": "sox",
    "ffmpeg": "ffmpeg",
    "openssl": "openssl",
}


def require(program: str) -> Path:
    """Path of `program` (also looked up in /usr/sbin), or fail the test saying what to install."""
    found = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
    if found is None:
        package = _PACKAGES.get(program, program)
        pytest.fail(
            f"{program} is not installed: run `apt-get install -y {package}` "
            "(`make test` installs it when run as root)",
            pytrace=False,
        )
    return Path(found)


def require_library(name: str, package: str) -> None:
    """Fail unless the shared library `name` can be loaded."""
    import ctypes.util

    if ctypes.util.find_library(name) is None:
        pytest.fail(f"lib{name} is not installed: run `apt-get install -y {package}`", pytrace=False)
