#!/bin/sh
# Usage: pgbackrest-ssh.sh SSH-ARGUMENTS...
# The SSH client pgBackRest uses to reach a repository host, or back (cmd-ssh in pgmam's off-host
# configs): plain ssh that gives up on an unreachable host after 10 s and on a silent connection
# after a minute, so an outage shows at once in status and never holds anything up for long.
exec ssh -o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=15 -o ServerAliveCountMax=4 "$@"
