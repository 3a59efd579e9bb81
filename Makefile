# ufm-pkeyd — build, test, demo and install. `make help` lists the targets.

CARGO   ?= cargo
PREFIX  ?= /usr
DESTDIR ?=
BIN      = target/release/ufm-pkeyd

.PHONY: help build test lint demo bench man-lint install clean test-deps

help:
	@echo "make demo      run the main job end to end: real etcd + UFM simulator + ufm-pkeyd monitor"
	@echo "make test      run the whole test suite (installs etcd-server, openssl, curl if missing)"
	@echo "make lint      cargo fmt --check and clippy with warnings as errors"
	@echo "make bench     benchmark: 2,000 x 64-GUID initial sync, idle passes, latency, memory"
	@echo "make build     release binary in $(BIN)"
	@echo "make man-lint  mandoc -Tlint on the man pages"
	@echo "make install   install into \$$DESTDIR\$$PREFIX (default /usr)"

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

clean:
	$(CARGO) clean
