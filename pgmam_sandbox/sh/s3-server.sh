#!/bin/bash
# s3-server.sh: a throw-away S3-compatible server for tests, made of a single-node
# Ceph cluster from Debian 12 packages (one mon, one memstore OSD, radosgw/beast on TLS).
#
#   s3-server.sh up DIR ADDRESS PORT   start it; prints one line of JSON describing it
#   s3-server.sh down DIR              stop exactly the daemons "up" started (by pid file)
#   s3-server.sh status DIR            "up", "down" or "partial" (exit 0, 3, 4)
#
# Everything lives under DIR: ceph.conf, mon store, OSD dir, logs, pid files, admin
# sockets, the TLS CA and server certificate. Daemons run as plain background
# processes in their own session (no systemd), as the invoking user (root).
# cephx is off: anything that can reach ADDRESS's mon/OSD ports can use the cluster.
#
# Needs: ceph-mon ceph-osd radosgw (which pull in ceph-common), openssl, curl >= 7.75.
#
# Tunables (environment):
#   S3_NAME            DNS name in the certificate and the endpoint (s3.pgmam.test)
#   S3_REGION          region used for signing (us-east-1)
#   S3_BUCKET          bucket created by "up" (pgmam)
#   S3_MEMSTORE_BYTES  OSD capacity, held in RAM (1073741824)
#   S3_MON_PORT        mon msgr2 port (3300); msgr1 is not bound
#   S3_UP_TIMEOUT      seconds to wait for each daemon (60)
set -euo pipefail

S3_NAME=${S3_NAME:-s3.pgmam.test}
S3_REGION=${S3_REGION:-us-east-1}
S3_BUCKET=${S3_BUCKET:-pgmam}
S3_MEMSTORE_BYTES=${S3_MEMSTORE_BYTES:-1073741824}
S3_MON_PORT=${S3_MON_PORT:-3300}
S3_UP_TIMEOUT=${S3_UP_TIMEOUT:-60}

# daemons in start order; "down" stops them in reverse
DAEMONS=(mon.a osd.0 client.rgw.a)
MARKER=.s3-server

die() { echo "s3-server: $*" >&2; exit 1; }
say() { echo "s3-server: $*" >&2; }

usage() {
    sed -n '4,7p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# ---------------------------------------------------------------- helpers

# absolute path without requiring it to exist
abspath() {
    case $1 in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s/%s\n' "$PWD" "$1" ;;
    esac
}

daemon_bin() {
    case $1 in
        mon.*) echo ceph-mon ;;
        osd.*) echo ceph-osd ;;
        client.rgw.*) echo radosgw ;;
        *) die "unknown daemon $1" ;;
    esac
}

# pid of daemon $2 in $1 if it is alive and really ours, else nothing
live_pid() {
    local dir=$1 name=$2 pidfile pid cmdline
    pidfile=$dir/run/$name.pid
    [[ -s $pidfile ]] || return 0
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    [[ -r /proc/$pid/cmdline ]] || return 0
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
    # the pid must still be the daemon we started, with our config file
    case $cmdline in
        *"$(daemon_bin "$name")"*"-c $dir/ceph.conf"*) echo "$pid" ;;
    esac
}

# prints up / down / partial
state_of() {
    local dir=$1 name alive=0
    for name in "${DAEMONS[@]}"; do
        [[ -n $(live_pid "$dir" "$name") ]] && alive=$((alive + 1))
    done
    if ((alive == ${#DAEMONS[@]})); then echo up
    elif ((alive == 0)); then echo down
    else echo partial
    fi
}

ceph_cli() { ceph -c "$DIR/ceph.conf" --connect-timeout 5 "$@"; }

# wait until "$@" succeeds, up to S3_UP_TIMEOUT seconds; $1 is a label
wait_for() {
    local what=$1 deadline
    shift
    deadline=$((SECONDS + S3_UP_TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "timed out waiting for $what (see $DIR/log)"
        sleep 0.5
    done
}

# start daemon NAME as a background process in its own session; record its pid
start_daemon() {
    local name=$1 bin
    bin=$(daemon_bin "$name")
    shift
    # setsid: survive the caller's terminal; -f: stay in the foreground so $! is the daemon
    setsid "$bin" -f -c "$DIR/ceph.conf" "$@" \
        </dev/null >>"$DIR/log/$name.out" 2>&1 &
    echo $! >"$DIR/run/$name.pid"
}

mon_ready() { ceph_cli mon stat; }
osd_ready() { ceph_cli osd stat -f json | grep -q '"num_up_osds":1'; }
rgw_ready() {
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 \
        --cacert "$DIR/tls/ca.crt" --resolve "$S3_NAME:$PORT:$ADDRESS" \
        "https://$S3_NAME:$PORT/") || return 1
    [[ $code == 200 || $code == 403 ]]
}

json_escape() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    printf '%s' "$s"
}

# ---------------------------------------------------------------- pieces of "up"

make_tls() {
    local tls=$DIR/tls san
    # the CA certificate must be readable by the backup user (postgres); the keys are not
    mkdir -p "$tls"
    san="DNS:$S3_NAME,IP:$ADDRESS"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
        -keyout "$tls/ca.key" -out "$tls/ca.crt" -subj "/CN=pgmam test S3 CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -new -newkey rsa:2048 -nodes -sha256 \
        -keyout "$tls/server.key" -out "$tls/server.csr" -subj "/CN=$S3_NAME" 2>/dev/null
    printf '%s\n' \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth" \
        "subjectAltName=$san" >"$tls/server.ext"
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
        -CAcreateserial -days 3650 -sha256 -extfile "$tls/server.ext" \
        -out "$tls/server.crt" 2>/dev/null
    rm -f "$tls/server.csr" "$tls/ca.srl"
    chmod 600 "$tls/ca.key" "$tls/server.key"
    chmod 644 "$tls/ca.crt" "$tls/server.crt"
}

write_conf() {
    local fsid=$1
    cat >"$DIR/ceph.conf" <<EOF
# written by s3-server.sh; a single-node test cluster, not for real data
[global]
fsid = $fsid
mon host = [v2:$ADDRESS:$S3_MON_PORT]
mon initial members = a
public network = $ADDRESS/32
ms bind msgr1 = false
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
auth supported = none
keyring = $DIR/keyring
run dir = $DIR/run
crash dir = $DIR/crash
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
log to stderr = false
err to stderr = true
mon cluster log file = $DIR/log/cluster.log
# one OSD: one copy, no failure domain above the OSD, no "no redundancy" warnings
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail warn = 2
mon data avail crit = 1

[mon]
mon data = $DIR/mon/\$cluster-\$id
# auth is off: the insecure global_id warning is meaningless here
mon warn on insecure global id reclaim allowed = false

[osd]
osd data = $DIR/osd/\$cluster-\$id
osd objectstore = memstore
memstore device bytes = $S3_MEMSTORE_BYTES
# crush weight from a 1 GiB size would be ~0.001: give it a plain weight
osd crush initial weight = 1
osd crush update on start = true
osd op num shards = 2
osd op num threads per shard = 1

[client.rgw.a]
# radosgw asks the mon for a "secure" connection by default, which auth=none cannot give
ms mon client mode = crc
rgw data = $DIR/rgw/\$cluster-\$id
# tcp_nodelay=1: without it every small request stalls ~40 ms (Nagle + delayed ACK)
rgw frontends = beast ssl_endpoint=$ADDRESS:$PORT ssl_certificate=$DIR/tls/server.crt ssl_private_key=$DIR/tls/server.key tcp_nodelay=1
rgw thread pool size = 64
rgw enable usage log = false
rgw gc processor period = 60
EOF
}

make_bucket() {
    local code
    # credentials go through a curl config on stdin, not the command line
    code=$(printf 'user = "%s:%s"\n' "$ACCESS_KEY" "$SECRET_KEY" |
        curl -s -K - -o "$DIR/log/create-bucket.out" -w '%{http_code}' --max-time 20 \
            --cacert "$DIR/tls/ca.crt" --resolve "$S3_NAME:$PORT:$ADDRESS" \
            --aws-sigv4 "aws:amz:$S3_REGION:s3" \
            -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
            -X PUT "https://$S3_NAME:$PORT/$S3_BUCKET") || true
    [[ $code == 200 ]] || die "creating bucket $S3_BUCKET failed: HTTP $code ($(cat "$DIR/log/create-bucket.out" 2>/dev/null))"
}

print_info() {
    printf '{"endpoint":"%s","address":"%s","port":%s,"access_key":"%s","secret_key":"%s","region":"%s","ca_file":"%s","bucket":"%s","uri_style":"path"}\n' \
        "$(json_escape "$S3_NAME")" "$(json_escape "$ADDRESS")" "$PORT" \
        "$(json_escape "$ACCESS_KEY")" "$(json_escape "$SECRET_KEY")" \
        "$(json_escape "$S3_REGION")" "$(json_escape "$DIR/tls/ca.crt")" \
        "$(json_escape "$S3_BUCKET")"
}

# ---------------------------------------------------------------- commands

cmd_up() {
    [[ $# -eq 3 ]] || usage
    DIR=$(abspath "$1")
    ADDRESS=$2
    PORT=$3
    [[ $ADDRESS =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "ADDRESS must be an IPv4 address: $ADDRESS"
    if ! [[ $PORT =~ ^[0-9]+$ ]] || ((PORT < 1 || PORT > 65535)); then
        die "bad PORT: $PORT"
    fi
    local tool
    for tool in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool openssl curl setsid uuidgen; do
        command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw)"
    done

    if [[ -e $DIR ]]; then
        if [[ -e $DIR/$MARKER ]]; then
            case $(state_of "$DIR") in
                up)
                    say "already up in $DIR"
                    cat "$DIR/s3.json"
                    return 0 ;;
                partial) die "$DIR is partly up; run: $0 down $DIR" ;;
            esac
            # down: rebuild from scratch (the memstore OSD's data is gone anyway)
            say "rebuilding the stopped server in $DIR"
            rm -rf "${DIR:?}"/{mon,osd,rgw,run,log,crash,tls} "$DIR/ceph.conf" "$DIR/monmap" "$DIR/s3.json"
        elif [[ -n $(ls -A "$DIR") ]]; then
            die "$DIR exists, is not empty and was not made by $0"
        fi
    fi
    mkdir -p "$DIR"
    : >"$DIR/$MARKER"
    mkdir -p "$DIR"/{mon,osd/ceph-0,rgw,run,log,crash}

    local fsid osd_uuid osd_id
    fsid=$(uuidgen)
    make_tls
    write_conf "$fsid"

    # mon
    monmaptool --create --clobber --fsid "$fsid" --addv a "[v2:$ADDRESS:$S3_MON_PORT]" \
        "$DIR/monmap" >/dev/null
    ceph-mon -c "$DIR/ceph.conf" --mkfs -i a --monmap "$DIR/monmap" \
        >>"$DIR/log/mkfs.out" 2>&1 || die "ceph-mon --mkfs failed: see $DIR/log/mkfs.out"
    start_daemon mon.a -i a
    wait_for "the mon" mon_ready

    # one memstore OSD
    osd_uuid=$(uuidgen)
    osd_id=$(ceph_cli osd new "$osd_uuid")
    [[ $osd_id == 0 ]] || die "expected OSD id 0, got '$osd_id'"
    ceph-osd -c "$DIR/ceph.conf" -i 0 --mkfs --osd-uuid "$osd_uuid" \
        >>"$DIR/log/mkfs.out" 2>&1 || die "ceph-osd --mkfs failed: see $DIR/log/mkfs.out"
    start_daemon osd.0 -i 0
    wait_for "the OSD" osd_ready

    # radosgw
    start_daemon client.rgw.a -n client.rgw.a
    wait_for "radosgw on https://$ADDRESS:$PORT" rgw_ready

    ACCESS_KEY=$(openssl rand -hex 10 | tr 'a-f' 'A-F')
    SECRET_KEY=$(openssl rand -base64 30 | tr -d '/+=\n')
    radosgw-admin -c "$DIR/ceph.conf" -n client.admin user create --uid=pgmam \
        --display-name="pgmam test" --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" \
        >"$DIR/log/user-create.out" 2>&1 || die "radosgw-admin user create failed: see $DIR/log/user-create.out"
    make_bucket

    print_info >"$DIR/s3.json"
    chmod 600 "$DIR/s3.json"
    cat "$DIR/s3.json"
}

cmd_down() {
    [[ $# -eq 1 ]] || usage
    DIR=$(abspath "$1")
    [[ -e $DIR/$MARKER ]] || die "$DIR was not made by $0"
    local i name pid waited
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        name=${DAEMONS[i]}
        pid=$(live_pid "$DIR" "$name")
        if [[ -n $pid ]]; then
            kill -TERM "$pid" 2>/dev/null || true
            waited=0
            while kill -0 "$pid" 2>/dev/null && ((waited < 100)); do
                sleep 0.1
                waited=$((waited + 1))
            done
            if kill -0 "$pid" 2>/dev/null; then
                say "$name ($pid) ignored SIGTERM; killing it"
                kill -KILL "$pid" 2>/dev/null || true
            fi
            say "stopped $name ($pid)"
        fi
        rm -f "$DIR/run/$name.pid"
    done
}

cmd_status() {
    [[ $# -eq 1 ]] || usage
    DIR=$(abspath "$1")
    [[ -e $DIR/$MARKER ]] || { echo down; exit 3; }
    local s
    s=$(state_of "$DIR")
    echo "$s"
    case $s in
        up) exit 0 ;;
        down) exit 3 ;;
        *) exit 4 ;;
    esac
}

[[ $# -ge 1 ]] || usage
cmd=$1
shift
case $cmd in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    *) usage ;;
esac
