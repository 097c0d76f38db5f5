# Two entry points: `make demo` and `make test`. Both create .venv on first use and reuse it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL := 2
# mkdocs-material prints a banner about its successor on every build; the build is what we read.
export NO_MKDOCS_2_WARNING := 1

.PHONY: demo test test-all bench compare docs release-check clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# A stamp per extra, so that a change to pyproject.toml or the version reinstalls and nothing
# else does (the version lives in tfprune/__init__.py, which the metadata reads).
$(VENV)/.installed-%: pyproject.toml setup.py tfprune/__init__.py | $(PY)
	$(PY) -m pip install -q -e ".[$*]"
	touch $@

$(VENV)/.installed-core: pyproject.toml setup.py tfprune/__init__.py | $(PY)
	$(PY) -m pip install -q -e .
	touch $@

demo: $(VENV)/.installed-core
	$(VENV)/bin/tfprune demo --out out

# The linter and formatter run first, then the documentation build: CI holds the style and
# the docs (a broken link, a missing page, an API entry that does not resolve) as it holds
# the tests.
test: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mkdocs build --strict --site-dir site
	$(PY) -m pytest -q -n 2 --dist loadgroup

# The documentation site (mkdocs.yml), built into site/; `mkdocs serve` shows it while editing.
docs: $(VENV)/.installed-docs
	$(VENV)/bin/mkdocs build --strict --site-dir site

# The release: wheel and sdist, checked by twine, installed into a fresh virtualenv where the
# README's quick start runs against the installed package.
RELEASE_VENV := build/release-venv
release-check: $(VENV)/.installed-release
	rm -rf dist $(RELEASE_VENV)
	$(PY) -m build --outdir dist .
	$(PY) -m twine check --strict dist/*
	$(PYTHON) -m venv $(RELEASE_VENV)
	$(RELEASE_VENV)/bin/pip install -q dist/*.whl
	cd build && $(CURDIR)/$(RELEASE_VENV)/bin/python $(CURDIR)/tools/quickstart_check.py

# Everything, the slow tests and the PyTorch backend's (the torch extra) included.
test-all: $(VENV)/.installed-test,torch
	$(PY) -m pytest -q -m ""

bench: $(VENV)/.installed-bench
	$(PY) tools/bench_fit_overhead.py
	$(PY) tools/bench_ranking.py
	$(PY) tools/bench_shrink.py --models mobilenetv2 resnet50 --round-to 32
	$(PY) tools/bench_shrink.py --models convnext_tiny --round-to 32
	$(PY) tools/bench_shrink.py --models plain_cnn --round-to 32 --fine conv3=8
	$(PY) tools/bench_shrink.py --models vit_style keras_hub_resnet --out out/bench13
	$(PY) tools/bench_shrink.py --models keras_hub_bert keras_hub_gpt2 keras_hub_efficientnet keras_hub_vit --out out/bench14
	$(PY) tools/bench_shrink.py --models keras_hub_bert_classifier keras_hub_bert --round-to auto --out out/bench_bertcls
	$(PY) tools/bench_shrink.py --models keras_hub_bert keras_hub_gpt2 keras_hub_vit --round-to auto --unfold --out out/bench_unfold
	$(PY) tools/bench_shrink.py --models convnext_tiny --round-to auto --rounds 7 --runs 20 --out out/bench_cx
	$(PY) tools/bench_depthwise.py
	$(PY) tools/bench_custom_layers.py
	$(PY) tools/bench_recalibration.py
	$(PY) tools/bench_llm.py
	$(PY) tools/bench_transformer_accuracy.py
	$(PY) tools/bench_adversarial.py
	$(PY) tools/bench_criteria.py
	$(PY) tools/bench_sparse_breakeven.py
	$(PY) tools/bench_deploy.py
	$(PY) tools/bench_procedures.py
	$(PY) tools/bench_distillation.py
	$(PY) tools/bench_recurrent.py
	$(PY) tools/bench_latency_target.py
	$(PY) tools/bench_value.py --tasks digits --json out/bench_value_digits.json --plot docs/bench_value_digits.png
	$(PY) tools/bench_value.py --tasks mnist1d --untrained --json out/bench_value_mnist1d.json --plot docs/bench_value_mnist1d.png
	$(PY) tools/bench_value.py --tasks digits --untrained --variants defaults dsp dsp_grouped --json out/bench_value_dsp.json --plot docs/bench_value_dsp.png

clean:
	rm -rf $(VENV) out build dist site *.egg-info
