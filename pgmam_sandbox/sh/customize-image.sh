#!/bin/sh
# mmdebstrap customize hook for the sandbox server image; $1 is the new root directory.
# It turns a fresh Debian install into a template that many servers boot from at once, so
# nothing that must be unique per server (host keys, machine-id, a PostgreSQL cluster and its
# system identifier) may be left in it; the sandbox writes those per server before boot.
set -eu
root=$1

# ssh forwards the client's LANG, and pg_createcluster refuses a locale that does not exist;
# de_DE is there for the tests of servers whose PostgreSQL speaks German.
printf 'en_US.UTF-8 UTF-8\nde_DE.UTF-8 UTF-8\n' > "$root/etc/locale.gen"
chroot "$root" locale-gen > /dev/null
echo 'LANG=C.UTF-8' > "$root/etc/default/locale"

# postgresql-common created a `main` cluster at install: every clone would share its identifier.
for conf in "$root"/etc/postgresql/*/main; do
  [ -d "$conf" ] || continue
  version=$(basename "$(dirname "$conf")")
  chroot "$root" pg_dropcluster "$version" main
done

rm -f "$root"/etc/ssh/ssh_host_*
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"

# No console to log in on, and no network to fetch updates from.
for unit in console-getty.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
  fstrim.timer man-db.timer dpkg-db-backup.timer; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done

cat > "$root/etc/ssh/sshd_config.d/pgmam-sandbox.conf" <<'CONF'
# pgmam sandbox server: key logins only, as on a hardened production server.
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UseDNS no
CONF
