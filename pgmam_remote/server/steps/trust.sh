#!/bin/sh
# Usage: trust.sh ADDRESS HOST_KEY USER_KEY
# Lets postgres on this server and postgres on the server at ADDRESS reach each other over SSH:
# ADDRESS's host key goes into postgres's known_hosts, and the other postgres's public key into
# postgres's authorized_keys (no forwarding, no terminal). Lines pgmam wrote end in "pgmam" and are
# replaced, never duplicated; other lines are kept.
set -eu
address=$1; host_key=$2; user_key=$3
home=$(getent passwd postgres | cut -d: -f6)
install -d -m 0700 -o postgres -g postgres "$home/.ssh"
replace() { # FILE KEY-PREFIX LINE: drop our line starting with KEY-PREFIX, then append LINE
  touch "$1"
  awk -v p="$2" 'index($0, p) != 1 || $NF != "pgmam"' "$1" > "$1.pgmam-tmp"
  printf '%s\n' "$3" >> "$1.pgmam-tmp"
  chown postgres:postgres "$1.pgmam-tmp"
  chmod 0600 "$1.pgmam-tmp"
  mv -f "$1.pgmam-tmp" "$1"
}
replace "$home/.ssh/known_hosts" "$address " "$address $host_key pgmam"
replace "$home/.ssh/authorized_keys" "restrict $user_key " "restrict $user_key pgmam"
