# pgmam: `make demo` and `make test` work from a clean clone on Debian/Ubuntu, as root or with sudo.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The sandbox's systemd servers boot with systemd-nspawn from an image mmdebstrap builds; its plain
# servers (the no-systemd lane) use this machine's own PostgreSQL, pgBackRest, sshd and cron.
APT_PACKAGES := postgresql postgresql-contrib pgbackrest openssh-server openssh-client sudo iproute2 util-linux procps cron \
	systemd-container mmdebstrap shellcheck locales
# the sandbox's S3-compatible server (pgmam_sandbox/sh/s3-server.sh): a single-node Ceph
CEPH_PACKAGES := ceph-mon ceph-osd radosgw curl openssl
# a binary per package: apt runs only when one is missing
NEEDED_BINARIES := /usr/sbin/cron /usr/bin/pg_createcluster /usr/bin/pgbackrest /usr/sbin/sshd /usr/bin/ssh-keygen /usr/bin/sudo \
	/usr/sbin/ip /usr/bin/unshare /usr/bin/nsenter /usr/bin/systemd-nspawn /usr/bin/mmdebstrap /usr/bin/shellcheck \
	/usr/bin/ceph-mon /usr/bin/ceph-osd /usr/bin/radosgw /usr/bin/curl /usr/bin/openssl

.PHONY: all deps system-deps python-deps test check reference unit fast integration lint demo demo-down bench clean

all: test

system-deps:
	@missing=0; for b in $(NEEDED_BINARIES); do [ -x "$$b" ] || missing=1; done; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing=1; \
	[ -f /usr/share/i18n/locales/de_DE ] || missing=1; \
	$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || missing=1; \
	if [ $$missing = 1 ]; then \
	  echo "installing Debian packages: $(APT_PACKAGES) python3-venv $(CEPH_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) python3-venv >/dev/null && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(CEPH_PACKAGES) >/dev/null; \
	fi

# Debian's node_exporter, for the test that scrapes the watchdog's metrics inside a sandbox server:
# taken out of its package, not installed (installing starts it on this machine)
NODE_EXPORTER := /var/cache/pgmam-sandbox/node_exporter
$(NODE_EXPORTER):
	@tmp=$$(mktemp -d) && chmod 755 $$tmp && cd $$tmp && \
	{ apt-get download -qq prometheus-node-exporter 2>/dev/null || { $(SUDO) apt-get update -qq && apt-get download -qq prometheus-node-exporter; }; } && \
	dpkg-deb -x prometheus-node-exporter_*.deb x && $(SUDO) install -D -m 755 x/usr/bin/prometheus-node-exporter $@; \
	rc=$$?; rm -rf $$tmp; exit $$rc

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

python-deps: $(VENV)/.installed

deps: system-deps python-deps $(NODE_EXPORTER)

SHELL_FILES := $(wildcard pgmam_sandbox/sh/*.sh pgmam_remote/server/*.sh pgmam_remote/server/steps/*.sh scripts/*.sh .ci/run)

lint: deps
	$(VENV)/bin/ruff check .
	shellcheck $(SHELL_FILES)

unit: python-deps
	$(VENV)/bin/python -m pytest -q tests/unit

# the fast tier: unit tests, and every server script run against a throwaway local PostgreSQL (no
# sandbox), on every core; the tests of one file share a stand-in server, so a file stays on one core
fast: deps
	$(SUDO) $(VENV)/bin/python -m pytest -q -n auto --dist loadfile tests/unit tests/server

# docs/reference/tasks.md, from the task definitions (a unit test fails when it is stale)
reference: python-deps
	$(VENV)/bin/python scripts/reference.py

# before a commit: lint and the fast tier
check: lint fast

integration: deps
	$(SUDO) $(VENV)/bin/python -m pytest -q tests/integration

test: deps lint
	$(SUDO) $(VENV)/bin/python -m pytest -q tests

demo: deps
	$(SUDO) env PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo.sh

demo-down: python-deps
	$(SUDO) $(VENV)/bin/inv sandbox.down

bench: deps
	$(SUDO) $(VENV)/bin/python bench/sandbox.py
	$(SUDO) $(VENV)/bin/python bench/initcluster_status.py
	$(SUDO) $(VENV)/bin/python bench/pitr.py
	$(SUDO) $(VENV)/bin/python bench/backup.py
	$(SUDO) $(VENV)/bin/python bench/offsite.py
	$(SUDO) $(VENV)/bin/python bench/watchdog.py
	$(VENV)/bin/python bench/wal_gaps.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
