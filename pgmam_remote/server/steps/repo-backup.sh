#!/bin/sh
# Usage: repo-backup.sh REPO APP VERSION TYPE
# On a server: a backup of TYPE (full, diff, incr) of APP into off-host repo REPO. Into a repository
# host, pgBackRest must take it there, so postgres asks it to over SSH (the key pgmam trusts for
# WAL shipping), with this server's own config on that host. Into an S3 repo, it is taken here,
# with the repo's config (repo1-type=s3). Before it, the cluster's config goes
# into its data dir, so the backup carries it (see config-into-data.sh). Prints
# "pgmam-note backup=<label>", the newest backup of APP in REPO afterwards. The backup is annotated
# with the app's port (pgmam-port).
set -e
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
repo=$1; app=$2; version=$3; kind=$4
here=$(dirname "$0")
conf=/etc/pgbackrest/pgmam/repos/$repo.conf
[ -f "$conf" ] || { echo "$conf is missing: this server does not keep its apps in repo $repo"; exit 1; }
address=$(sed -n 's/^repo1-host=//p' "$conf")
hosted=$(sed -n 's/^repo1-host-config-path=//p' "$conf")
"$here/config-into-data.sh" "$app" "$version"
cd /tmp
on_repo_host() {
  if grep -qx 'repo1-type=s3' "$conf"; then
    runuser -u postgres -- pgbackrest "--config=$conf" --config-include-path=/etc/pgbackrest/conf.d "--stanza=$app" "$@"
  else
    runuser -u postgres -- "$here/../pgbackrest-ssh.sh" "postgres@$address" \
      pgbackrest "--config-path=$hosted" "--stanza=$app" "$@"
  fi
}
# the shipper passes every second meanwhile: the backup ends when its last WAL segment arrives
hurry() { while :; do touch /var/lib/pgmam/ship/.hurry; sleep 20; done; }
hurry &
hurrying=$!
trap 'kill "$hurrying" 2> /dev/null; rm -f /var/lib/pgmam/ship/.hurry' EXIT
# the app's port goes with the backup: a server rebuilt from an S3 repo gives the app the same one
port=$(sed -n 's/^pg1-port=//p' "/etc/pgbackrest/conf.d/$app.conf")
on_repo_host "--type=$kind" "--annotation=pgmam-port=${port:-unknown}" backup
label=$(on_repo_host info | sed -n 's/^ *[a-z]* backup: \([0-9A-Z_-]*\).*/\1/p' | tail -n 1)
[ -n "$label" ] || { echo "no backup of $app listed in repo $repo after the backup"; exit 1; }
echo "pgmam-note backup=$label"
