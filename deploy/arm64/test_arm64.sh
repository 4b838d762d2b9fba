#!/usr/bin/env bash
# `make test-arm64`: install the package from wheels alone in an emulated Raspberry Pi OS (Debian 12
# bookworm arm64, Python 3.11, qemu-user) and check that greedy generation on the tiny fixture model
# gives the same token ids there as on this machine. See shared design TEST-RIG.md ("arm64, emulated").
# qemu is 200-300x slower than a real Pi: the timings printed are for the notes, never speed figures.
#
# Needs root. The rootfs is cached in $ARM64_CACHE (default /var/cache/edge-agent-arm64); a run without
# a complete cache builds it with debootstrap (about 5 minutes). Environment:
#   VENV            the host virtualenv with edge-agent installed (default: <repo>/.venv)
#   ARM64_CACHE     where the rootfs lives;  ARM64_MIRROR  Debian mirror (default: the one apt uses)
#   ARM64_MEDIA=0   skip the image + audio `ask` comparison (the slow part)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
venv=${VENV:-$repo/.venv}
cache=${ARM64_CACHE:-/var/cache/edge-agent-arm64}
rootfs=$cache/rootfs
marker=$cache/rootfs.ok
# What the cached rootfs was built from; a change rebuilds it.
spec="bookworm arm64 minbase python3,python3-venv,python3-pip"
model=models/tiny-gemma4

say() { echo "test-arm64: $*"; }
skip() { say "SKIPPED: $*"; exit 0; }
die() { say "FAILED: $*" >&2; exit 1; }

# --- Can this machine do it at all? ---------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || skip "needs root (debootstrap, chroot, mounts); run as root on the CI machine"
[ "$(uname -m)" != aarch64 ] || skip "this machine is already aarch64: nothing to emulate"
[ -x "$venv/bin/edge-agent" ] || die "no $venv/bin/edge-agent; run 'make .venv/.runtime' first"
if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null \
  || ! command -v update-binfmts >/dev/null; then
  say "installing qemu-user-static binfmt-support debootstrap"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    qemu-user-static binfmt-support debootstrap >/dev/null
fi
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null \
    || skip "binfmt_misc cannot be mounted here (no kernel support or no privileges)"
fi
update-binfmts --enable qemu-aarch64 2>/dev/null || true
grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null \
  || skip "the kernel does not run aarch64 binaries through qemu (binfmt qemu-aarch64 not enabled)"

# --- One run at a time per cache; unmount everything on exit, also on failure --------------------
mkdir -p "$cache"
exec 9>"$cache/lock"
flock 9
work=$(mktemp -d /tmp/edge-agent-arm64.XXXXXX)

mounts_under() { findmnt -rn -o TARGET | grep "^$rootfs/" | sort -r || true; }
unmount_all() {
  local m
  for m in $(mounts_under); do umount "$m" 2>/dev/null || umount -l "$m" || true; done
  if [ -n "$(mounts_under)" ]; then say "WARNING: still mounted under $rootfs: $(mounts_under)" >&2; fi
}
cleanup() {
  local rc=$?
  unmount_all
  rm -rf "$work"
  if [ "$rc" != 0 ]; then say "FAILED (exit $rc); the guest's mounts are undone" >&2; fi
}
trap cleanup EXIT
unmount_all  # left over from a run that was killed

started=$(date +%s)
declare -a timings=()
timed() {  # timed LABEL command...: run, record the wall time
  local label=$1 t0 rc=0
  shift
  t0=$(date +%s.%N)
  "$@" || rc=$?
  timings+=("$(awk -v l="$label" -v t0="$t0" -v t1="$(date +%s.%N)" 'BEGIN { printf "%-36s %7.1f s", l, t1 - t0 }')")
  return $rc
}

# --- The rootfs: debootstrap once, then reuse ------------------------------------------------------
apt_mirror() {  # the first Debian URI apt uses for the suite "bookworm" (one-line or deb822 sources)
  { grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
      | sed -E 's/^deb +(\[[^]]*\] +)?//' | awk '$2 == "bookworm" { print $1 }'
    cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v RS= '
      /(^|\n)Suites:[^\n]*[ \t]bookworm([ \t\n]|$)/ && match($0, /(^|\n)URIs:[ \t]*[^ \t\n]+/) {
        u = substr($0, RSTART, RLENGTH); sub(/^\n?URIs:[ \t]*/, "", u); print u }'
  } | grep -m1 . || echo http://deb.debian.org/debian
}
if [ "$(cat "$marker" 2>/dev/null)" != "$spec" ]; then
  mirror=${ARM64_MIRROR:-$(apt_mirror)}
  say "building the arm64 rootfs in $rootfs from $mirror (about 5 minutes)"
  [ -z "$(mounts_under)" ] || die "cannot delete $rootfs: something is still mounted under it"
  rm -rf "$marker" "$rootfs"
  timed "debootstrap (arm64 rootfs)" debootstrap --arch=arm64 --variant=minbase \
    --include=python3,python3-venv,python3-pip bookworm "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { tail -20 "$cache/debootstrap.log" >&2; die "debootstrap failed (log: $cache/debootstrap.log)"; }
  echo "$spec" >"$marker"  # only now is the rootfs a valid cache
else
  say "using the cached rootfs $rootfs (delete $marker to rebuild it)"
fi

# --- Host side: the project wheel, and the reference output ----------------------------------------
# Build from a clean copy of the sources, so a stale build/ in the checkout cannot leak into the wheel.
mkdir -p "$work/src" "$work/dist"
tar -C "$repo" --exclude=__pycache__ -cf - pyproject.toml README.md edge_agent | tar -C "$work/src" -xf -
timed "host: build the project wheel" "$venv/bin/pip" wheel --quiet --no-deps -w "$work/dist" "$work/src"
wheel=$(basename "$(ls "$work"/dist/edge_agent_node-*.whl)")
say "built $wheel"

# The same commands on both sides: greedy, fixed prompt, end-of-turn ignored so all tokens are compared, with
# the files' own numerics (the node's default int8 activations use each CPU's own int8 kernels, AVX2/VNNI or
# NEON dot products, which round differently: those are run once on the guest below, not compared).
gen_args=(generate --model "MODEL" --prompt "Is the garage door open?" --greedy --max-new-tokens 16
  --ignore-eos --threads 2 --json --file-numerics)
ask_args=(ask "What do you see and hear?" --model "MODEL" --image "MODEL/examples/porch.png" --audio
  "MODEL/examples/speech.wav" --budget 70 --greedy --max-new-tokens 8 --ignore-eos --threads 2 --json
  --file-numerics)
host_gen=$("$venv/bin/edge-agent" "${gen_args[@]//MODEL/$repo/$model}" | tail -1) || die "host: generate failed"
if [ "${ARM64_MEDIA:-1}" != 0 ]; then
  host_ask=$("$venv/bin/edge-agent" "${ask_args[@]//MODEL/$repo/$model}" | tail -1) || die "host: ask failed"
fi

# --- Guest set-up: certificates, DNS, the host's pip configuration, mounts --------------------------
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
cp -L /etc/resolv.conf "$rootfs/etc/resolv.conf"
pip_env=()
while IFS= read -r var; do pip_env+=("$var"); done < <(env | grep '^PIP_' || true)
# pip's config files, copied to the same paths; local files and indexes they name are copied / bound.
for f in $("$venv/bin/pip" config debug 2>/dev/null | sed -nE 's/^ +(\/[^,]+), exists: True$/\1/p'); do
  case "$f" in "$venv"/*) continue ;; esac  # the host venv's own pip.conf
  mkdir -p "$rootfs$(dirname "$f")" && cp "$f" "$rootfs$f"
done
binds=()
for p in $("$venv/bin/pip" config list 2>/dev/null | grep -oE "(file://)?/[^' ]+" | sed 's|^file://||' | sort -u); do
  [ "$(basename "$p")" = simple ] && p=$(dirname "$p")  # a local simple index links to ../../files/
  if [ -d "$p" ]; then binds+=("$p"); elif [ -f "$p" ]; then mkdir -p "$rootfs$(dirname "$p")" && cp "$p" "$rootfs$p"; fi
done

bind() {  # bind SRC DST [ro]: a slave bind mount, so nothing propagates back to the host
  mkdir -p "$2"
  mount --bind "$1" "$2"
  mount --make-rslave "$2"
  if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$2"; fi
}
mount -t proc proc "$rootfs/proc"
# qemu 7.2 shows the guest the host's x86 /proc/cpuinfo, and onnxruntime's cpuinfo then crashes.
mount --bind "$here/cpuinfo-pi5" "$rootfs/proc/cpuinfo"
bind /sys "$rootfs/sys" ro
bind /dev "$rootfs/dev"
bind "$repo" "$rootfs/mnt/repo" ro
bind "$work" "$rootfs/mnt/work"
for p in "${binds[@]}"; do bind "$p" "$rootfs$p" ro; done

guest() {  # run a shell command in the guest, with a clean environment and a Pi 5 CPU
  env -i HOME=/root LANG=C.UTF-8 PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin QEMU_CPU=cortex-a76 \
    "${pip_env[@]}" chroot "$rootfs" /bin/bash -euo pipefail -c "$1"
}
say "guest: $(guest 'echo "$(uname -m), $(python3 --version), pip $(pip3 --version | cut -d" " -f2)"')"

# --- Guest: install from wheels alone, then the same commands ---------------------------------------
timed "guest: venv" guest "rm -rf /opt/edge-agent && python3 -m venv /opt/edge-agent"
say "guest: pip install --only-binary=:all: $wheel (downloads are cached in the rootfs)"
# (pip warns about every project a local file:// index of this machine lacks, as on the host: filtered)
timed "guest: pip install (wheels only)" guest "/opt/edge-agent/bin/pip install --quiet --only-binary=:all: \
  /mnt/work/dist/$wheel 2>&1 | { grep -v \"^WARNING: Location 'file://\" || true; }" \
  || die "the package does not install from aarch64 wheels alone (see pip's message above)"
guest "/opt/edge-agent/bin/pip list --format=freeze" >"$work/guest-packages.txt"
say "guest packages: $(tr '\n' ' ' <"$work/guest-packages.txt")"

quote() { printf '%q ' "$@"; }
timed "guest: edge-agent generate" guest "$(quote /opt/edge-agent/bin/edge-agent "${gen_args[@]//MODEL//mnt/repo/$model}") \
  | tail -1 >/mnt/work/guest-gen.json" || die "guest: generate failed"
int8_args=("${gen_args[@]:0:${#gen_args[@]}-1}")  # without --file-numerics: the node's default
timed "guest: edge-agent generate (int8 activations)" guest "$(quote /opt/edge-agent/bin/edge-agent \
  "${int8_args[@]//MODEL//mnt/repo/$model}") | tail -1 >/mnt/work/guest-int8.json" \
  || die "guest: generate with the default int8 activations failed"
[ "$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["ids"]))' "$work/guest-int8.json")" = 16 ] \
  || die "guest: generate with int8 activations did not give 16 ids"
if [ "${ARM64_MEDIA:-1}" != 0 ]; then
  timed "guest: edge-agent ask (image+audio)" guest "$(quote /opt/edge-agent/bin/edge-agent \
    "${ask_args[@]//MODEL//mnt/repo/$model}") | tail -1 >/mnt/work/guest-ask.json" || die "guest: ask failed"
fi

# --- Compare ------------------------------------------------------------------------------------------
ids() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])["ids"])' "$1"; }
failed=0
compare() {  # compare NAME HOST_JSON GUEST_JSON
  local h g
  h=$(ids "$2") g=$(ids "$3")
  say "$1 ids, host x86-64: $h"
  say "$1 ids, guest arm64: $g"
  if [ "$h" = "$g" ]; then say "$1: identical"; else say "$1: DIFFERENT" >&2; failed=1; fi
}
compare generate "$host_gen" "$(cat "$work/guest-gen.json")"
[ "${ARM64_MEDIA:-1}" = 0 ] || compare "ask (image+audio)" "$host_ask" "$(cat "$work/guest-ask.json")"

timings+=("$(printf '%-36s %7d s' "total" $(($(date +%s) - started)))")
say "timings (qemu-user emulation, 200-300x slower than a Pi: smoke test only, not speed figures):"
printf '  %s\n' "${timings[@]}"
[ "$failed" = 0 ] || die "arm64 and x86-64 generated different token ids"
say "OK: installs from aarch64 wheels alone and generates the same token ids as x86-64"
