#!/bin/bash
# The main story against fresh sandbox servers (run by `make demo`, as root).
# Leaves the sandbox up so you can keep playing; `make demo-down` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1;34m==> %s\033[0m\n' "$*"; }
run() { printf '\033[2m$'; printf ' %q' "$@"; printf '\033[0m\n'; "$@"; }

say "Three local sandbox servers: Debian 12 booted with systemd (systemd-nspawn), each with its own sshd and sudo user"
run inv sandbox.up --servers 3
PGMAM_HOSTS="$(python3 -c 'import pgmam_sandbox as sandbox; print(sandbox.current().inventory)')"
export PGMAM_HOSTS
PGMAM_CONFIG_DIR="$(dirname "$PGMAM_HOSTS")/pgmam-config" # the demo's repo passphrase, not yours
export PGMAM_CONFIG_DIR

say "sbx3 is the repository host of an off-host repo, vault: every app is also kept there, encrypted"
python3 - "$PGMAM_HOSTS" <<'TOML'
import sys
path = sys.argv[1]
text = open(path).read().replace("[defaults]\n", '[defaults]\nrepos = ["vault"]\n', 1)
text = text.replace("[hosts.sbx3]\n", "[hosts.sbx3]\nrepos = []\n", 1)
open(path, "w").write(text + '\n[repos.vault]\ntype = "host"\nhost = "sbx3"\n')
TOML
grep -A2 -E '^\[repos|^repos' "$PGMAM_HOSTS"

say "Two apps on sbx1 and one on sbx2: each its own cluster, WAL archiving, stanza and first full backup, here and in vault"
run inv initcluster --host sbx1 --app shop --port 5433
run inv initcluster --host sbx1 --app blog --port 5434
run inv initcluster --host sbx2 --app crm --port 5435

say "Re-running is safe: a finished app is left alone"
run inv initcluster --host sbx1 --app shop --port 5433

say "The fleet at a glance"
run inv status --all-hosts

say "Each server watches itself: every 5 minutes the same checks, alerts on a change ([notify] in hosts.toml), metrics"
run inv watchdog --all-hosts
run inv check --host sbx1

# psql inside a sandbox server, over the same SSH login pgmam uses
STATE_DIR=$(dirname "$PGMAM_HOSTS")
sql() {
  local address
  address=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["hosts"][sys.argv[2]]["address"])' "$PGMAM_HOSTS" "$1")
  ssh -q -i "$STATE_DIR/id_ed25519" -o UserKnownHostsFile="$STATE_DIR/known_hosts" -o StrictHostKeyChecking=yes \
    -o BatchMode=yes "pgmam@$address" "cd / && sudo -n -u postgres psql -XAtq -p $2 -c $(printf '%q' "$3")"
}

say "shop takes 100 orders; we note the time; then someone deletes them all by accident"
sql sbx1 5433 "create table orders (id int primary key, item text); insert into orders select g, 'item ' || g from generate_series(1, 100) g"
T=$(sql sbx1 5433 "select to_char(now() at time zone 'utc', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
echo "time noted: $T"
sleep 1
sql sbx1 5433 "delete from orders"
echo "orders left: $(sql sbx1 5433 'select count(*) from orders')"

say "Point-in-time restore: shop keeps serving while its backup is replayed beside it, then a short swap"
run inv pitr --host sbx1 --app shop --to "$T" --yes
echo "orders back: $(sql sbx1 5433 'select count(*) from orders')"

say "Prove shop's newest backup restores (a drill in a throwaway instance), and do it every Sunday"
run inv verify --host sbx1 --app shop
run inv schedule --host sbx1 --app shop --verify "Sun 05:00"

say "Rehearse the disaster: a backup of shop into vault now, then sbx2 restores it by itself and proves it (sbx1 untouched)"
run inv backup --host sbx1 --app shop --repo vault
run inv verify --host sbx1 --app shop --repo vault --on sbx2

say "Power cut on sbx1: every process killed at once. It boots by itself and systemd starts the clusters"
run inv sandbox.reboot --host sbx1 --power-cut
echo "orders after the power cut: $(sql sbx1 5433 'select count(*) from orders')"

say "The fleet again: shop is on a new timeline, proven restorable, its old data preserved beside it"
run inv status --all-hosts

say "Disaster: sbx1 is destroyed (network cut, PostgreSQL killed, disk wiped) a few seconds after its last writes"
sql sbx1 5433 "insert into orders select g, 'late item ' || g from generate_series(101, 110) g"
sql sbx1 5433 "select pg_switch_wal()" > /dev/null
sleep 12 # the WAL shipper passes every 5 s
run inv sandbox.lose --host sbx1

say "Rebuild sbx1's apps on sbx2 from vault: proven, archiving, and kept in vault under sbx2 from now on"
run inv recover --host sbx2 --from sbx1 --all-apps --yes
echo "orders on sbx2: $(sql sbx2 5433 'select count(*) from orders')"
run inv status --host sbx2

say "Done. The sandbox is still up:"
echo "  export PGMAM_HOSTS=$PGMAM_HOSTS"
echo "  inv status --all-hosts --json"
echo "  inv backups --host sbx2 --app shop"
echo "  make demo-down        # remove the sandbox servers"
