#!/usr/bin/env bash
# Installs the Debian / Raspberry Pi OS packages one job needs: deploy/os-deps.sh runtime|demo|test
# As root it runs apt-get; otherwise it names the missing packages and the command to run, and fails.
set -euo pipefail

case "${1:-runtime}" in
  runtime) packages=() ;;  # libportaudio2 is only needed with a microphone: see README
  demo) packages=(mosquitto mosquitto-clients) ;;
  test) packages=(mosquitto mosquitto-clients libportaudio2 alsa-utils ffmpeg espeak-ng sox openssl python3-venv
        openssh-server openssh-client chromium) ;;  # ssh: the Ansible role's run; chromium: the status page test
  *) echo "usage: $0 runtime|demo|test" >&2; exit 64 ;;
esac

python=${PYTHON:-python3}
if ! "$python" -c "import ensurepip, venv" 2>/dev/null; then
  packages+=(python3-venv)
fi

if ! command -v dpkg-query >/dev/null; then
  echo "os-deps: not a Debian-based system; install these yourself: ${packages[*]:-nothing}" >&2
  exit 0
fi

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  echo "os-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "os-deps: missing OS packages: ${missing[*]}" >&2
  echo "os-deps: run: sudo apt-get install -y ${missing[*]}   (then run make again)" >&2
  exit 1
fi
