# One command for the demo, one for the tests. Each makes its own virtual environment.
#   make demo   - the whole pipeline on the local backend (no GPU, no Globus account)
#   make test   - the test suite (fast tests + slow end-to-end tests; GPU tests skip cleanly)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha256sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: demo test test-fast bench bench-recon install browser clean gpu-check gpu-wheels

install: $(STAMP)

# torch is pinned to the CPU wheel: an unpinned torch pulls several GB of CUDA.
# ptychi is installed without its declared dependencies: they name torchvision (a CUDA
# build on PyPI that cannot import next to CPU torch) and its own dev tools; its real
# runtime dependencies come with our [cpu] extra. See README, "torch, Pty-chi and torchvision".
# ptychodus likewise (tests only: its own readers check ours, its product reader opens our
# exports): its core dependencies (pydantic-ai, mlflow-skinny, scikit-learn) are not needed by
# the modules the tests use, which import only numpy, scipy, h5py, scikit-image, pydantic.
# See docs/formats.md.
$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[cpu,dev]" "torch==2.13.0"
	$(BIN)/python -m pip install -q --no-deps "ptychi==2.2.0"
	$(BIN)/python -m pip install -q --no-deps "ptychodus==1.7.0"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# Headless Chromium for the web-page tests (Debian package; skipped where apt is absent).
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "note: chromium not installed; browser tests will be skipped"; }

test: $(STAMP) browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# DEMO_ARGS: extra `ptychoflow demo` options (.ci/run runs a reduced demo; see `ptychoflow demo --help`).
DEMO_ARGS ?=
demo: $(STAMP)
	$(BIN)/ptychoflow demo --out demo-output $(DEMO_ARGS)

# Every benchmark prints its figures (about 15 minutes in all on 2 cores); docs/benchmarks.md
# lists what each measures and the figures we recorded.
BENCHMARKS = beamline.py read_formats.py reconstruct.py flows.py "train.py throughput" "train.py warmstart" infer.py edge.py watch.py
bench: $(STAMP)
	@for b in $(BENCHMARKS); do echo "== benchmarks/$$b"; PYTHONPATH=src:edge $(BIN)/python benchmarks/$$b || exit 1; done

# The prepared GPU check (docs/benchmarks.md, "GPU check"): every GPU path measured in one
# command of at most 8 minutes, writing $(OUT)/gpu_check.json, a table and a few images.
#   make gpu-wheels          fetch the wheels the GPU machine lacks into .whl/ (needs network)
#   make gpu-check           run it (on the GPU machine: no venv there, so the system python3)
#   make gpu-check DRY=1     the CPU dry run on tiny sizes that CI runs, so the check never rots
OUT ?= gpu-check-output
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
gpu-check:
	$(GPU_PYTHON) benchmarks/gpu_check.py $(OUT) $(if $(DRY),--dry)

gpu-wheels: $(STAMP)
	$(BIN)/python benchmarks/gpu_wheels.py

# rPIE quality on two independent forward models beside plain Pty-chi, the real Siemens star,
# the defaults sweep and the demo's scans (about 1-2 hours on 2 cores); figures in docs/reconstruction.md.
bench-recon: $(STAMP)
	PYTHONPATH=src:edge $(BIN)/python benchmarks/recon_quality.py --references plain,tuned,oracle,known,shot-noise
	PYTHONPATH=src:edge $(BIN)/python benchmarks/recon_defaults.py
	PYTHONPATH=src:edge $(BIN)/python benchmarks/recon_defaults.py --momentum-only
	PYTHONPATH=src:edge $(BIN)/python benchmarks/demo_rpie.py

clean:
	rm -rf $(VENV) demo-output gpu-check-output .gpu-check .pytest_cache build dist
