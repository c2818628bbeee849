#!/bin/bash
# The main story against fresh sandbox servers (run by `make demo`, as root).
# Leaves the sandbox up so you can keep playing; `make demo-down` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1;34m==> %s\033[0m\n' "$*"; }
run() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }

say "Two local sandbox servers (network + mount namespaces, each with its own sshd and sudo user)"
run inv sandbox.up --servers 2
PGMAM_HOSTS="$(python3 -c 'from pgmam_remote import sandbox; print(sandbox.current().inventory)')"
export PGMAM_HOSTS

say "Two apps on sbx1 and one on sbx2: each its own cluster, WAL archiving, stanza and first full backup"
run inv initcluster --host sbx1 --app shop --port 5433
run inv initcluster --host sbx1 --app blog --port 5434
run inv initcluster --host sbx2 --app crm --port 5433

say "Re-running is safe: a finished app is left alone"
run inv initcluster --host sbx1 --app shop --port 5433

say "The fleet at a glance"
run inv status --all-hosts

say "Done. The sandbox is still up:"
echo "  export PGMAM_HOSTS=$PGMAM_HOSTS"
echo "  inv status --all-hosts --json"
echo "  make demo-down        # remove the sandbox servers"
