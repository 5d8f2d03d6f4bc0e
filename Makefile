# The two commands: `make demo` and `make test`. Each installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The .deb runs on Debian 12's Python libraries (debian/control): `make test` runs the
# unit tests on them too, in .venv-debian (Debian's python3, system site-packages).
# python3-scapy: the tests check the agent's ARP and ICMP packets against scapy's.
DEBIAN_PY_PACKAGES := python3-icmplib python3-paramiko \
	python3-scapy python3-prometheus-client python3-pyfuse3
APT_PACKAGES := python3-venv pkg-config gcc python3-dev rsync openssh-server openssh-client \
	nftables iproute2 iputils-ping systemd systemd-sysv dbus keepalived lsyncd procps \
	resource-agents chromium chromium-driver libopenipmi0 fence-agents ipmitool fuse3 libfuse3-dev \
	$(DEBIAN_PY_PACKAGES)
DEBIAN_VENV := .venv-debian
STAMP_DEBIAN := $(DEBIAN_VENV)/.pip-done
STAMP_APT := $(VENV)/.apt-done
STAMP_PIP := $(VENV)/.pip-done
STAMP_TOOLS := $(VENV)/.tools-done

.PHONY: install test unit-test lab-test demo simulate lint bench clean lab-down deb

# The Debian package (docs/packaging.md): built in a copy of the tree under
# build/deb, the .deb lands in dist/, lintian must find no error.
VERSION := $(shell sed -n 's/^version *= *//p' setup.cfg)
DEB := dist/mosqit-failover_$(VERSION)_all.deb
DEB_APT_PACKAGES := build-essential debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools \
	python3-wheel lintian rsync
STAMP_DEB_APT := build/.deb-apt-done
DEB_SOURCES := $(shell find mosqit_failover wizards scenarios units debian docs completions examples \
	-name __pycache__ -prune -o -type f -print) setup.cfg pyproject.toml README.md CHANGELOG.md LICENSE

install: $(STAMP_PIP) $(STAMP_TOOLS) $(STAMP_DEBIAN)

# openssh-server, keepalived and lsyncd are here for the lab's nodes, not for this host:
# their installs would start them on it. A policy-rc.d that forbids starts (Debian's
# own mechanism, as image builds use) is in place while apt-get runs, then removed;
# one the host already has is left alone. (Debian still enables their units at boot.)
# `dpkg --configure -a` first finishes what a killed earlier run left half-installed.
POLICY_MARK := mosqit-failover make install: no service starts during apt-get
NO_SERVICE_STARTS := if grep -qs '$(POLICY_MARK)' /usr/sbin/policy-rc.d; then \
		rm -f /usr/sbin/policy-rc.d; fi; \
	if [ ! -e /usr/sbin/policy-rc.d ]; then \
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT INT TERM HUP; \
		printf '\#!/bin/sh\n\# $(POLICY_MARK)\nexit 101\n' \
			> /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d; \
	fi;

# $(call apt_install,PACKAGES): apt-get install those of PACKAGES not installed yet, with
# no service start (NO_SERVICE_STARTS) and after finishing a killed earlier run.
apt_install = missing=""; for p in $(1); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "apt-get install:$$missing"; \
		$(NO_SERVICE_STARTS) \
		{ [ -z "$$(dpkg --audit 2>/dev/null)" ] || DEBIAN_FRONTEND=noninteractive dpkg --configure -a; } \
		&& apt-get update -qq \
		&& DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
			--no-install-recommends $$missing; \
	fi

# $(call fresh_venv,DIR,PYTHON -m venv OPTIONS): a venv left half-made by an interrupted
# first run has no pip: make it anew (the stamps beside it stay).
fresh_venv = test -x $(1)/bin/pip || { rm -rf $(1)/bin $(1)/lib $(1)/lib64 $(1)/include $(1)/pyvenv.cfg; \
	$(2) $(1) || { echo "make: '$(2)' failed: install python3-venv (or run make install)" >&2; exit 2; }; }

# Again when the Makefile changes: a checkout made before a package joined the list gets it.
$(STAMP_APT): Makefile
	@mkdir -p $(VENV)
	@$(call apt_install,$(APT_PACKAGES))
	@touch $@

$(STAMP_PIP): $(STAMP_APT) setup.cfg pyproject.toml
	@$(call fresh_venv,$(VENV),$(PYTHON) -m venv)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,syncfs]'
	@touch $@

# Only the test tools come from PyPI (the unit tests' imports beyond the runtime's); the
# project without its dependencies; debian_libs.py fails if a PyPI copy shadows Debian's.
$(STAMP_DEBIAN): $(STAMP_APT) setup.cfg pyproject.toml
	@$(call fresh_venv,$(DEBIAN_VENV),/usr/bin/python3 -m venv --system-site-packages)
	$(DEBIAN_VENV)/bin/pip install -q 'pytest>=8' 'pytest-xdist>=3.5' 'hypothesis>=6.100' 'aiosmtpd>=1.4'
	$(DEBIAN_VENV)/bin/pip install -q --no-deps -e .
	$(DEBIAN_VENV)/bin/python tests/debian_libs.py
	@touch $@

# $(call extract_binary,PACKAGE,FILE): FILE alone out of PACKAGE's .deb, into $(BIN), for a
# package whose install would do more on this machine than the lab wants.
define extract_binary
@rm -rf $(VENV)/.$(1) && mkdir -p $(VENV)/.$(1)
@cd $(VENV)/.$(1) && apt-get download -qq $(1) 2>/dev/null \
	&& dpkg-deb -x $(1)_*.deb root && install -m 0755 root$(2) ../bin/$(notdir $(2))
@rm -rf $(VENV)/.$(1)
endef

# ipmi_sim (the BMC simulator of the power fence lab test) is in the openipmi package,
# whose install enables a boot script that loads IPMI drivers on this machine (its
# libraries are libopenipmi0). promtool checks and unit-tests examples/prometheus; the
# prometheus package would start a Prometheus service here (promtool needs only libc).
$(STAMP_TOOLS): $(STAMP_PIP) Makefile
	$(call extract_binary,openipmi,/usr/bin/ipmi_sim)
	$(call extract_binary,prometheus,/usr/bin/promtool)
	@touch $@

# The lab nodes install the agent from the .deb (mosqit_failover/lab/deploy.py): the
# targets that run the lab build it first, so they run a package of the current tree.
# The linters and the type check first: they take seconds, and CI keeps them honest.
# The unit tests run on both library sets (Debian's for the .deb, PyPI's for pip), each
# spread over UNIT_WORKERS processes (pytest-xdist; worksteal evens out the few long
# property tests); the second pass leaves out the modules marked pure, which drive only
# the core and the simulation and use no library (tests/unit/conftest.py); the lab
# tests after them, LAB_WORKERS labs side by side, each module whole in one of them
# (loadfile) and each lab under a prefix of its own (tests/lab/__init__.py). A lab
# mostly waits (for failovers, timeouts, syncs), so two share two cores: the suite
# takes 9 minutes instead of 16, and its timing bounds are the loose ones of a test
# (a failover in under 2 s); the tight numbers are measured by `make bench`, alone.
UNIT_WORKERS ?= 2
LAB_WORKERS ?= 2
UNIT_PYTEST := -m pytest -q -p no:cacheprovider -n $(UNIT_WORKERS) --dist worksteal tests/unit
test: install deb
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(DEBIAN_VENV)/bin/python tests/debian_libs.py >/dev/null
	$(DEBIAN_VENV)/bin/python $(UNIT_PYTEST)
	$(BIN)/python $(UNIT_PYTEST) -m "not pure"
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(LAB_WORKERS) --dist loadfile tests/lab

unit-test: install
	$(BIN)/python $(UNIT_PYTEST)

lab-test: install deb
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(LAB_WORKERS) --dist loadfile tests/lab

demo: install deb
	$(BIN)/mosqit-failover lab demo

simulate: install
	@for s in $$($(BIN)/mosqit-failover simulate --list | awk '{print $$1}'); do \
		$(BIN)/mosqit-failover simulate $$s; echo; done

# ruff and mypy in a virtualenv of their own, from PyPI wheels only: no apt-get, no
# compiler (pyfuse3's build needs both; mypy takes it as an untyped import).
LINT_VENV := .venv-lint
STAMP_LINT := $(LINT_VENV)/.pip-done
$(STAMP_LINT): setup.cfg pyproject.toml
	@$(call fresh_venv,$(LINT_VENV),$(PYTHON) -m venv)
	$(LINT_VENV)/bin/pip install -q 'ruff>=0.5' 'mypy>=1.10' 'pytest>=8' 'hypothesis>=6.100' \
		'prometheus-client>=0.16' cryptography 'selenium>=4.20' 'aiosmtpd>=1.4' 'pexpect>=4.8'
	@touch $@

lint: $(STAMP_LINT)
	$(LINT_VENV)/bin/ruff check .
	$(LINT_VENV)/bin/ruff format --check .
	$(LINT_VENV)/bin/mypy

bench: install deb
	$(BIN)/python -m mosqit_failover.lab.scenarios.bench
	$(BIN)/python -m mosqit_failover.lab.scenarios.bench_sync
	$(BIN)/python -m mosqit_failover.lab.scenarios.bench_syncmode
	$(BIN)/python -m mosqit_failover.lab.scenarios.bench_multi

lab-down: install
	$(BIN)/mosqit-failover lab down

deb: $(DEB)

$(STAMP_DEB_APT): Makefile
	@mkdir -p build
	@$(call apt_install,$(DEB_APT_PACKAGES))
	@touch $@

# Out of tree: what git ignores (the venv, caches, build output) is left behind.
# lintian runs before the package lands in dist/, so a failed check leaves none there.
$(DEB): $(STAMP_DEB_APT) $(DEB_SOURCES)
	@case "$(CURDIR)" in *[[:space:]\;\$$\`\'\"]*) \
		echo "make deb: the checkout's path '$(CURDIR)' has a space or shell character;" \
			"pybuild cannot build there: clone into a plain path (e.g. /srv/mosqit-failover)" >&2; \
		exit 2;; esac
	rm -rf build/deb && mkdir -p build/deb/src dist
	rsync -a --exclude=/.git --exclude=/.venv* --exclude=/build --exclude=/dist --exclude=/.lab \
		--exclude=__pycache__ --exclude='*.egg-info' --exclude=.mypy_cache --exclude=.ruff_cache \
		--exclude=.pytest_cache --exclude=.hypothesis ./ build/deb/src/
	@# Debian's python3 only: a python earlier in PATH (pyenv, a venv) lacks Debian's modules.
	cd build/deb/src && PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -us -uc -b
	lintian --fail-on error build/deb/$(notdir $(DEB))
	mv build/deb/$(notdir $(DEB)) $@

clean:
	rm -rf $(VENV) $(DEBIAN_VENV) $(LINT_VENV) build dist *.egg-info
