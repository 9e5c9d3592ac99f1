# Two commands on a fresh machine (README, "Quick start"):
#   make demo    a virtualenv, torch, this package, then the offline demo workflow
#   make test    the same environment, then the test suite as CI runs it
# Variables (make test VENV=.venv-ci4 EXTRAS=tests,trf,peers OTHER=.venv-ci):
#   VENV        the virtualenv folder, created with python3 -m venv if absent
#   EXTRAS      the extras installed with this package (pip install -e ".[EXTRAS]")
#   TORCH_SPEC  what pip installs first for torch; torch==2.13.0 is a local wheel on
#               this project's machines; elsewhere e.g.
#               TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"
#   OTHER       a second virtualenv with the other transformers major: the tests
#               then load pipelines saved there (SPACY_HF_TAGGER_OTHER_PYTHON)

VENV ?= .venv
EXTRAS ?= tests
TORCH_SPEC ?= torch==2.13.0
OTHER ?=

PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# What the stamp records: a change of extras or torch installs again.
INSTALLED_WITH := extras=$(EXTRAS) torch=$(TORCH_SPEC)
# Commands run as in the activated virtualenv (its bin/ first on PATH).
RUN := PATH="$(abspath $(VENV))/bin:$$PATH"
TEST_RUN := $(RUN)$(if $(OTHER), SPACY_HF_TAGGER_OTHER_PYTHON="$(abspath $(OTHER))/bin/python")

.PHONY: demo test lint env FORCE

demo: $(STAMP)
	$(RUN) $(PYTHON) -m weasel run demo

test: $(STAMP)
ifneq ($(OTHER),)
	@test -x "$(abspath $(OTHER))/bin/python" || { echo "OTHER=$(OTHER) has no bin/python: build it first (make env VENV=$(OTHER) EXTRAS=...)" >&2; exit 1; }
endif
	$(TEST_RUN) $(PYTHON) -m pytest -q
	$(TEST_RUN) $(PYTHON) -m pytest -q -m precision --auto-precision bfloat16
	$(TEST_RUN) $(PYTHON) -m pytest -q -m precision --auto-precision float32

lint: $(STAMP)
	$(RUN) $(PYTHON) -m ruff check .

env: $(STAMP)

$(PYTHON):
	python3 -m venv $(VENV)

ifneq "$(shell cat $(STAMP) 2>/dev/null)" "$(INSTALLED_WITH)"
$(STAMP): FORCE
endif

# The CPU torch first, so no dependency pulls a multi-GB CUDA build of torch.
$(STAMP): pyproject.toml | $(PYTHON)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install $(TORCH_SPEC)
	$(PYTHON) -m pip install -e ".[$(EXTRAS)]"
	printf '%s\n' '$(INSTALLED_WITH)' > $@

FORCE:
