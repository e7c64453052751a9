# Two commands: `make run` and `make test`. Everything else builds on .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime
STAMP := $(VENV)/.installed

.PHONY: run test lint fmt check schema venv bench bench-oneshot bench-soak bench-extract bench-match bench-story bench-chaos clean

# `make run` installs what the daemon needs, nothing more; `make test` adds the test tools.
$(RUNTIME): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(RUNTIME)
	$(BIN)/monitor -c feeds.yaml run

check: $(RUNTIME)
	$(BIN)/monitor -c feeds.yaml check

# Write the JSON Schema of feeds.yaml again (after a change of the config's keys).
schema: $(RUNTIME)
	$(BIN)/monitor schema > monitor/feeds.schema.json.tmp && mv monitor/feeds.schema.json.tmp monitor/feeds.schema.json

lint: $(STAMP)
	$(BIN)/ruff format --check monitor tests benchmarks
	$(BIN)/ruff check monitor tests benchmarks
	$(BIN)/mypy monitor

fmt: $(STAMP)
	$(BIN)/ruff format monitor tests benchmarks
	$(BIN)/ruff check --fix monitor tests benchmarks

test: lint
	$(BIN)/pytest -q

bench-match: $(STAMP)
	$(BIN)/python benchmarks/bench_match.py

# Near-duplicate stories (issue 11): precision/recall on the labelled pairs, cost at 10,000
# stories in the window. STORY_ARGS='--quick' skips the pessimistic window.
bench-story: $(STAMP)
	$(BIN)/python benchmarks/bench_story.py $(STORY_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

# Article extraction benchmark: ours, then trafilatura (in its own venv, never our
# dependency) in the same run. Needs ../shared/extraction-bench; skipped without it.
BENCH_DATA := $(abspath ../shared/extraction-bench)
PEERS := $(CURDIR)/benchmarks/.venv-peers
PEERS_EXTRACT := $(PEERS)/.extract-installed
$(PEERS_EXTRACT):
	[ -x $(PEERS)/bin/python ] || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/pip install --quiet 'trafilatura==2.3.1' lxml_html_clean
	touch $@

bench-extract: $(STAMP)
	@if [ ! -f $(BENCH_DATA)/evaluate.py ]; then \
		echo "bench-extract: $(BENCH_DATA) not found, skipped"; exit 0; fi; \
	$(MAKE) --no-print-directory $(PEERS_EXTRACT) && \
	cd $(BENCH_DATA) && \
	$(CURDIR)/$(BIN)/python evaluate.py $(CURDIR)/benchmarks/bench_extract.py:extract \
		--bootstrap 0 --name ours | tail -2 && \
	$(PEERS)/bin/python evaluate.py $(CURDIR)/benchmarks/bench_extract.py:trafilatura_extract \
		--bootstrap 0 --name trafilatura | tail -2

# Poll-round benchmark (issue 6): a local feed farm, our real poll path, and the peers
# (rss2email, the sequential feedparser loop) from their own venv, never our dependency.
# reader 3.26 needs sgmllib3k beside feedparser 6.0.14 to import (FACTS).
PEER_PKGS := 'rss2email==3.14' 'reader==3.26' 'sgmllib3k==1.0.0' 'feedparser==6.0.14' \
	'aiosmtpd==1.4.6' 'matplotlib>=3.8'
PEERS_ROUND := $(PEERS)/.round2-installed
$(PEERS_ROUND):
	[ -x $(PEERS)/bin/python ] || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/pip install --quiet $(PEER_PKGS)
	touch $@

bench: $(STAMP) $(PEERS_ROUND)
	$(BIN)/python benchmarks/bench_round.py $(BENCH_ARGS)

# The one-shot path (issue 12 part 6): `monitor poll`, rss2email and reader as whole
# processes on the same farm. ONESHOT_ARGS='--no-peers' for ours alone.
bench-oneshot: $(STAMP) $(PEERS_ROUND)
	$(BIN)/python benchmarks/bench_oneshot.py $(ONESHOT_ARGS)

# Soak: the daemon (App + the real scheduler) on 10,000 feeds; SOAK_ARGS='--duration 90' for short.
bench-soak: $(STAMP) $(PEERS_ROUND)
	$(BIN)/python benchmarks/soak.py $(SOAK_ARGS)

# Chaos (issue 10): kill -9 of the daemon and its workers while feeds publish and
# notifiers flap; every alert must arrive. CHAOS_ARGS='--kills 200 --seed 1'.
bench-chaos: $(STAMP)
	$(BIN)/python benchmarks/chaos.py $(CHAOS_ARGS)
