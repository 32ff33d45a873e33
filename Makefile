# The README's two commands. Each does all set-up on a fresh machine: a .venv with torch
# (the CPU build here; PyPI's default CUDA build where `nvidia-smi` finds a GPU), the package
# with every environment backend, and the native extension when cuda_ext/ has sources.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml setup.py | cksum | cut -d' ' -f1)

.PHONY: install demo test bench bench-peers docs docs-serve clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.py $(wildcard cuda_ext/*)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q --no-build-isolation -e ".[all,test,bench,ray,slurm,docs]"
	rm -f $(VENV)/.installed-*; touch $@

# Trains a small DQN on CartPole-v1 (60k steps, a few minutes), evaluates it, prints the tables.
demo: install
	rm -rf runs/demo-cartpole
	$(BIN)/rlsuite train dqn-classic --env CartPole-v1 --seed 1 --run-dir runs/demo-cartpole
	$(BIN)/rlsuite eval runs/demo-cartpole --episodes 20

test: install
	$(BIN)/python -m pytest tests -p no:cacheprovider --durations=15

bench: install
	$(BIN)/rlsuite bench envs
	$(BIN)/rlsuite bench replay
	$(BIN)/rlsuite bench dqn

# Peer replay buffers side by side (install them with --no-deps so pip never replaces torch).
bench-peers: install
	$(BIN)/python -m rlsuite.bench.replay_peers

# The documentation site (mkdocs.yml, docs/): --strict turns a broken link, a missing anchor or page,
# or a failing docstring reference into an error. The variables silence MkDocs-2 banners.
MKDOCS := NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs

docs: install
	$(MKDOCS) build --strict --site-dir site

docs-serve: install
	$(MKDOCS) serve

clean:
	rm -rf build *.egg-info rlsuite/_C*.so
