#!/bin/sh
# Usage: start-staging.sh VERSION DATA RUN_DIR PORT DEADLINE
# Starts a temporary instance on DATA (a staging or drill copy), logging to RUN_DIR/staging.log;
# it may take DEADLINE seconds to become consistent. Its safe settings are also given on the
# command line, which outranks every config file: a restored postgresql.auto.conf (ALTER SYSTEM)
# must not give it the live port, archiving into the live stanza, or a second copy of the app's
# memory.
safe="-c port=$4 -c listen_addresses= -c unix_socket_directories=$3 -c archive_mode=off"
safe="$safe -c lc_messages=C -c logging_collector=off -c log_destination=stderr"
safe="$safe -c shared_buffers=128MB -c huge_pages=off -c ssl=off"
runuser -u postgres -- "/usr/lib/postgresql/$1/bin/pg_ctl" -D "$2" -l "$3/staging.log" -o "$safe" \
  -w -t "$5" start && exit 0
status=$?
# why it did not start: the lines of its log that are not routine (pgBackRest's and PostgreSQL's errors)
grep -v -E '^[0-9-]+ [0-9:.]+ [A-Z]+ \[[0-9]+\] (LOG|HINT|DETAIL):' "$3/staging.log" 2> /dev/null | tail -n 5
exit $status
