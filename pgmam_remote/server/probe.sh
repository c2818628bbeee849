#!/bin/sh
# Usage: sh -c "$(cat probe.sh)" probe SQL [APP|--all] GAPS_AWK
# pgmam's one read of a server, run as root: prints @@section headers, each followed by raw tool
# output (pg_lsclusters, ss, df, `pgbackrest info --output=json`, pgmam's own records, and SQL's
# one JSON row per online cluster). It is sent with each command, not installed: it also reads
# servers pgmam has not reached yet. With APP (or --all), the interrupted jobs of that app are
# finished or undone first; their messages go to stderr, apart from the facts.
if [ -n "${2:-}" ] && [ -f /var/lib/pgmam/current/recover-jobs.sh ]; then
  if [ "$2" = --all ]; then
    sh /var/lib/pgmam/current/recover-jobs.sh >&2
  else
    sh /var/lib/pgmam/current/recover-jobs.sh "$2" >&2
  fi
fi
gaps_awk=${3:-}
cd /
section() { printf '\n@@%s\n' "$*"; }
section host; hostname
section now; date +%s.%N
section utc-offset; date +%z
section cpus; nproc 2>/dev/null || getconf _NPROCESSORS_ONLN
section systemd; if [ -d /run/systemd/system ]; then echo yes; else echo no; fi
section tools
for t in pg_lsclusters pg_createcluster pg_ctlcluster pgbackrest psql runuser ss cron python3; do
  if command -v "$t" >/dev/null 2>&1; then echo "$t yes"; else echo "$t no"; fi
done
section pgversions
for p in /usr/lib/postgresql/*/bin/postgres; do
  [ -x "$p" ] && basename "$(dirname "$(dirname "$p")")"
done
section listen; ss -Hltn 2>/dev/null | awk '{print $4}'
section disk; df -P -B1 /var/lib/postgresql /var/lib/pgbackrest 2>/dev/null | tail -n +2
section global-conf
if [ -f /etc/pgbackrest/pgbackrest.conf ]; then
  if grep -qx '# managed by pgmam' /etc/pgbackrest/pgbackrest.conf; then echo pgmam; else echo foreign; fi
else echo absent; fi
section stanza-confs
for f in /etc/pgbackrest/conf.d/*.conf; do
  [ -f "$f" ] && grep -qx '# managed by pgmam' "$f" && basename "$f" .conf
done
section parents
grep -H '^# pgmam-parent ' /etc/pgbackrest/conf.d/*.conf 2>/dev/null
section clusters
clusters=$(pg_lsclusters --no-header 2>&1)
printf '%s\n' "$clusters"
section pgmam-confs
for f in /etc/postgresql/*/*/conf.d/pgmam.conf; do [ -f "$f" ] && echo "$f"; done
section pgbackrest
if command -v pgbackrest >/dev/null 2>&1; then
  cd /tmp && runuser -u postgres -- timeout 30 pgbackrest --output=json info 2>&1; cd /
fi
printf '%s\n' "$clusters" | while read -r ver name _port _status _owner data _rest; do
  h=""
  for f in "$data"/pg_wal/*.history; do [ -f "$f" ] && h=$f; done
  if [ -n "$h" ]; then section "history $ver $name"; cat "$h"; fi
done
# Each hole in the archived WAL under ROOT (a pgBackRest repo path): see wal-gaps.awk, which
# arrives as this script's third argument. A segment lives in archive/<stanza>/<archive id>/<first
# 16 digits>/.
gaps() {
  find "$1"/archive -mindepth 4 -maxdepth 4 -type f -name '????????????????????????-*' -printf '%P %T@\n' 2> /dev/null \
    | sed 's|^\([^/]*\)/\([^/]*\)/[^/]*/|\1 \2 |' | LC_ALL=C sort | awk "$gaps_awk"
}
section wal-gaps
gaps /var/lib/pgbackrest
# Off-host repositories (docs/offsite.md). This server's postgres SSH key and host key:
section ssh-keys
home=$(getent passwd postgres | cut -d: -f6)
[ -n "$home" ] && [ -f "$home/.ssh/id_ed25519.pub" ] && echo "user-key $(cut -d' ' -f1,2 "$home/.ssh/id_ed25519.pub")"
[ -f /etc/ssh/ssh_host_ed25519_key.pub ] && echo "host-key $(cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub)"
# the other servers pgmam let postgres trust (server/steps/trust.sh)
[ -n "$home" ] && sed -n 's/^\(.*\) pgmam$/known \1/p' "$home/.ssh/known_hosts" 2> /dev/null
[ -n "$home" ] && sed -n 's/^restrict \(.*\) pgmam$/authorized \1/p' "$home/.ssh/authorized_keys" 2> /dev/null
# the files pgmam wrote for them, by content hash, so that a re-run rewrites only what changed
section offsite-files
find /etc/pgbackrest/pgmam -type f \( -name '*.conf' -o -name '*.pem' \) -exec sha256sum {} + 2> /dev/null
# WAL waiting to be shipped to each off-host repo: "<repo> <app> <files> <bytes> <oldest mtime>
# <last clean pass> <last error...>"
section ship
if [ -d /run/systemd/system ]; then echo "shipper $(systemctl is-active pgmam-ship.service 2> /dev/null)"
elif [ -f /etc/cron.d/pgmam-ship ]; then echo "shipper cron"; fi
for d in /var/lib/pgmam/ship/*/*/; do
  [ -d "$d" ] || continue
  d=${d%/}
  app=${d##*/}
  repo=${d%/*}
  repo=${repo##*/}
  shipped=$d/shipped
  [ -f "$shipped" ] || shipped=/dev/null
  pending=$(find "/var/lib/pgbackrest/archive/$app" -mindepth 2 -maxdepth 3 -type f \
    \( -name '????????????????????????-*' -o -name '????????.history' \) -printf '%f %s %T@\n' 2> /dev/null \
    | sed 's/-[^ ]* / /' | LC_ALL=C sort | LC_ALL=C join -v 1 - "$shipped" \
    | awk '{ n++; b += $2; if (o == "" || $3 < o) o = $3 } END { printf "%d %d %s", n, b, (o == "" ? "-" : o) }')
  printf 'app %s %s %s %s %s\n' "$repo" "$app" "$pending" "$(cat "$d/ok" 2> /dev/null || echo -)" \
    "$(cat "$d/error" 2> /dev/null)"
done
# The servers whose apps this server keeps backups of, as a repository host.
for d in /etc/pgbackrest/pgmam/hosts/*/; do
  [ -f "$d/pgbackrest.conf" ] || continue
  d=${d%/}
  section "hosted ${d##*/}"
  (cd /tmp && runuser -u postgres -- timeout 30 pgbackrest --config-path="$d" --output=json info 2>&1)
  section "hosted-cipher ${d##*/}" # the passphrase's sha256, to tell a wrong one from the right one
  sed -n 's/^repo1-cipher-pass=//p' "$d/pgbackrest.conf" | tr -d '\n' | sha256sum | cut -d' ' -f1
  section "hosted-newest ${d##*/}" # each stanza's newest archived segment, and when it arrived
  for a in "/var/lib/pgbackrest/hosts/${d##*/}"/archive/*/; do
    [ -d "$a" ] || continue
    a=${a%/}
    newest=$(find "$a" -mindepth 3 -maxdepth 3 -type f -name '????????????????????????-*' -printf '%f %T@\n' 2> /dev/null \
      | LC_ALL=C sort | tail -n 1)
    [ -z "$newest" ] || echo "${a##*/} $newest"
  done
  # each stanza's newest timeline history, when it has left timeline 1 (read through pgBackRest:
  # the repo is encrypted): which backups lead to its newest timeline
  for h in "/var/lib/pgbackrest/hosts/${d##*/}"/archive/*/*/????????.history; do
    [ -f "$h" ] || continue
    echo "$h"
  done | LC_ALL=C sort -t/ -k10 | awk -F/ '{ newest[$8] = $0 } END { for (s in newest) print newest[s] }' \
    | while read -r h; do
      stanza=$(basename "$(dirname "$(dirname "$h")")")
      section "hosted-history ${d##*/} $stanza"
      (cd /tmp && runuser -u postgres -- timeout 30 pgbackrest --config-path="$d" --stanza="$stanza" \
        repo-get "archive/$stanza/$(basename "$(dirname "$h")")/$(basename "$h")" 2>&1)
    done
  section "hosted-ports ${d##*/}" # the port each app had there
  grep -H '^pg1-port=' "$d"/conf.d/*.conf 2> /dev/null | sed 's|.*/\([^/]*\)\.conf:pg1-port=|\1 |'
  section "hosted-gaps ${d##*/}"
  gaps "/var/lib/pgbackrest/hosts/${d##*/}"
done
section locks
for l in /var/lib/pgmam/locks/*; do
  [ -d "$l" ] || continue
  # held (flock) by a live job; the kernel released it if the holder died
  if [ -e "$l.lock" ] && ! flock -n "$l.lock" true; then alive=yes; else alive=no; fi
  printf '%s %s\n' "$alive" "$(tr '\n' ' ' < "$l/info" 2>/dev/null)"
done
section jobs
for d in /var/lib/pgmam/jobs/*; do
  [ -f "$d/info" ] || continue
  end=$(grep -m1 '^[0-9.]* end ' "$d/journal" 2>/dev/null | cut -d' ' -f3)
  reported=no; [ -f "$d/reported" ] && reported=yes
  running=no; [ -e "$d/running" ] && ! flock -n "$d/running" true && running=yes
  committed=no; [ -f "$d/committed" ] && committed=yes
  step=$(grep '^[0-9.]* start ' "$d/journal" 2>/dev/null | tail -n 1 | cut -d' ' -f3- | tr ' ' '~')
  printf '%s %s reported=%s running=%s committed=%s step=%s\n' "${end:-none}" "$(tr '\n' ' ' < "$d/info")" \
    "$reported" "$running" "$committed" "${step:--}"
done
section preserved
for d in /var/lib/postgresql/*/old-* /var/lib/postgresql/*/failed-* /var/lib/postgresql/*/staging-* \
  /var/lib/postgresql/*/verify-*; do
  [ -d "$d" ] && printf '%s %s %s\n' "$(du -sb "$d" 2>/dev/null | cut -f1)" "$(stat -c %Y "$d")" "$d"
done
section server-code
if [ -L /var/lib/pgmam/current ]; then readlink /var/lib/pgmam/current | sed 's|^code/||'
elif [ -f /var/lib/pgmam/bin/recover-jobs ]; then echo before-code-dirs; fi
section schedules
# each schedule's marker, and since when it is in place (its file's mtime)
for f in /etc/cron.d/pgmam-* /etc/systemd/system/pgmam-schedule-*.timer; do
  [ -f "$f" ] && grep -h '^# pgmam-schedule ' "$f" | sed "s|\$| since=$(stat -c %Y "$f")|"
done
section scheduled-runs
# the last run of each kind (a local backup, one into each off-host repo, a drill), oldest first
for f in /var/lib/pgmam/scheduled/*; do
  [ -f "$f" ] && awk '{ last[$3] = $0 } END { for (k in last) print last[k] }' "$f" | sort -n | sed "s|^|$(basename "$f") |"
done
section drills
for f in /var/lib/pgmam/verify/*; do [ -f "$f" ] && tail -n 1 "$f" | sed "s|^|$(basename "$f") |"; done
section start-conf
for f in /etc/postgresql/*/*/start.conf; do
  [ -f "$f" ] && printf '%s %s\n' "$f" "$(awk '!/^[[:space:]]*(#|$)/ { print $1; exit }' "$f")"
done
section watchdog
# its config (root only: a webhook URL is a secret) is not shown, only whether there is one
if [ -f /etc/pgmam/watchdog.json ]; then echo configured; fi
cat /var/lib/pgmam/watchdog/last.json 2>/dev/null
section restore-points
for f in /var/lib/pgmam/restore-points/*; do
  [ -f "$f" ] && sed "s|^|$(basename "$f") |" "$f"
done
printf '%s\n' "$clusters" | while read -r ver name port status rest; do
  case "$status" in online*)
    section "sql $ver $name"
    PGCONNECT_TIMEOUT=5 runuser -u postgres -- timeout 15 \
      psql -XAtq -v ON_ERROR_STOP=1 -p "$port" -d postgres -c "$1" 2>&1 </dev/null
    ;;
  esac
done
section end
