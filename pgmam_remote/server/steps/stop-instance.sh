#!/bin/sh
# Usage: stop-instance.sh VERSION DATA MODE
# Stops the postmaster of DATA, and only that one: after a crash or a reboot the pid in its pid
# file may belong to any other process by now. Nothing to do when none runs there.
pid=$(head -n 1 "$2/postmaster.pid" 2> /dev/null) || exit 0
[ -n "$pid" ] && [ "$(readlink "/proc/$pid/cwd" 2> /dev/null)" = "$2" ] || exit 0
exec runuser -u postgres -- "/usr/lib/postgresql/$1/bin/pg_ctl" -D "$2" -m "$3" -w -t 600 stop
