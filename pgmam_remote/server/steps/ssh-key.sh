#!/bin/sh
# Usage: ssh-key.sh
# Gives postgres an SSH key of its own if it has none (pgBackRest reaches a repository host, and a
# repository host reaches this server, as postgres), then prints "user-key <its public key>" and
# "host-key <this server's ed25519 host key>".
set -eu
home=$(getent passwd postgres | cut -d: -f6)
install -d -m 0700 -o postgres -g postgres "$home/.ssh"
if [ ! -f "$home/.ssh/id_ed25519" ]; then
  runuser -u postgres -- ssh-keygen -q -t ed25519 -N '' -C "postgres@$(hostname) pgmam" -f "$home/.ssh/id_ed25519"
fi
echo "user-key $(cut -d' ' -f1,2 "$home/.ssh/id_ed25519.pub")"
echo "host-key $(cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub)"
