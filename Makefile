# Each target sets itself up on a fresh machine (a second call skips what is done).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
FMNIST  := /usr/share/datasets/fashion-mnist

.PHONY: train test test-all bench setup data chromium clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch/torchvision pinned here to the builds this project is tested with; pyproject declares ranges
	$(BIN)/pip install -q "torch==2.14.1" "torchvision==0.29.1" || $(BIN)/pip install -q "torch>=2.4" "torchvision>=0.19"
	$(BIN)/pip install -q -e ".[dev,transfer]"
	touch $(STAMP)

setup: $(STAMP)

# Fashion-MNIST: Debian's package when we can install it; otherwise vggnet downloads it on first use.
data:
	@if [ -f $(FMNIST)/train-images-idx3-ubyte.gz ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
		 (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null)) || \
		echo "note: apt could not install dataset-fashion-mnist; vggnet will try to download Fashion-MNIST"; \
	else echo "note: Fashion-MNIST not in $(FMNIST); vggnet will try to download it (or pass --data-dir)"; fi

# The report test renders HTML in headless Chromium (Debian's package), when it can be installed.
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get install -y -qq chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)) ; } || \
		echo "note: chromium not installed; the browser test will be skipped"

train: setup data
	$(BIN)/vggnet train $(ARGS)

test: setup data chromium
	$(BIN)/python -m pytest

test-all: setup data chromium
	$(BIN)/python -m pytest -m ""

bench: setup data
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs
