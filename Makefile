# vs-espcn: the two commands of the README.
#   make demo   set up .venv (Python >= 3.12), install, configure vspipe, upscale a bundled photo
#   make test   same setup, then the test suite
# Override the interpreter used to create .venv with `make demo PYTHON=/path/to/python3.12`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# Everything that goes into the installed package: a change re-runs `pip install .`.
SOURCES := $(shell find vs_espcn trainer -type f \( -name '*.py' -o -name '*.c' -o -name '*.onnx' \
             -o -name '*.md' \) -not -path '*/__pycache__/*' 2>/dev/null) setup.py pyproject.toml

.PHONY: demo test install clean-venv
.DELETE_ON_ERROR:

demo: $(VENV)/.installed
	$(PY) -m vs_espcn demo

test: $(VENV)/.installed
	$(PY) -m pytest -q tests

install: $(VENV)/.installed

# A Python >= 3.12: $PYTHON, else python3.12/python3.13/python3 on PATH, else the oldest pyenv 3.12+.
define FIND_PYTHON
ok() { "$$@" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; }; \
if [ -n "$(PYTHON)" ]; then \
  ok $(PYTHON) && { echo "$(PYTHON)"; exit 0; }; \
  echo "PYTHON=$(PYTHON) is not a working Python >= 3.12" >&2; exit 1; \
fi; \
for c in python3.12 python3.13 python3; do ok $$c && { command -v $$c; exit 0; }; done; \
if command -v pyenv >/dev/null 2>&1; then \
  for v in $$(pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[2-9]|[2-9][0-9])(\.[0-9]+)*$$' | sort -V); do \
    c="$$(pyenv root)/versions/$$v/bin/python3"; ok "$$c" && { echo "$$c"; exit 0; }; \
  done; \
fi; \
echo "no Python >= 3.12 found; install one or run make with PYTHON=/path/to/python3.12" >&2; exit 1
endef

$(PY):
	@py="$$( $(FIND_PYTHON) )" && echo "creating $(VENV) with $$py" >&2 && "$$py" -m venv $(VENV)

# Non-editable install (an editable one does not put the shim in VapourSynth's plugin folder),
# then `vapoursynth config` so vspipe finds this Python.
# build/ is dropped first so a deleted module cannot linger in the wheel.
$(VENV)/.installed: $(PY) $(SOURCES)
	rm -rf build
	$(PY) -m pip install --quiet ".[dev]"
	$(VENV)/bin/vapoursynth config >&2
	@touch $@

clean-venv:
	rm -rf $(VENV)
