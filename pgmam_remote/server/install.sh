#!/bin/sh
# Usage: install.sh VERSION BUNDLE
# Installs pgmam's server code into /var/lib/pgmam/code/VERSION, where VERSION is the hash of the
# bundle's MANIFEST (a sha256sum list of every file), and points /var/lib/pgmam/current at it.
# BUNDLE is a base64 tar.gz. Idempotent: a version already there is not unpacked again.
# Then it installs the boot-time recovery of interrupted jobs (a systemd unit that the clusters
# wait for, or cron's @reboot), updates the WAL shipper's unit where there is one, and removes the
# versions that nothing refers to any more.
set -eu
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
umask 022
state=/var/lib/pgmam
dir=$state/code/$1
installed=no
if [ ! -f "$dir/MANIFEST" ]; then
  installed=yes
  mkdir -p "$state/code"
  tmp=$(mktemp -d "$state/code/.new-XXXXXX")
  trap 'rm -rf -- "$tmp"' EXIT
  printf '%s' "$2" | base64 -d | tar -xzf - -C "$tmp" --no-same-owner
  if ! (cd "$tmp" && sha256sum --quiet --strict -c MANIFEST > /dev/null 2>&1) \
    || [ "$(sha256sum < "$tmp/MANIFEST" | cut -c1-16)" != "$1" ]; then
    echo "pgmam: the server code did not arrive intact (version $1)" >&2
    exit 1
  fi
  chmod 0755 "$tmp"
  # a concurrent install may have won the race: its copy is the same
  mv -T "$tmp" "$dir" 2> /dev/null || [ -f "$dir/MANIFEST" ]
  trap - EXIT
  rm -rf -- "$tmp"
  echo "pgmam: installed server code $1 in $dir" >&2
fi
switched=no
if [ "$(readlink "$state/current" 2> /dev/null)" != "code/$1" ]; then
  ln -sfn "code/$1" "$state/current.new"
  mv -T "$state/current.new" "$state/current"
  switched=yes
fi

changed=no
install_if_changed() {
  if ! cmp -s "$1" "$2"; then
    mkdir -p "$(dirname "$2")"
    cp "$1" "$2.new"
    mv -f "$2.new" "$2"
    changed=yes
  fi
}
if [ -d /run/systemd/system ]; then
  install_if_changed "$dir/units/pgmam-recover.service" /etc/systemd/system/pgmam-recover.service
  install_if_changed "$dir/units/pgmam-recover.conf" /etc/systemd/system/postgresql@.service.d/pgmam-recover.conf
  if [ "$changed" = yes ]; then
    systemctl daemon-reload
    systemctl enable --quiet pgmam-recover.service
  fi
  # the WAL shipper, where an app ships to an off-host repo: its unit follows the code, and it
  # restarts to run this version (a pass cut short is redone: a segment is marked shipped only
  # once pushed, and pushing one again is harmless). From cron, each minute starts afresh.
  if [ -f /etc/systemd/system/pgmam-ship.service ]; then
    changed=no
    install_if_changed "$dir/units/pgmam-ship.service" /etc/systemd/system/pgmam-ship.service
    [ "$changed" = no ] || systemctl daemon-reload
    if [ "$changed" = yes ] || [ "$switched" = yes ]; then
      systemctl try-restart pgmam-ship.service
    fi
  fi
else
  install_if_changed "$dir/units/pgmam-recover.cron" /etc/cron.d/pgmam-recover
  [ ! -f /etc/cron.d/pgmam-ship ] || install_if_changed "$dir/units/pgmam-ship.cron" /etc/cron.d/pgmam-ship
fi
rm -f "$state/bin/recover-jobs" # where versions before code dirs kept it

# Older versions stay while a job, a schedule template, a unit or a cron line names them.
[ "$installed" = yes ] || exit 0
for old in "$state"/code/*/; do
  old=${old%/}
  [ "${old##*/}" != "$1" ] || continue
  grep -rqsF "code/${old##*/}/" "$state/jobs" "$state/schedules" /etc/systemd/system /etc/cron.d && continue
  rm -rf -- "$old"
done
find "$state/code" -mindepth 1 -maxdepth 1 -name '.new-*' -mmin +60 -exec rm -rf -- {} + 2> /dev/null || true
