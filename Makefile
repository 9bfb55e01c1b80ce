# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test bench-quick app apoc clean system-packages

$(VENV)/.installed-base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed-base
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# Debian's packages the tests need: Chromium and its driver for the app's real-browser test (never
# downloaded by a test tool); a virtual X display and the xcb and GL libraries Qt needs there, for the
# napari plugin's tests. Checked on every run (dpkg is quick), installed when any is missing.
SYSTEM_PACKAGES := chromium chromium-driver xvfb libgl1 libegl1 libgl1-mesa-dri libxkbcommon-x11-0 \
	libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libfontconfig1 libdbus-1-3

# Install those of the Debian packages $(1) that dpkg does not list.
apt-ensure = dpkg -s $(1) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(1); }

system-packages:
	@$(call apt-ensure,$(SYSTEM_PACKAGES))

demo: $(VENV)/.installed-base
	$(VENV)/bin/gpuseg demo

test: $(VENV)/.installed-test system-packages
	$(PY) -m pytest -q

bench-quick: $(VENV)/.installed-test
	$(PY) -m benchmarks --quick --out benchmarks/results/_scratch

app: $(VENV)/.installed-base
	$(PY) -m pip install --quiet -e '.[app]'
	$(VENV)/bin/gpuseg app

# APOC, the benchmarks' peer runner apoc-cpu (in the standard scenario's runners, up to 512x512), with pocl, Debian's
# OpenCL driver for the CPU. Neither demo nor test needs it: without it apoc-cpu is skipped, saying why.
apoc: $(VENV)/.installed-base
	@$(call apt-ensure,pocl-opencl-icd)
	$(PY) -m pip install --quiet -e '.[bench,apoc]'

clean:
	rm -rf $(VENV) gpuseg-demo .pytest_cache
