#!/bin/sh
# Usage: ship-wal.sh --once | --loop | --for SECONDS
# Copies each app's archived WAL from its local repository to its off-host repositories, as postgres.
# PostgreSQL archives into the local repository only, so an off-host outage never holds up local
# archiving or local backups; the local repository is where WAL waits meanwhile (bounded by its
# retention). An app ships to REPO once /var/lib/pgmam/ship/REPO/APP/ exists. That directory holds:
#   shipped  the local archive files already copied (pruned to those the local repo still holds)
#   error    "<epoch> <message>" of the last failure, removed by the next success
#   ok       the epoch of the last pass that left nothing behind
# --loop runs passes forever (the systemd service); --for SECONDS until then (cron, every minute).
# A pass every 5 s; every second while /var/lib/pgmam/ship/.hurry is newer than a minute (an
# off-host backup waits for its last WAL segment: see steps/repo-backup.sh).
set -u
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
state=/var/lib/pgmam/ship
pause=5
mode=${1:---once}
[ -d "$state" ] || exit 0
[ "$(id -un)" = postgres ] || { echo "ship-wal.sh runs as postgres" >&2; exit 2; }
exec 9> "$state/.lock"
flock -n 9 || exit 0 # one shipper at a time
cd /tmp || exit 1

# The names (segment or history file) of the app's local archive files, sorted.
present() {
  find "/var/lib/pgbackrest/archive/$1" -mindepth 2 -maxdepth 3 -type f \
    \( -name '????????????????????????-*' -o -name '????????.history' \) -printf '%f\n' 2> /dev/null \
    | sed 's/-.*//' | LC_ALL=C sort -u
}

# Pushes one file: fetched from the local repo, then pushed with the repo's own config.
push() { # REPO APP NAME
  tmp=$state/.tmp
  [ -d "$tmp" ] || mkdir -m 0700 "$tmp"
  rm -f "$tmp/$3"
  timeout 600 pgbackrest --stanza="$2" --no-archive-async archive-get "$3" "$tmp/$3" 2>&1 \
    && timeout 600 pgbackrest --config="/etc/pgbackrest/pgmam/repos/$1.conf" \
      --config-include-path=/etc/pgbackrest/conf.d --stanza="$2" archive-push "$tmp/$3" 2>&1
  status=$?
  rm -f "$tmp/$3"
  return $status
}

ship_app() { # REPO APP DIR
  present "$2" > "$3/present"
  touch "$3/shipped"
  failed=""
  for name in $(LC_ALL=C comm -23 "$3/present" "$3/shipped"); do
    if out=$(push "$1" "$2" "$name"); then
      echo "$name" >> "$3/shipped"
    else
      failed="$name: $(printf '%s' "$out" | grep -m1 -A1 ERROR || printf '%s' "$out" | tail -n 1)"
      break
    fi
  done
  LC_ALL=C sort -u "$3/shipped" | LC_ALL=C comm -12 "$3/present" - > "$3/shipped.new"
  mv -f "$3/shipped.new" "$3/shipped"
  if [ -n "$failed" ]; then
    printf '%s %s\n' "$(date +%s)" "$failed" | tr -s '\n' ' ' > "$3/error"
    echo "$1/$2: $failed" >&2
  else
    rm -f "$3/error"
    date +%s > "$3/ok"
  fi
}

pass() {
  for dir in "$state"/*/*/; do
    [ -d "$dir" ] || continue
    dir=${dir%/}
    app=${dir##*/}
    repo=${dir%/*}
    repo=${repo##*/}
    if [ -f "/etc/pgbackrest/pgmam/repos/$repo.conf" ] && [ -d "/var/lib/pgbackrest/archive/$app" ]; then
      ship_app "$repo" "$app" "$dir"
    fi
  done
}

rest() {
  if [ -n "$(find "$state/.hurry" -newermt '-60 seconds' 2> /dev/null)" ]; then sleep 1; else sleep "$pause"; fi
}

case "$mode" in
  --once) pass ;;
  --loop) while :; do pass; rest; done ;;
  --for)
    end=$(($(date +%s) + ${2:-55}))
    while [ "$(date +%s)" -lt "$end" ]; do pass; rest; done
    ;;
  *) echo "usage: ship-wal.sh --once | --loop | --for SECONDS" >&2; exit 2 ;;
esac
