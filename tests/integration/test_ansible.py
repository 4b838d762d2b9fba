"""The Ansible role applied for real, over SSH, to this machine (a throwaway sshd on 127.0.0.1).

Every path of the role points into a temporary directory, the service account is `nobody` and systemd
is left alone (`edge_agent_manage_service: false`: no systemd as PID 1 here), so the run touches neither
/opt nor /etc of this machine (the OS packages it asks for are the test rig's, already installed).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from rig.broker import Mosquitto, free_port
from rig.daemon import Daemon
from rig.sshd import SshServer, find_sshd

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
MODEL = REPO / "models" / "tiny-gemma4"
OTHER_MODEL = REPO / "models" / "tiny-gemma4-b"  # pulled under the same name by the rollout that fails

pytestmark = pytest.mark.timeout(900)


def _find_tool(name: str) -> str | None:
    """`name` next to this interpreter (the project's venv, where the test extra installs it), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def _require(name: str) -> str:
    found = _find_tool(name)
    if found is None:
        pytest.skip(f"{name} not found next to {sys.executable} or on PATH: install ansible-core and ansible-lint")
    return found


@dataclass
class Deployment:
    """What the two playbook runs left behind."""

    root: Path
    config: Path
    venv: Path
    runs: list[subprocess.CompletedProcess[str]]
    env: dict[str, str]
    release_before_rollback: Path
    release_after_rollback: Path
    rollback_run: subprocess.CompletedProcess[str]
    mqtt_gate_run: subprocess.CompletedProcess[str]
    model_before_rollback: set[tuple[str, str]]


def _ansible_env(tmp: Path) -> dict[str, str]:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "ansible.cfg").write_text("[defaults]\n")  # no ansible.cfg of the machine or the user
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(tmp / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_HOST_KEY_CHECKING="False",
        ANSIBLE_RETRY_FILES_ENABLED="False",
        ANSIBLE_PIPELINING="True",
        ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-local"),
        ANSIBLE_REMOTE_TMP=str(tmp / "ansible-remote"),
        ANSIBLE_HOME=str(tmp / "ansible-home"),
        ANSIBLE_STDOUT_CALLBACK="default",
    )
    # ansible-playbook runs ssh and its own python from its directory
    env["PATH"] = f"{Path(_require('ansible-playbook')).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _recap(output: str) -> dict[str, int]:
    """The node's counters from PLAY RECAP."""
    match = re.search(r"^node-1\s+:\s+(.*)$", output, re.MULTILINE)
    assert match, f"no PLAY RECAP line for node-1:\n{output[-3000:]}"
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, mosquitto: Mosquitto) -> Iterator[Deployment]:
    playbook = _require("ansible-playbook")
    sshd = find_sshd()
    if sshd is None:
        pytest.skip("sshd/ssh/ssh-keygen not installed: apt-get install -y openssh-server openssh-client")
    if os.geteuid() != 0:
        pytest.skip("the Ansible test logs in as root over SSH; run it as root")
    tmp = tmp_path_factory.mktemp("ansible")
    wheel_dir = tmp / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheel_dir), str(REPO)],
        check=True,
    )
    (wheel,) = wheel_dir.glob("edge_agent_node-*.whl")
    server = SshServer(tmp / "sshd", binary=sshd)
    server.start()
    try:
        server.wait_ready()
        root = tmp / "target"
        inventory = {
            "edge_nodes": {
                "hosts": {
                    "node-1": {
                        "ansible_host": "127.0.0.1",
                        "ansible_port": server.port,
                        "ansible_user": "root",
                        "ansible_become": False,
                        "ansible_ssh_private_key_file": str(server.client_key),
                        "ansible_ssh_common_args": " ".join(server.ssh_args()),
                        "ansible_python_interpreter": "/usr/bin/python3",
                    }
                }
            }
        }
        variables = {
            "edge_agent_package_src": str(wheel),
            "edge_agent_install_prefix": str(root / "opt/edge-agent"),
            "edge_agent_config_dir": str(root / "etc/edge-agent"),
            "edge_agent_state_dir": str(root / "var/lib/edge-agent"),
            "edge_agent_systemd_dir": str(root / "etc/systemd/system"),
            "edge_agent_udev_rules_dir": str(root / "etc/udev/rules.d"),
            "edge_agent_manage_service": False,
            "edge_agent_manage_udev": False,
            "edge_agent_manage_user": False,
            "edge_agent_user": "nobody",
            "edge_agent_group": "nogroup",
            "edge_agent_python": "/usr/bin/python3",
            "edge_agent_apt_cache_valid_time": 0,  # the packages are the rig's (deploy/os-deps.sh test): no update
            "edge_agent_model_method": "pull",
            "edge_agent_model_source": str(MODEL),
            "edge_agent_model_name": "tiny-gemma4",
            "edge_agent_mqtt_host": "127.0.0.1",
            "edge_agent_mqtt_port": 1,
            "edge_agent_mqtt_username": "edge-agent",
            "edge_agent_mqtt_password": 'pa ss"$word`\\',
            "edge_agent_http": {"enabled": True, "host": "0.0.0.0", "port": free_port()},
            "edge_agent_http_token": "a token of 24 characters",
            "edge_agent_cameras": [{"name": "garage", "source": 0, "fps": 2}],
            "edge_agent_tasks": [
                {
                    "kind": "watch",
                    "name": "garage_door",
                    "camera": "garage",
                    "question": "Is the garage door open?",
                    "answer": {"type": "boolean"},
                    "interval_s": 300,
                }
            ],
            "edge_agent_tools": [
                {
                    "name": "set_light",
                    "description": "Switch the garage light on or off.",
                    "parameters": {
                        "type": "object",
                        "properties": {"state": {"type": "string", "enum": ["ON", "OFF"]}},
                        "required": ["state"],
                    },
                    "action": {
                        "type": "mqtt_publish",
                        "topic": "zigbee2mqtt/light/set",
                        "payload": '{"state": "{state}"}',
                    },
                },
                {"name": "current_time", "description": "The current local date and time.", "action": {"type": "time"}},
            ],
            "edge_agent_service_overrides": {"MemoryMax": "3G"},
        }
        (tmp / "inventory.json").write_text(json.dumps(inventory))
        (tmp / "vars.json").write_text(json.dumps(variables))
        env = _ansible_env(tmp)
        command = [
            playbook,
            "-i", str(tmp / "inventory.json"),
            "-e", f"@{tmp / 'vars.json'}",
            str(ANSIBLE_DIR / "site.yml"),
        ]  # fmt: skip
        runs = []
        for attempt in (1, 2):
            run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
            (tmp / f"run{attempt}.log").write_text(run.stdout + run.stderr)
            assert run.returncode == 0, (
                f"ansible-playbook run {attempt} failed:\n{run.stdout[-6000:]}\n{run.stderr[-3000:]}"
            )
            runs.append(run)
        # The MQTT health gate against a node that runs: the installed daemon, started the way the unit
        # starts it (its environment file, its config, pointed at a real broker), must pass the gate.
        mqtt_gate = _run_with_node_online(root, env, command, mosquitto)
        (tmp / "run-mqtt-gate.log").write_text(mqtt_gate.stdout + mqtt_gate.stderr)
        # A third rollout of another build whose health gate fails (doctor: no broker here) must put the
        # venv link back on the release that ran before.
        venv = root / "opt/edge-agent/venv"
        release_before = venv.resolve()
        model_before = _manifest_files(root / "var/lib/edge-agent/models/tiny-gemma4")
        other = tmp / "dist2" / wheel.name
        other.parent.mkdir()
        shutil.copy(wheel, other)
        with zipfile.ZipFile(other, "a") as archive:
            archive.comment = b"another build"
        rollback = subprocess.run(
            [
                *command[:-1],
                "-e", json.dumps({"edge_agent_package_src": str(other), "edge_agent_health_gate": "doctor",
                                  "edge_agent_model_source": str(OTHER_MODEL),
                                  "edge_agent_tasks": [],  # OTHER_MODEL cannot see: a watch task fails check-config
                                  "edge_agent_health_gate_enabled": True}),
                command[-1],
            ],
            env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        (tmp / "run3-rollback.log").write_text(rollback.stdout + rollback.stderr)
        yield Deployment(
            root=root,
            config=root / "etc/edge-agent/config.yaml",
            venv=root / "opt/edge-agent/venv",
            runs=runs,
            env=env,
            release_before_rollback=release_before,
            release_after_rollback=venv.resolve(),
            rollback_run=rollback,
            mqtt_gate_run=mqtt_gate,
            model_before_rollback=model_before,
        )
    finally:
        server.stop()


def _run_with_node_online(
    root: Path, env: dict[str, str], command: list[str], broker: Mosquitto
) -> subprocess.CompletedProcess[str]:
    config = root / "etc/edge-agent/config.yaml"
    online = yaml.safe_load(config.read_text())
    online["mqtt"]["port"] = broker.port
    online_config = config.with_name("online.yaml")
    online_config.write_text(yaml.safe_dump(online))
    daemon_env = {**_environment_file(root / "etc/edge-agent/environment"), "PATH": os.environ["PATH"]}
    daemon = Daemon(online_config, env=daemon_env, argv=[str(root / "opt/edge-agent/venv/bin/edge-agent"), "run",
                                                        "-c", str(online_config)])  # fmt: skip
    try:
        daemon.wait_for_lines("model loaded")
        gate = {"edge_agent_mqtt_port": broker.port, "edge_agent_health_gate": "mqtt",
                "edge_agent_health_gate_enabled": True, "edge_agent_health_timeout_s": 30}  # fmt: skip
        return subprocess.run(
            [*command[:-1], "-e", json.dumps(gate), command[-1]], env=env, capture_output=True, text=True, timeout=600
        )
    finally:
        daemon.stop()


def test_mqtt_health_gate_passes_for_a_node_that_is_online(deployment: Deployment) -> None:
    run = deployment.mqtt_gate_run
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    recap = _recap(run.stdout)
    assert recap["failed"] == 0 and recap.get("rescued", 0) == 0
    assert "Health gate - wait for the node's retained availability" in run.stdout
    gate_lines = run.stdout.split("Health gate - wait for the node's retained availability")[1].splitlines()[1:3]
    assert any(line.startswith("ok:") for line in gate_lines), gate_lines


def test_first_run_installs_second_run_changes_nothing(deployment: Deployment) -> None:
    first, second = (_recap(run.stdout) for run in deployment.runs)
    assert first["failed"] == 0 and first["unreachable"] == 0
    assert first["changed"] > 0
    assert second["failed"] == 0
    assert second["changed"] == 0, "second run was not idempotent:\n" + "\n".join(
        line for line in deployment.runs[1].stdout.splitlines() if line.startswith(("changed:", "TASK ["))
    )


def test_failed_health_gate_rolls_back(deployment: Deployment) -> None:
    run = deployment.rollback_run
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-4000:]
    recap = _recap(run.stdout)
    assert recap["rescued"] == 1 and recap["failed"] == 1, output[-4000:]
    assert "Roll back - point the venv link at the previous release" in output
    assert "invalid config" not in output  # the gate ran doctor with the node's environment file
    assert deployment.release_after_rollback == deployment.release_before_rollback
    assert "Roll back - put back the model this run replaced" in output
    models = deployment.root / "var/lib/edge-agent/models"
    # the pulls take the q4 variant's files only: the model in place is the one before, file for file
    assert _manifest_files(models / "tiny-gemma4") == deployment.model_before_rollback, "the model it replaced is back"
    assert "onnx/vision_encoder_q4.onnx" in _manifest_paths(models / "tiny-gemma4")  # MODEL sees
    failed = _manifest_paths(models / "tiny-gemma4.failed")
    assert failed <= _manifest_paths(OTHER_MODEL) and not any("vision" in path for path in failed)  # OTHER_MODEL
    releases = sorted(p.name for p in deployment.release_before_rollback.parent.iterdir())
    assert len(releases) == 2, releases  # the failed build stays for inspection until it is pruned


def _manifest_paths(model_dir: Path) -> set[str]:
    return {path for path, _ in _manifest_files(model_dir)}


def _manifest_files(model_dir: Path) -> set[tuple[str, str]]:
    """(path, sha256) of every file the model's manifest lists."""
    files = json.loads((model_dir / "manifest.json").read_text())["files"]
    return {(entry["path"], entry["sha256"]) for entry in files}


def test_layout_on_the_target(deployment: Deployment) -> None:
    root = deployment.root
    assert deployment.venv.is_symlink()
    release = deployment.venv.resolve()
    assert release.parent == root / "opt/edge-agent/releases"
    assert (release / "bin/edge-agent").is_file()
    assert (root / "var/lib/edge-agent/models/tiny-gemma4/manifest.json").is_file()
    assert (root / "etc/edge-agent").stat().st_mode & 0o777 == 0o750
    environment = root / "etc/edge-agent/environment"
    assert environment.stat().st_mode & 0o777 == 0o600
    assert 'MQTT_PASSWORD="pa ss\\"\\$word\\`\\\\"' in environment.read_text()
    assert 'HTTP_TOKEN="a token of 24 characters"' in environment.read_text()
    config_text = deployment.config.read_text()
    assert "${MQTT_PASSWORD}" in config_text and "pa ss" not in config_text
    http = yaml.safe_load(config_text)["http"]
    assert http["enabled"] is True and http["host"] == "0.0.0.0" and http["token"] == "${HTTP_TOKEN}"
    unit = root / "etc/systemd/system/edge-agent.service"
    assert unit.read_text() == (REPO / "deploy/edge-agent.service").read_text()
    dropin = (root / "etc/systemd/system/edge-agent.service.d/10-ansible.conf").read_text()
    assert f"ExecStart={deployment.venv}/bin/edge-agent run -c {deployment.config}" in dropin
    assert "MemoryMax=3G" in dropin


def _environment_file(path: Path) -> dict[str, str]:
    """The environment the unit gives the daemon: the environment file, read by a shell."""
    out = subprocess.run(["/bin/sh", "-c", f'set -a; . "{path}"; set +a; env -0'], capture_output=True, check=True)
    return dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)


def _target_env(deployment: Deployment) -> dict[str, str]:
    """The node's environment file on top of ours."""
    return _environment_file(deployment.root / "etc/edge-agent/environment")


def _run_installed(deployment: Deployment, verb: str) -> subprocess.CompletedProcess[str]:
    """`edge-agent <verb> -c <config> --json` from the installed venv, with the node's environment."""
    argv = [str(deployment.venv / "bin/edge-agent"), verb, "-c", str(deployment.config), "--json"]
    return subprocess.run(argv, env=_target_env(deployment), capture_output=True, text=True, timeout=180)


def test_installed_check_config_accepts_the_config(deployment: Deployment) -> None:
    result = _run_installed(deployment, "check-config")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _target_env(deployment)["MQTT_PASSWORD"] == 'pa ss"$word`\\'


def test_installed_doctor_reports(deployment: Deployment) -> None:
    result = _run_installed(deployment, "doctor")
    # no broker on port 1 and no camera: doctor fails, but it must have checked and said so in JSON
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    checks = report["checks"] if isinstance(report, dict) else report
    assert len(checks) > 3
    text = json.dumps(checks)
    assert "tiny-gemma4" in text


def test_ansible_lint_production() -> None:
    lint = _require("ansible-lint")
    env = dict(os.environ)
    env["PATH"] = f"{Path(lint).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        [lint, "--profile", "production", "--nocolor", "ansible/"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_playbook_syntax(tmp_path: Path) -> None:
    playbook = _require("ansible-playbook")
    result = subprocess.run(
        [playbook, "--syntax-check", "-i", str(ANSIBLE_DIR / "inventory.example.yml"), str(ANSIBLE_DIR / "site.yml")],
        env=_ansible_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _local_node(tmp_path: Path) -> tuple[dict[str, object], Path]:
    """The recipe of ansible/inventory.localhost.yml (ansible_connection=local) with every path in tmp_path and
    a release already in place: a package file whose release links to this project's venv."""
    root = tmp_path / "target"
    for directory in ("etc/edge-agent", "opt/edge-agent/releases", "opt/edge-agent/dist", "var/lib/edge-agent/models"):
        (root / directory).mkdir(parents=True)
    package = tmp_path / "edge_agent_node-0.0.0-py3-none-any.whl"
    package.write_bytes(b"a stand-in: the release it names is this project's venv")
    digest = hashlib.sha1(package.read_bytes()).hexdigest()[:12]
    (root / f"opt/edge-agent/releases/{package.stem}-{digest}").symlink_to(sys.prefix)
    inventory = yaml.safe_load((ANSIBLE_DIR / "inventory.localhost.yml").read_text())
    host = inventory["edge_nodes"]["hosts"]["localhost"]
    assert host["ansible_connection"] == "local"
    host.update(
        edge_agent_package_src=str(package),
        edge_agent_install_prefix=str(root / "opt/edge-agent"),
        edge_agent_config_dir=str(root / "etc/edge-agent"),
        edge_agent_state_dir=str(root / "var/lib/edge-agent"),
        edge_agent_systemd_dir=str(root / "etc/systemd/system"),
        edge_agent_udev_rules_dir=str(root / "etc/udev/rules.d"),
        edge_agent_manage_service=False,
        edge_agent_manage_udev=False,
        edge_agent_group="root",
        edge_agent_model_method="none",
        edge_agent_model_path=str(MODEL),
        edge_agent_health_gate="none",
    )
    return inventory, root


def _play_local(tmp_path: Path, inventory: dict[str, object], *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"inventory-{len(list(tmp_path.glob('inventory-*')))}.json"
    path.write_text(json.dumps(inventory))
    command = [_require("ansible-playbook"), "-i", str(path), *args, str(ANSIBLE_DIR / "site.yml")]
    return subprocess.run(command, env=_ansible_env(tmp_path / "ansible"), capture_output=True, text=True, timeout=300)


RULE = 'SUBSYSTEM=="video4linux", ATTRS{idVendor}=="046d", ATTR{index}=="0", SYMLINK+="edge-agent/cam0", GROUP="video"'


def test_try_it_on_this_machine_with_tags_names_and_inventory_errors(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the local run writes files owned by root; run it as root")
    inventory, root = _local_node(tmp_path)
    host = inventory["edge_nodes"]["hosts"]["localhost"]  # type: ignore[index]
    host["edge_agent_cameras"] = [{"name": "garage", "source": "/dev/edge-agent/cam0", "fps": 2}]
    task = {"kind": "watch", "name": "door", "camera": "garage", "question": "Is it open?", "interval_s": 60}
    host["edge_agent_tasks"] = [task]

    unnamed = _play_local(tmp_path, inventory, "--tags", "config")  # no rule makes /dev/edge-agent/cam0
    assert unnamed.returncode != 0
    assert "use /dev/edge-agent/cam0, which no rule in edge_agent_udev_rules creates" in unnamed.stdout

    host["edge_agent_udev_rules"] = [RULE]
    host["edge_agent_tasks"] = [{**task, "question": "", "intervall_s": 5}]
    invalid = _play_local(tmp_path, inventory, "--tags", "config")
    assert invalid.returncode != 0
    failure = invalid.stdout[invalid.stdout.index("fix these variables") :]
    assert "edge_agent_tasks[0].question: must not be empty" in failure
    assert "edge_agent_tasks[0].intervall_s: unknown key (did you mean 'interval_s'?)" in failure
    assert ".yaml:" not in failure.split("PLAY RECAP")[0]  # no temporary file and line of it
    assert not (root / "etc/edge-agent/config.yaml").exists()

    host["edge_agent_tasks"] = [task]
    valid = _play_local(tmp_path, inventory, "--tags", "config,service")
    assert valid.returncode == 0, valid.stdout[-4000:]
    assert "Install the runtime OS packages" not in valid.stdout  # the install tag did not run
    assert "pip" not in valid.stdout.lower().split("play recap")[0].replace("skipping", "")
    config = yaml.safe_load((root / "etc/edge-agent/config.yaml").read_text())
    assert config["cameras"][0]["source"] == "/dev/edge-agent/cam0"
    assert RULE in (root / "etc/udev/rules.d/98-edge-agent-local.rules").read_text()
    assert (root / "opt/edge-agent/venv").resolve() == Path(sys.prefix).resolve()


def test_localhost_recipe_syntax(tmp_path: Path) -> None:
    playbook = _require("ansible-playbook")
    result = subprocess.run(
        [playbook, "--syntax-check", "-i", str(ANSIBLE_DIR / "inventory.localhost.yml"), str(ANSIBLE_DIR / "site.yml")],
        env=_ansible_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tags = subprocess.run(
        [playbook, "--list-tags", "-i", str(ANSIBLE_DIR / "inventory.localhost.yml"), str(ANSIBLE_DIR / "site.yml")],
        env=_ansible_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tags.returncode == 0, tags.stdout + tags.stderr
    listed = re.search(r"TASK TAGS: \[(.*)\]", tags.stdout)
    assert listed is not None and {"install", "model", "config", "service", "health"} <= {
        t.strip() for t in listed.group(1).split(",")
    }
