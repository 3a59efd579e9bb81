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
.PHONY: build-deps zigbuild man-gz srpm rpm rpm-rebuild deb packages package-check systemd-test

help:
	@echo "make demo      run the main job end to end: real etcd + UFM simulator + ufm-pkeyd monitor"
	@echo "make test      run the whole test suite (installs etcd-server, openssl, curl if missing)"
	@echo "make lint      cargo fmt --check and clippy with warnings as errors"
	@echo "make bench     benchmark: 2,000 x 64-GUID initial sync, idle, latency, memory; slow UFM, outages, head of line,"
	@echo "               bulk delete; HA take-over, etcd member faults, deposed leader (target/bench/ha.json)"
	@echo "make build     release binary in $(BIN)"
	@echo "make man-lint  mandoc -Tlint on the man pages"
	@echo "make install   install into \$$DESTDIR\$$PREFIX (default /usr)"
	@echo "make srpm      SRPM in $(DIST)/ with the vendored crates: rpmbuild --rebuild / mock build it offline"
	@echo "make rpm       RPM for RHEL 8/9 in $(DIST)/ (the spec with a prebuilt glibc 2.28 binary)"
	@echo "make rpm-rebuild    rpmbuild --rebuild of the SRPM with the network cut, into $(DIST)/rebuilt/"
	@echo "make deb       Debian package in $(DIST)/ (same binary, cargo-deb)"
	@echo "make package-check  build the packages and check them (packaging/check-packages.sh)"
	@echo "make systemd-test   boot Debian with systemd in systemd-nspawn, install the .deb, check the unit"
	@echo "make build-deps     install every packaging tool when missing (zig, cargo-zigbuild, rpm, ...)"

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
	$(CARGO) bench --locked --bench ha

man-lint: test-deps
	mandoc -Tlint -W warning man/ufm-pkeyd.8 man/ufm-pkeyd.yaml.5

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/ufm-pkeyd
	install -D -m 0644 man/ufm-pkeyd.8 $(DESTDIR)$(PREFIX)/share/man/man8/ufm-pkeyd.8
	install -D -m 0644 man/ufm-pkeyd.yaml.5 $(DESTDIR)$(PREFIX)/share/man/man5/ufm-pkeyd.yaml.5
	install -d $(DESTDIR)$(UNITDIR)
	sed 's|/usr/bin/ufm-pkeyd|$(PREFIX)/bin/ufm-pkeyd|' packaging/ufm-pkeyd.service \
		> $(DESTDIR)$(UNITDIR)/ufm-pkeyd.service
	sed 's|/usr/bin/ufm-pkeyd|$(PREFIX)/bin/ufm-pkeyd|' packaging/ufm-pkeyd@.service \
		> $(DESTDIR)$(UNITDIR)/ufm-pkeyd@.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/ufm-pkeyd.service $(DESTDIR)$(UNITDIR)/ufm-pkeyd@.service
	install -D -m 0644 packaging/ufm-pkeyd.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/ufm-pkeyd.conf
	install -D -m 0644 packaging/ufm-pkeyd.bash \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions/ufm-pkeyd
	install -D -m 0644 packaging/ufm-pkeyd.zsh $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_ufm-pkeyd
	install -D -m 0644 packaging/ufm-pkeyd.fish \
		$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/ufm-pkeyd.fish
	install -D -m 0644 packaging/el8-credentials.conf \
		$(DESTDIR)$(PREFIX)/share/doc/ufm-pkeyd/el8-credentials.conf
	install -D -m 0644 packaging/ufm-pkeyd-alerts.yml \
		$(DESTDIR)$(PREFIX)/share/doc/ufm-pkeyd/ufm-pkeyd-alerts.yml
	install -D -m 0644 packaging/LICENSE $(DESTDIR)$(PREFIX)/share/licenses/ufm-pkeyd/LICENSE
	@# The example configuration: never over an existing (edited) one. Packages also create
	@# the system user ufm-pkeyd the unit runs as; by hand: systemd-sysusers ufm-pkeyd.conf.
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/ufm-pkeyd/ufm-pkeyd.yaml ]; then \
		echo "install: keeping $(DESTDIR)$(SYSCONFDIR)/ufm-pkeyd/ufm-pkeyd.yaml"; \
	else \
		install -D -m 0640 packaging/ufm-pkeyd.yaml $(DESTDIR)$(SYSCONFDIR)/ufm-pkeyd/ufm-pkeyd.yaml; \
	fi

clean:
	$(CARGO) clean

# --- Packages ---------------------------------------------------------------------------------
# One spec (packaging/rpm/ufm-pkeyd.spec) for two RPM builds, artefacts in $(DIST)/:
#   make srpm         SRPM with the sources and the vendored crates: `rpmbuild --rebuild` or mock
#                     compile it offline with the build host's Rust (>= 1.85) and gcc;
#   make rpm          the spec with a prebuilt binary linked against glibc 2.28 (cargo-zigbuild):
#                     one RPM for EL8 and EL9, made on any Linux with rpmbuild;
#   make rpm-rebuild  (CI) `rpmbuild --rebuild` of the SRPM with the network cut.
# The .deb (cargo-deb) takes the same glibc-2.28 binary. Only `make package-check` needs the
# linters (rpmlint, lintian); packaging/install-build-deps.sh installs what each target needs.
VERSION   := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n 1)
SPEC       = packaging/rpm/ufm-pkeyd.spec
RPMTOP     = $(CURDIR)/target/rpmbuild
SRPM       = $(DIST)/ufm-pkeyd-$(VERSION)-1.src.rpm
# Debian's rpm database does not know dpkg's packages: BuildRequires cannot be checked there.
RPM_NODEPS = $(shell rpm -q rpm >/dev/null 2>&1 || echo --nodeps)
RPMBUILD   = rpmbuild --define "_topdir $(RPMTOP)" --define "_sourcedir $(RPMTOP)/SOURCES" \
	--define "_srcrpmdir $(CURDIR)/$(DIST)" --define "_rpmdir $(CURDIR)/$(DIST)" \
	--define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" $(RPM_NODEPS)
# zig for cargo-zigbuild, from PyPI into a venv here (never the system Python).
ZIG_VENV   = $(CURDIR)/target/zig-venv

build-deps:
	@packaging/install-build-deps.sh all

zigbuild:
	@packaging/install-build-deps.sh zig
	PATH="$(ZIG_VENV)/bin:$$PATH" $(CARGO) zigbuild --release --locked --bin ufm-pkeyd --target $(TRIPLE).$(GLIBC)
	packaging/check-glibc.sh $(PKG_BIN) $(GLIBC)

# Man pages are shipped gzipped in the .deb (cargo-deb compresses nothing); -n: reproducible.
# The RPM gets them from rpmbuild's brp-compress.
man-gz:
	mkdir -p $(DIST)/stage
	gzip -9 -n -c man/ufm-pkeyd.8 > $(DIST)/stage/ufm-pkeyd.8.gz
	gzip -9 -n -c man/ufm-pkeyd.yaml.5 > $(DIST)/stage/ufm-pkeyd.yaml.5.gz

srpm:
	@packaging/install-build-deps.sh rpmbuild
	packaging/rpm/sources.sh --vendor $(RPMTOP)/SOURCES
	rm -f $(DIST)/ufm-pkeyd-*.src.rpm
	$(RPMBUILD) -bs $(SPEC)

rpm: zigbuild
	@packaging/install-build-deps.sh rpmbuild
	packaging/rpm/sources.sh $(RPMTOP)/SOURCES
	rm -f $(DIST)/ufm-pkeyd-*.x86_64.rpm
	$(RPMBUILD) -bb --with prebuilt --define "prebuilt_binary $(CURDIR)/$(PKG_BIN)" $(SPEC)

rpm-rebuild: srpm
	packaging/rpm/rebuild-offline.sh $(SRPM) $(DIST)/rebuilt
	@packaging/install-build-deps.sh check
	packaging/rpm/check-rpm.sh $(DIST)/rebuilt/ufm-pkeyd-$(VERSION)-1.x86_64.rpm $(SRPM)

deb: zigbuild man-gz
	@packaging/install-build-deps.sh deb
	rm -f $(DIST)/ufm-pkeyd_*.deb
	$(CARGO) deb --no-build --no-strip --target $(TRIPLE) --output $(DIST)/

packages: rpm deb

package-check: packages
	@packaging/install-build-deps.sh check
	packaging/check-packages.sh $(DIST)

# --- A real systemd ---------------------------------------------------------------------------
# Boots Debian bookworm in systemd-nspawn (rootfs cached in target/systemd-test/), installs the
# .deb and runs the README's first-run steps and the unit's checks; see tests/systemd/run.sh.
systemd-test: deb
	@packaging/install-test-deps.sh systemd
	tests/systemd/run.sh $(DIST)
