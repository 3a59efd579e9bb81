# ufm-pkeyd — build, test, demo and install. `make help` lists the targets.

CARGO   ?= cargo
PREFIX  ?= /usr
DESTDIR ?=
BIN      = target/release/ufm-pkeyd
SYSCONFDIR ?= /etc
UNITDIR    ?= $(PREFIX)/lib/systemd/system
# Packages: one binary for RHEL 8 and 9 and Debian, linked against glibc 2.28 by cargo-zigbuild.
GLIBC      ?= 2.28
TRIPLE      = x86_64-unknown-linux-gnu
PKG_BIN     = target/$(TRIPLE)/release/ufm-pkeyd
DIST        = target/dist

.PHONY: help build test lint demo bench man-lint install clean test-deps
.PHONY: build-deps zigbuild man-gz rpm deb packages package-check

help:
	@echo "make demo      run the main job end to end: real etcd + UFM simulator + ufm-pkeyd monitor"
	@echo "make test      run the whole test suite (installs etcd-server, openssl, curl if missing)"
	@echo "make lint      cargo fmt --check and clippy with warnings as errors"
	@echo "make bench     benchmark: 2,000 x 64-GUID initial sync, idle passes, latency, memory"
	@echo "make build     release binary in $(BIN)"
	@echo "make man-lint  mandoc -Tlint on the man pages"
	@echo "make install   install into \$$DESTDIR\$$PREFIX (default /usr)"
	@echo "make rpm       RPM for RHEL 8/9 in $(DIST)/ (glibc 2.28 binary, cargo-generate-rpm)"
	@echo "make deb       Debian package in $(DIST)/ (same binary, cargo-deb)"
	@echo "make package-check  build both packages and check them (packaging/check-packages.sh)"
	@echo "make build-deps     install the packaging tools when missing (zig, cargo-zigbuild, ...)"

build:
	$(CARGO) build --release --locked --bins

test-deps:
	@packaging/install-test-deps.sh

test: test-deps
	$(CARGO) test --locked

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

demo: test-deps
	tests/demo.sh

bench: test-deps
	$(CARGO) bench --locked --bench sync

man-lint: test-deps
	mandoc -Tlint -W warning man/ufm-pkeyd.8 man/ufm-pkeyd.yaml.5

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/ufm-pkeyd
	install -D -m 0644 man/ufm-pkeyd.8 $(DESTDIR)$(PREFIX)/share/man/man8/ufm-pkeyd.8
	install -D -m 0644 man/ufm-pkeyd.yaml.5 $(DESTDIR)$(PREFIX)/share/man/man5/ufm-pkeyd.yaml.5
	install -d $(DESTDIR)$(UNITDIR)
	sed 's|/usr/bin/ufm-pkeyd|$(PREFIX)/bin/ufm-pkeyd|' packaging/ufm-pkeyd.service \
		> $(DESTDIR)$(UNITDIR)/ufm-pkeyd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/ufm-pkeyd.service
	install -D -m 0644 packaging/ufm-pkeyd.bash \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions/ufm-pkeyd
	install -D -m 0644 packaging/el8-credentials.conf \
		$(DESTDIR)$(PREFIX)/share/doc/ufm-pkeyd/el8-credentials.conf
	install -D -m 0644 packaging/LICENSE $(DESTDIR)$(PREFIX)/share/licenses/ufm-pkeyd/LICENSE
	@# The example configuration: never over an existing (edited) one. Packages also create
	@# the system user ufm-pkeyd the unit runs as; by hand: useradd -r -s /sbin/nologin ufm-pkeyd.
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/ufm-pkeyd/ufm-pkeyd.yaml ]; then \
		echo "install: keeping $(DESTDIR)$(SYSCONFDIR)/ufm-pkeyd/ufm-pkeyd.yaml"; \
	else \
		install -D -m 0640 packaging/ufm-pkeyd.yaml $(DESTDIR)$(SYSCONFDIR)/ufm-pkeyd/ufm-pkeyd.yaml; \
	fi

clean:
	$(CARGO) clean

# --- Packages ---------------------------------------------------------------------------------
# `make rpm deb` on any x86_64 Linux with the tools of packaging/install-build-deps.sh; artefacts
# in $(DIST)/. Both take $(PKG_BIN): cargo-generate-rpm and cargo-deb map target/release/ in
# the asset lists of Cargo.toml to target/$(TRIPLE)/release/ with --target.

build-deps:
	@packaging/install-build-deps.sh

zigbuild: build-deps
	$(CARGO) zigbuild --release --locked --bin ufm-pkeyd --target $(TRIPLE).$(GLIBC)
	packaging/check-glibc.sh $(PKG_BIN) $(GLIBC)

# Man pages are shipped gzipped (cargo-generate-rpm compresses nothing); -n: reproducible.
man-gz:
	mkdir -p $(DIST)/stage
	gzip -9 -n -c man/ufm-pkeyd.8 > $(DIST)/stage/ufm-pkeyd.8.gz
	gzip -9 -n -c man/ufm-pkeyd.yaml.5 > $(DIST)/stage/ufm-pkeyd.yaml.5.gz

rpm: build-deps zigbuild man-gz
	rm -f $(DIST)/ufm-pkeyd-*.rpm
	$(CARGO) generate-rpm --target $(TRIPLE) --output $(DIST)/

deb: build-deps zigbuild man-gz
	rm -f $(DIST)/ufm-pkeyd_*.deb
	$(CARGO) deb --no-build --no-strip --target $(TRIPLE) --output $(DIST)/

packages: rpm deb

package-check: packages
	packaging/check-packages.sh $(DIST)
