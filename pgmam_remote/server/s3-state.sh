#!/bin/sh
# Usage: sh -c "$(cat s3-state.sh)" s3-state SERVER REPO|- GAPS_AWK
# What an S3 repo keeps of SERVER's apps, read from this server (it reaches the bucket; the
# operator's machine may not): with the installed /etc/pgbackrest/pgmam/repos/REPO.conf, or with a
# config read on stdin, followed by the CA's PEM when it names one (it carries keys and the
# passphrase, so it only ever lives in a private temporary file, and the server is unchanged). Prints the sections a repository host's probe prints of what it keeps (see
# probe.sh): "hosted SERVER" (pgbackrest info), "hosted-stanzas SERVER" (the stanzas the bucket
# holds, readable without the passphrase), "hosted-newest SERVER" (each stanza's newest segment and
# when it arrived), "hosted-gaps SERVER" (holes: ../wal-gaps.awk) and "hosted-history SERVER STANZA"
# (a stanza's newest timeline history). Exits 0 when the repo was read at all. Like probe.sh, it is
# sent with each command, not installed (status reads a server without changing it), and gets
# wal-gaps.awk as an argument.
set -u
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
server=$1
gaps_awk=$3
cd /tmp || exit 1
if [ "$2" = - ]; then
  private=$(mktemp -d /tmp/pgmam-s3.XXXXXX) || exit 1
  trap 'rm -rf "$private"' EXIT
  chown postgres: "$private"
  conf=$private/pgbackrest.conf
  (
    umask 077
    cat > "$private/input"
    sed '/^-----BEGIN/,$d' "$private/input" > "$conf"
    sed -n '/^-----BEGIN/,$p' "$private/input" > "$private/ca.pem"
  )
  [ -s "$private/ca.pem" ] && sed -i "s|^repo1-storage-ca-file=.*|repo1-storage-ca-file=$private/ca.pem|" "$conf"
  chown postgres: "$conf" "$private/ca.pem"
else
  conf=/etc/pgbackrest/pgmam/repos/$2.conf
  [ -f "$conf" ] || { echo "$conf is missing: this server does not keep its apps in repo $2" >&2; exit 1; }
fi
section() { printf '\n@@%s\n' "$*"; }
# A short io-timeout: an unreachable bucket fails the read in seconds, not minutes.
repo() { runuser -u postgres -- timeout 60 pgbackrest --config="$conf" --io-timeout=5 --log-level-file=off "$@"; }

listing=$(repo --output=json repo-ls --recurse archive 2>&1) || { echo "cannot list the repo: $listing" >&2; exit 1; }
# One line per archived file: "<stanza> <archive id> <file name> <arrived>", from the JSON listing
# ("STANZA/ID/0000000100000000/NAME":{"type":"file","size":N,"time":T}); names hold no quotes.
files=$(printf '%s' "$listing" | grep -o '"[^"/]*/[^"/]*/[^"]*":{"type":"file","size":[0-9]*,"time":[0-9]*}' \
  | sed 's|^"\([^/]*\)/\([^/]*\)/\(.*/\)\{0,1\}\([^/"]*\)":.*"time":\([0-9]*\)}$|\1 \2 \4 \5|' | LC_ALL=C sort)

section "hosted $server"
repo --output=json info 2>&1
section "hosted-stanzas $server"
repo --output=json repo-ls backup 2>/dev/null | grep -o '"[^".]*":{"type":"path"' | cut -d'"' -f2
section "hosted-newest $server"
printf '%s\n' "$files" | grep ' [0-9A-F]\{24\}-' | awk '{ newest[$1] = $3 " " $4 } END { for (s in newest) print s, newest[s] }'
section "hosted-gaps $server"
printf '%s\n' "$files" | grep ' [0-9A-F]\{24\}-' | awk "$gaps_awk"
printf '%s\n' "$files" | grep ' [0-9A-F]\{8\}\.history ' | awk '{ newest[$1] = $2 "/" $3 } END { for (s in newest) print s, newest[s] }' \
  | while read -r stanza file; do
    section "hosted-history $server $stanza"
    repo --stanza="$stanza" repo-get "archive/$stanza/$file" 2>&1
  done
exit 0
