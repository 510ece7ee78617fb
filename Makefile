PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
JB_ARGS ?=

.PHONY: install book assets test clean

# The built book loads no script from a CDN: MathJax comes from a Python package
# (requirements.txt), require.js and the ipywidgets HTML manager from the npm
# packages below, unpacked into _build/assets and served from the book's _static.
ASSETS       := _build/assets
REQUIREJS    := requirejs@2.3.7
HTML_MANAGER := @jupyter-widgets/html-manager@1.0.15

# Everything the book and the tests need, into .venv (repeated only when the dependency lists change).
install: $(STAMP) $(ASSETS)/.installed

book: $(STAMP) $(ASSETS)/.installed
	$(BIN)/jupyter-book build . $(JB_ARGS)

assets: $(ASSETS)/.installed

$(ASSETS)/.installed: Makefile
	@command -v npm >/dev/null || { echo "npm not found: install Node.js and npm to fetch the book's widget scripts"; exit 1; }
	rm -rf $(ASSETS) && mkdir -p $(ASSETS)/npm $(ASSETS)/html-manager
	cd $(ASSETS)/npm && npm pack --silent --loglevel=error $(REQUIREJS) $(HTML_MANAGER) >/dev/null
	tar -xzf $(ASSETS)/npm/requirejs-*.tgz -C $(ASSETS) --strip-components=1 package/require.js
	tar -xzf $(ASSETS)/npm/jupyter-widgets-html-manager-*.tgz -C $(ASSETS)/html-manager --strip-components=2 \
	  --wildcards 'package/dist/embed-amd.js' 'package/dist/*.LICENSE.txt' 'package/dist/*.woff*' \
	  'package/dist/*.ttf' 'package/dist/*.eot' 'package/dist/*.svg'
	rm -rf $(ASSETS)/npm
	touch $@

# The engine's tests and every lab notebook (nbmake), in parallel; the options are in pyproject.toml.
test: $(STAMP)
	$(BIN)/python -m pytest -n auto $(PYTEST_ARGS)

clean:
	rm -rf _build

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependency lists change.
$(STAMP): requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt
	touch $@
