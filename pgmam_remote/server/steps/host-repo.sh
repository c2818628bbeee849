#!/bin/sh
# Usage: host-repo.sh SERVER
# On a repository host: the directories for SERVER's repository (/var/lib/pgbackrest/hosts/SERVER),
# logs and locks, owned by postgres. pgBackRest reads SERVER's config from
# /etc/pgbackrest/pgmam/hosts/SERVER/ (pgbackrest.conf, and conf.d/APP.conf per app).
set -e
install -d -o postgres -g postgres -m 0750 /var/lib/pgbackrest /var/lib/pgbackrest/hosts \
  "/var/lib/pgbackrest/hosts/$1" /var/log/pgbackrest /var/log/pgbackrest/hosts "/var/log/pgbackrest/hosts/$1"
