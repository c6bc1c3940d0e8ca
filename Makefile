# ctrack: the two commands a fresh Debian 12 machine needs, as root: `make demo`, `make test`.
# Both run the idempotent set-up first.
PY := /usr/bin/python3

.PHONY: setup demo test bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

test: setup
	@$(PY) -m pytest -q tests

bench: setup
	@$(PY) bench/fastpath.py

clean:
	@rm -rf build *.egg-info .pytest_cache
	@$(MAKE) -s -C lab clean 2>/dev/null || true
