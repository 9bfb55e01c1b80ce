# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test bench-quick app clean

$(VENV)/.installed-base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed-base
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# Debian's Chromium and its driver, for the app's real-browser test (never downloaded by a test tool).
/usr/bin/chromedriver:
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver

# A virtual X display and the xcb and GL libraries Qt needs there, for the napari plugin's tests.
/usr/bin/Xvfb:
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq xvfb libgl1 libegl1 libgl1-mesa-dri libxkbcommon-x11-0 \
		libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libfontconfig1 libdbus-1-3

demo: $(VENV)/.installed-base
	$(VENV)/bin/gpuseg demo

test: $(VENV)/.installed-test /usr/bin/chromedriver /usr/bin/Xvfb
	$(PY) -m pytest -q

bench-quick: $(VENV)/.installed-test
	$(PY) -m benchmarks --quick --out benchmarks/results/_scratch

app: $(VENV)/.installed-base
	$(PY) -m pip install --quiet -e '.[app]'
	$(VENV)/bin/gpuseg app

clean:
	rm -rf $(VENV) gpuseg-demo .pytest_cache
