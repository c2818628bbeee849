#!/bin/sh
# Usage: enable-timers.sh TIMER...
# Loads the new units and starts the timers.
set -e
systemctl daemon-reload
exec systemctl enable --now "$@"
