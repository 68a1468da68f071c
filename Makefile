# Kubescribe: `make demo` runs the main job on a local cluster, `make test` runs every check.
# Both install what they need: a virtual environment, Debian packages, the pinned binaries.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN_PATH = $(shell hack/build-binaries.sh --path | paste -sd:)
LOCALCLUSTER = $(PY) -m localcluster --bin-path "$(BIN_PATH)"
DEBIAN_PACKAGES := espeak-ng sox ffmpeg chromium busybox-static
IMAGE_PACKAGES := buildah mmdebstrap
SPEAKER_ENCODER := resemblyzer==0.1.4
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The images the local cluster runs: CPU only, with the offline models the demo and the tests use.
LOCAL_IMAGE_ARGS := --build-arg GPU=false --build-arg MODELS="tiny.en base"

.PHONY: help test lint unit integration up down clean logs demo bench chaos binaries system-packages images \
	test-images image-tools local-images

help:
	@echo "make demo     bring the local cluster up and run the main job"
	@echo "make test     lint, type-check and run every test (installs what it needs)"
	@echo "make bench    measure the runner, operator, gateway, pools and model cache against baselines (bench-results/report.md)"
	@echo "make chaos    run real jobs through injected faults (bench-results/chaos.md)"
	@echo "make up       start the local cluster (.local/env has its exports)"
	@echo "make down     stop every process of the local cluster"
	@echo "make logs POD=namespace/name [CONTAINER=name]   a pod's container logs"
	@echo "make clean    stop the cluster and delete .local"
	@echo "make images   build the operator's and the runner's images with buildah (IMAGE_ARGS=\"--build-arg GPU=false\")"
	@echo "make local-images   the images the local cluster runs (CPU, models tiny.en and base); make up builds them"
	@echo "make test-images   build the images and check them in a chroot of each"

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	# The speaker encoder's weights (diarization): resemblyzer's pretrained.pt, without the PyTorch it depends on.
	$(PY) -m pip install --quiet --no-deps '$(SPEAKER_ENCODER)'
	touch $@

system-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

image-tools:
	@$(MAKE) --no-print-directory system-packages DEBIAN_PACKAGES="$(IMAGE_PACKAGES)"

binaries:
	@hack/build-binaries.sh >/dev/null

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check kubescribe tests localcluster hack/chart-values.py
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) hack/chart-values.py --check

unit: $(VENV)/.installed system-packages binaries
	$(PY) -m pytest tests/unit -q

integration: $(VENV)/.installed system-packages binaries local-images
	KUBESCRIBE_BIN_PATH="$(BIN_PATH)" $(PY) -m pytest tests/integration -q

test: lint unit integration

up: $(VENV)/.installed binaries local-images
	@$(LOCALCLUSTER) up
	@hack/install.sh

down: $(VENV)/.installed
	@$(LOCALCLUSTER) down

clean: $(VENV)/.installed
	@$(LOCALCLUSTER) clean

logs: $(VENV)/.installed
	@$(LOCALCLUSTER) logs "$(POD)" $(CONTAINER)

demo: up system-packages
	@hack/demo.sh

bench: $(VENV)/.installed system-packages binaries local-images
	KUBESCRIBE_BIN_PATH="$(BIN_PATH)" $(PY) -m bench

chaos: $(VENV)/.installed system-packages binaries local-images
	KUBESCRIBE_BIN_PATH="$(BIN_PATH)" $(PY) -m bench.chaos $(CHAOS_ARGS)

images: image-tools
	hack/build-images.sh $(IMAGE_ARGS)

local-images: image-tools
	@mkdir -p .local && echo "building the images (CPU, models tiny.en and base); log: .local/images.log"
	@hack/build-images.sh $(LOCAL_IMAGE_ARGS) >.local/images.log 2>&1 || { tail -n 40 .local/images.log; exit 1; }

test-images: $(VENV)/.installed system-packages images
	$(PY) -m pytest tests/images -q
