# shellcheck shell=sh
# Starts one pgmam job on the server, detached from the SSH session that asked for it.
#   $1 job dir  $2 app  $3 yes: systemd is PID 1  $4 the job script  $5 its info file
#   $6 recover-jobs  $7 its boot unit  $8 the postgresql@ drop-in  $9 the @reboot line (no systemd)
# First it installs the recovery of interrupted jobs where it differs (at boot, before any cluster
# starts), and finishes or undoes this app's interrupted jobs: the next job never runs on top of a
# half-done one.
set -e
dir=$1 app=$2 use_systemd=$3
recover=/var/lib/pgmam/bin/recover-jobs
changed=no
install_if_changed() {
  if [ "$(cat "$1" 2> /dev/null)" != "$2" ]; then
    mkdir -p "$(dirname "$1")"
    printf '%s\n' "$2" > "$1.new"
    mv "$1.new" "$1"
    changed=yes
  fi
}
install_if_changed "$recover" "$6"
if [ "$use_systemd" = yes ]; then
  install_if_changed /etc/systemd/system/pgmam-recover.service "$7"
  install_if_changed /etc/systemd/system/postgresql@.service.d/pgmam-recover.conf "$8"
  if [ "$changed" = yes ]; then
    systemctl daemon-reload
    systemctl enable --quiet pgmam-recover.service
  fi
else
  install_if_changed /etc/cron.d/pgmam-recover "$9"
fi
sh "$recover" "$app" >&2
mkdir -p /var/lib/pgmam/jobs
mkdir -m 0700 "$dir"
printf '%s' "$4" > "$dir/job.sh"
printf '%s' "$5" > "$dir/info"
if [ "$use_systemd" = yes ]; then
  # KillMode=mixed: a stop signals the runner alone, which lets the running step finish, then
  # undoes the job. After=postgresql.service: at shutdown the job stops before the clusters do.
  systemd-run --quiet --collect --unit="pgmam-$(basename "$dir")" -p KillMode=mixed -p TimeoutStopSec=1800 \
    -p After=postgresql.service /bin/sh "$dir/job.sh" "$dir" "$app"
else
  setsid -f /bin/sh "$dir/job.sh" "$dir" "$app" < /dev/null > "$dir/runner.log" 2>&1
fi
i=0
while [ ! -s "$dir/pid" ] && [ $i -lt 100 ]; do
  sleep 0.05
  i=$((i + 1))
done
