#!/bin/sh
# Boots one sandbox server: systemd as PID 1 under systemd-nspawn, in cgroups of its own and in
# the network namespace the sandbox made for it. A reboot inside the server (nspawn exits 133)
# boots it again, as a real machine would; any other exit ends this script.
#   $1 hostname  $2 machine name (unique on this machine)  $3 root directory  $4 netns name
#   $5... cgroup directories to move into first (one per writable hierarchy)
set -eu
hostname=$1 machine=$2 root=$3 netns=$4
shift 4
for cgroup in "$@"; do
  mkdir -p "$cgroup"
  echo $$ > "$cgroup/cgroup.procs"
done
# A pure cgroup2 tree inside the server, like a stock server's, whatever this machine mounts.
SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1
export SYSTEMD_NSPAWN_UNIFIED_HIERARCHY
while :; do
  echo "boot-server: booting $hostname ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
  rc=0
  # --register=no --keep-unit: this machine's PID 1 may not be systemd and may have no D-Bus.
  systemd-nspawn --quiet --boot --register=no --keep-unit --console=passive \
    --machine="$machine" --hostname="$hostname" --directory="$root" \
    --network-namespace-path="/run/netns/$netns" || rc=$?
  [ "$rc" = 133 ] || exit "$rc"
done
