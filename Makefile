# edgeml.fleet — `make demo` and `make test` set up everything they need themselves.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
PY        := $(VENV)/bin/python
BIN       := $(VENV)/bin
COLL_LINK := .collections/ansible_collections/edgeml/fleet
IMPORTER  := .venv-importer
VERSION   := $(shell sed -n 's/^version: *//p' galaxy.yml)
SANITY    := build/sanity/ansible_collections/edgeml/fleet

export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(BIN):$(PATH)
export EDGEML_LAB_STATE := $(CURDIR)/lab/.state
export PY_COLORS := 0
export ANSIBLE_FORCE_COLOR := 0

.PHONY: help venv demo test soak lint sanity unit chromium molecule integration publish-check readmes lab-up lab-down lab-status build clean ee

help:
	@echo "make demo   bring the lab up and run edgeml.fleet.site against it"
	@echo "make test   lint, sanity, unit, integration and molecule tests"
	@echo "make soak   the long trials: 50 kill -9 crash trials, big property-based budgets"
	@echo "make ee     build the execution environment image and run the main job in it"
	@echo "make lab-up | lab-down | lab-status | build | publish-check | readmes | clean"

# --- environment --------------------------------------------------------------------------
$(VENV)/.installed: requirements.txt requirements-lab.txt requirements-test.txt server/pyproject.toml
	@python3 -m venv --help >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq python3-venv; }
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-test.txt
	@touch $@

$(COLL_LINK):
	@mkdir -p $(dir $@) && ln -sfn ../../.. $@

venv: $(VENV)/.installed $(COLL_LINK)

# --- the lab ------------------------------------------------------------------------------
lab-up: venv
	$(PY) -m lab up

lab-down: venv
	$(PY) -m lab down

lab-status: venv
	$(PY) -m lab status

# --- demo ---------------------------------------------------------------------------------
demo: lab-up
	$(BIN)/ansible-playbook edgeml.fleet.site

# --- tests --------------------------------------------------------------------------------
# The lab comes up in the background while lint, sanity and the unit tests run (minutes saved
# on a fresh machine); the integration tests and molecule wait for it.
test: venv chromium
	@start=$$(date +%s); mkdir -p build; \
	echo "make test: bringing the lab up in the background (log: build/lab-up.log)"; \
	$(PY) -m lab up > build/lab-up.log 2>&1 & lab=$$!; \
	$(MAKE) --no-print-directory lint sanity unit publish-check; checks=$$?; \
	wait $$lab || { cat build/lab-up.log; echo "make test: the lab did not come up (above)"; exit 1; }; \
	test $$checks -eq 0 && $(MAKE) --no-print-directory integration molecule && \
	echo "make test: all suites passed in $$(( $$(date +%s) - start )) s"

lint: venv
	$(BIN)/ansible-lint --profile production

unit: venv chromium
	$(BIN)/pytest -q --durations=10 tests/unit server/tests

# Headless Chromium renders the drift report's HTML page in a unit test (Debian's package).
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; }

integration: lab-up
	$(BIN)/pytest -q --durations=40 tests/integration

molecule: venv
	cd $(CURDIR) && $(BIN)/molecule test --all

# ansible-test wants the collection at ansible_collections/edgeml/fleet: sanity runs on a copy
# of the files git knows, so nothing untracked (venv, lab state) is scanned.
sanity: venv
	@rm -rf build/sanity && mkdir -p $(SANITY)
	@git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t $(SANITY)
	@cd $(SANITY) && git init -q && git add -A
	$(PY) tests/sanity/seed_get_pip.py
	cd $(SANITY) && $(CURDIR)/$(BIN)/ansible-test sanity --venv --python 3.11 --color no

# The long versions of trials that make test runs small (not part of make test).
soak: lab-up
	EDGEML_CRASH_TRIALS=50 EDGEML_HYPOTHESIS_EXAMPLES=5000 EDGEML_SOAK=1 \
	  $(BIN)/pytest -q tests/integration/test_store_crash.py tests/unit/plugins/module_utils \
	  tests/integration/test_bundle.py::test_bootstrap_from_a_laptop_with_the_bundle_in_chunks

# The execution environment image (from the lab's debootstrap image; minutes) and the test that
# runs edgeml.fleet.site in it with ansible-runner. make test skips that test unless the image is built.
ee: lab-up build
	$(PY) -m lab ee
	$(BIN)/pytest -q tests/integration/test_execution_environment.py

build: venv
	$(BIN)/ansible-galaxy collection build --force --output-path build/

# What Galaxy and Automation Hub run on upload, on the built tarball (in its own venv: it pins
# its own ansible-core and ansible-lint). ansible-test and ansible-lint are off here because
# make sanity and make lint run them already.
$(IMPORTER)/.installed: requirements-importer.txt
	@test -x $(IMPORTER)/bin/python || python3 -m venv $(IMPORTER)
	$(IMPORTER)/bin/pip install -q -r requirements-importer.txt
	@touch $@

publish-check: build $(IMPORTER)/.installed
	PATH=$(CURDIR)/$(IMPORTER)/bin:$$PATH GALAXY_IMPORTER_CONFIG=$(CURDIR)/tests/galaxy-importer.cfg \
	  $(IMPORTER)/bin/python -m galaxy_importer.main build/edgeml-fleet-$(VERSION).tar.gz

# Role READMEs are generated from meta/argument_specs.yml (a unit test fails when they drift).
readmes: venv
	$(PY) hacking/role_readmes.py

clean:
	rm -rf build .collections tests/output $(IMPORTER)
