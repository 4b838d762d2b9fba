#!/usr/bin/env bash
# One node without Ansible: installs edge-agent as a systemd service, the way the Ansible role lays it out.
#
#   sudo deploy/install.sh                   # from this checkout
#   sudo deploy/install.sh dist/edge_agent_node-0.1.0-py3-none-any.whl
#
# It creates the service user `edge-agent` (groups video and audio), the venv /opt/edge-agent/venv that the
# unit starts, installs the package into it (with its dependencies, from the package index pip is set up
# for), writes /etc/edge-agent/config.yaml from deploy/config.template.yaml and an empty
# /etc/edge-agent/environment (never overwriting either), installs deploy/edge-agent.service and
# udev/99-edge-agent.rules, reloads systemd and udev, and prints the next steps. It does not enable or start
# the service: that comes once the config names your broker and a model is in place.
#
# Idempotent: a second run changes nothing (the package is reinstalled only when the wheel or the
# checkout's files changed; files are copied only when they differ).
#
# Options:
#   --root DIR          install under DIR instead of / (DESTDIR style, for tests and image builds): no
#                       useradd, chown, apt-get, systemctl or udevadm, each skip said. The venv's scripts
#                       name DIR in their paths, so such a venv runs at DIR only.
#   --python PYTHON     Python >= 3.10 to create the venv with (default: python3)
#   --extras LIST       extras of the package (default: hub, which `models pull e2b` needs; "" for none)
#   --pip-args ARGS     extra pip arguments, e.g. "--only-binary=:all:" or "--no-index --find-links DIR"
#   --jetson            also install the Jetson GPU drop-in (deploy/edge-agent.service.d/jetson.conf)
#   --onnxruntime-gpu-index URL   Jetson: replace the CPU onnxruntime with NVIDIA's onnxruntime-gpu from this
#                       index (JetPack 6 / CUDA 12.6: https://pypi.jetson-ai-lab.io/jp6/cu126)
#   --no-apt            do not install the OS packages (python3-venv libportaudio2 alsa-utils ffmpeg)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
root=/
python=python3
extras=hub  # `models pull e2b` fetches from the Hugging Face hub
pip_args=""
jetson=0
gpu_index=""
apt=1
package=""

die() { echo "install: $*" >&2; exit 1; }
say() { echo "install: $*"; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) root=${2:?--root needs a directory}; shift 2 ;;
    --python) python=${2:?--python needs an interpreter}; shift 2 ;;
    --extras) extras=${2?--extras needs a list}; shift 2 ;;
    --pip-args) pip_args=${2?--pip-args needs arguments}; shift 2 ;;
    --jetson) jetson=1; shift ;;
    --onnxruntime-gpu-index) gpu_index=${2:?--onnxruntime-gpu-index needs a URL}; shift 2 ;;
    --no-apt) apt=0; shift ;;
    -h | --help) usage 0 ;;
    -*) echo "install: unknown option $1" >&2; usage 64 >&2 ;;
    *) [ -z "$package" ] || die "one package at most (got $package and $1)"; package=$1; shift ;;
  esac
done

root=$(realpath -m "$root")
real=0
[ "$root" = / ] && real=1
prefix=${root%/}
user=edge-agent
group=edge-agent
venv=/opt/edge-agent/venv
config_dir=/etc/edge-agent
state_dir=/var/lib/edge-agent
unit_dir=/etc/systemd/system
rules_dir=/etc/udev/rules.d

if [ "$real" = 1 ] && [ "$(id -u)" -ne 0 ]; then
  die "run it as root (sudo $0 $*), or with --root DIR to install under a scratch directory"
fi
[ -z "$package" ] || [ -f "$package" ] || die "$package: no such file (a wheel or sdist of edge-agent-node)"
[ -n "$package" ] || [ -f "$repo/pyproject.toml" ] || die "no package given and $repo is not a checkout"
[ "$real" = 1 ] || say "installing under $root (no user, ownership, OS packages, systemd or udev changes)"

changed=0
skipped=()
cleanup=()
trap 'rm -rf "${cleanup[@]}"' EXIT

# --- OS packages (as the Ansible role installs them, less the health gate's mosquitto-clients) ---
if [ "$real" = 1 ] && [ "$apt" = 1 ] && command -v dpkg-query >/dev/null; then
  missing=()
  for p in python3-venv libportaudio2 alsa-utils ffmpeg; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing OS packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    changed=1
  fi
elif [ "$real" = 1 ] && [ "$apt" = 1 ]; then
  skipped+=("OS packages (not a Debian system: install python3-venv, PortAudio, alsa-utils, ffmpeg yourself)")
fi

# --- The service user: the unit's User=/Group=, in video and audio for the cameras and microphone ---
owned=0  # chown to the service user (only on the real system, where it exists)
if [ "$real" = 1 ]; then
  if ! getent group "$group" >/dev/null; then
    groupadd --system "$group"
    say "created group $group"
    changed=1
  fi
  if ! getent passwd "$user" >/dev/null; then
    useradd --system --gid "$group" --home-dir "$state_dir" --no-create-home --shell /usr/sbin/nologin \
      --comment "edge-agent daemon" "$user"
    say "created user $user"
    changed=1
  fi
  for g in video audio; do
    getent group "$g" >/dev/null || { groupadd --system "$g"; changed=1; }
    if ! id -nG "$user" | tr ' ' '\n' | grep -qx "$g"; then
      usermod -aG "$g" "$user"
      say "added $user to group $g"
      changed=1
    fi
  done
  owned=1
else
  skipped+=("the user $user and group $group (useradd), and file ownership (chown)")
fi

# mkdir_as DIR MODE OWNER:GROUP: a directory with this mode (and owner, on the real system).
mkdir_as() {
  local dir=$prefix$1
  if [ ! -d "$dir" ]; then
    mkdir -p "$dir"
    say "created $1"
    changed=1
  fi
  [ "$(stat -c %a "$dir")" = "$2" ] || { chmod "$2" "$dir"; changed=1; }
  if [ "$owned" = 1 ] && [ "$(stat -c %U:%G "$dir")" != "$3" ]; then
    chown "$3" "$dir"
    changed=1
  fi
}

# put SRC DEST MODE OWNER:GROUP [keep]: copy a file when it differs ("keep": only when DEST is absent).
put() {
  local src=$1 dest=$prefix$2
  if [ -e "$dest" ] && { [ "${5:-}" = keep ] || cmp -s "$src" "$dest"; }; then
    [ "${5:-}" = keep ] && ! cmp -s "$src" "$dest" && say "kept $2 (yours; the template is $src)"
  else
    install -m "$3" "$src" "$dest"
    say "wrote $2"
    changed=1
    return 0
  fi
  [ "$(stat -c %a "$dest")" = "$3" ] || { chmod "$3" "$dest"; changed=1; }
  if [ "$owned" = 1 ] && [ "$(stat -c %U:%G "$dest")" != "$4" ]; then
    chown "$4" "$dest"
    changed=1
  fi
  return 0
}

mkdir_as /opt/edge-agent 755 root:root
mkdir_as "$config_dir" 750 "root:$group"
mkdir_as "$state_dir" 750 "$user:$group"
mkdir_as "$state_dir/models" 750 "$user:$group"
mkdir_as "$unit_dir" 755 root:root
mkdir_as "$rules_dir" 755 root:root

# --- The venv and the package ---
[ -L "$prefix$venv" ] && die "$venv is a symlink (a node managed by the Ansible role): update it with the role"
if [ ! -x "$prefix$venv/bin/python" ]; then
  "$python" -c 'import sys; assert sys.version_info >= (3, 10), sys.version' 2>/dev/null ||
    die "$python is not Python 3.10 or newer (--python PYTHON names another)"
  say "creating the venv $venv ($("$python" --version 2>&1))"
  "$python" -m venv "$prefix$venv"
  changed=1
fi
if [ -n "$package" ]; then
  stamp="package $(sha256sum "$package" | cut -d' ' -f1) $(basename "$package")"
  target=$(realpath "$package")
else
  # The checkout's files that go into the package: reinstall when one of them changed.
  stamp="source $(cd "$repo" && find pyproject.toml edge_agent -type f ! -name '*.pyc' ! -path '*/__pycache__/*' |
    LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1) $repo"
  # Built from a copy, so that root leaves no build/ or *.egg-info behind in your checkout.
  target=$(mktemp -d)/edge-agent
  mkdir -p "$target"
  tar -C "$repo" --exclude=__pycache__ -cf - pyproject.toml README.md edge_agent | tar -C "$target" -xf -
  cleanup+=("$(dirname "$target")")
fi
stamp="$stamp extras=[$extras] pip-args=[$pip_args] gpu-index=[$gpu_index]"
stamp_file=$prefix$venv/.edge-agent-installed
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ]; then
  say "the package in $venv is up to date"
else
  say "installing ${package:-$repo}${extras:+[$extras]} into $venv (dependencies from the package index; minutes on a Pi)"
  # shellcheck disable=SC2086  # pip_args is a list of words
  "$prefix$venv/bin/python" -m pip install --quiet --disable-pip-version-check $pip_args \
    "$target${extras:+[$extras]}"
  if [ -n "$gpu_index" ]; then
    say "replacing onnxruntime with onnxruntime-gpu from $gpu_index"
    "$prefix$venv/bin/python" -m pip uninstall --quiet --yes onnxruntime
    # Both write the onnxruntime module: after removing the CPU one, the GPU one's files are put back whole.
    for again in "" --force-reinstall; do
      # shellcheck disable=SC2086
      "$prefix$venv/bin/python" -m pip install --quiet --disable-pip-version-check $pip_args \
        --extra-index-url "$gpu_index" ${again:+$again --no-deps} onnxruntime-gpu
    done
  fi
  printf '%s\n' "$stamp" >"$stamp_file"
  changed=1
fi
version=$("$prefix$venv/bin/edge-agent" --version) || die "$venv/bin/edge-agent does not run"

# --- Config (never overwritten) and the environment file for secrets ---
put "$here/config.template.yaml" "$config_dir/config.yaml" 640 "root:$group" keep
environment=$(mktemp)
cleanup+=("$environment")
printf '%s\n' "# KEY=value lines for the edge-agent unit (EnvironmentFile=), e.g. MQTT_PASSWORD=... (root only, 0600)" \
  >"$environment"
put "$environment" "$config_dir/environment" 600 root:root keep

# --- The systemd unit and the udev rules ---
unit_before=$changed
changed=0
put "$here/edge-agent.service" "$unit_dir/edge-agent.service" 644 root:root
if [ "$jetson" = 1 ]; then
  mkdir_as "$unit_dir/edge-agent.service.d" 755 root:root
  put "$here/edge-agent.service.d/jetson.conf" "$unit_dir/edge-agent.service.d/jetson.conf" 644 root:root
fi
unit_changed=$changed
changed=0
put "$repo/udev/99-edge-agent.rules" "$rules_dir/99-edge-agent.rules" 644 root:root
rules_changed=$changed
changed=$((unit_before | unit_changed | rules_changed))

if [ "$real" = 1 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  if [ "$unit_changed" = 1 ]; then
    systemctl daemon-reload
    say "reloaded systemd"
  fi
elif [ "$unit_changed" = 1 ]; then
  skipped+=("systemctl daemon-reload (systemd is not running here)")
fi
if [ "$real" = 1 ] && command -v udevadm >/dev/null && [ -S /run/udev/control ]; then
  if [ "$rules_changed" = 1 ]; then
    udevadm control --reload
    udevadm trigger --subsystem-match=video4linux --subsystem-match=sound
    say "reloaded the udev rules"
  fi
elif [ "$rules_changed" = 1 ]; then
  skipped+=("udevadm control --reload (udev is not running here)")
fi

for what in "${skipped[@]}"; do say "skipped: $what"; done
if [ "$changed" = 1 ]; then say "done: $version"; else say "nothing to change: $version"; fi
bin=$venv/bin/edge-agent
cat <<EOF

Next steps:
  1. Get a model (the service cannot read /home):
       sudo -u $user -H $bin models pull e2b --dir $state_dir/models
  2. Edit $config_dir/config.yaml: your broker, cameras and microphone (\`$bin devices\` lists them),
     the model path of step 1; secrets (MQTT_PASSWORD=...) go into $config_dir/environment. Then check it:
       sudo $bin check-config -c $config_dir/config.yaml
       sudo $bin doctor -c $config_dir/config.yaml
  3. Start the service, now and at every boot, and follow its log:
       sudo systemctl enable --now edge-agent
       journalctl -u edge-agent -f
EOF
