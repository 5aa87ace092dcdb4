# tfscale: `make demo` and `make test` are the two commands; both install what they need first.
# The container images set TFSCALE_VENV=/opt/venv; install.sh and make must agree on it.
VENV ?= $(or $(TFSCALE_VENV),.venv)
export TFSCALE_VENV := $(abspath $(VENV))
NP ?= 2
export PATH := $(abspath $(VENV))/bin:$(PATH)
# Open MPI refuses to run as root without these (containers and CI run as root).
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1

.PHONY: setup demo study test clean

setup:
	bash scripts/install.sh

demo: setup
	NP=$(NP) bash scripts/demo.sh

# Branched collapses (the Collapsed Ensemble) vs sequential collapses vs one run, at the same images seen,
# 5 seeds on the distorted digits (≈ 26 min on 2 cores).
study: setup
	$(VENV)/bin/python -m tfscale_tools.ensemble_study

test:
	TFSCALE_EXTRAS=test bash scripts/install.sh
	$(VENV)/bin/python -m pytest tests

clean:
	rm -rf runs/demo runs/ensemble_study data/digits data/digits_distorted
