# The two commands a newcomer needs: `make demo` and `make test`. Both install what they need.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-fast bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/firebreak demo

test: setup
	@bash scripts/test.sh

test-fast: setup
	$(PY) -m pytest -q -m "not lab"

bench: setup
	$(PY) bench/check_scale.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
