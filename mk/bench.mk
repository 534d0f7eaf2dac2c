# The fan-out benchmark (issue 4): every server path under the same market and load client.
# `make bench` runs the full matrix (about 25 minutes, the storm case included) and regenerates docs/PERFORMANCE.md;
# `make bench-quick` is a smoke run of about two minutes, written under var/bench/.
# `make bench-cluster` (issues 5, 11): 1 vs 2 daphne workers behind nginx, 2 on one shared socket, and daphne alone,
# 1,000-5,000 whole-board clients (about 6 minutes); its own section of docs/PERFORMANCE.md.
# BENCH_ARGS passes options through, e.g. make bench BENCH_ARGS="--paths ours-uvicorn --clients 1000,5000".
BENCH_ARGS ?=
BENCH_CLUSTER_PATHS ?= ours-daphne,cluster-1,cluster-2,shared-2
BENCH_CLUSTER_CLIENTS ?= 1000,2000,5000

.PHONY: bench bench-quick bench-cluster bench-storm bench-system-deps

# redis-server from Debian when it is missing (as `make test` does).
bench-system-deps:
	@command -v redis-server >/dev/null || { \
		echo "installing: redis-server"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

## Run the benchmark matrix; append to benchmarks/results/ and regenerate docs/PERFORMANCE.md.
bench: bench-system-deps dev-deps
	$(PY) -m benchmarks.run $(BENCH_ARGS)

## A small matrix for a smoke run (var/bench/PERFORMANCE.md).
bench-quick: bench-system-deps dev-deps
	$(PY) -m benchmarks.run --quick $(BENCH_ARGS)

## The storm case alone (issue 17): 2,500 steady whole-board clients, then 2,500 more at once, on each path
## (about 4 minutes); its section of docs/PERFORMANCE.md, beside the steady tables.
BENCH_STORM_PATHS ?= ours-daphne,ours-uvicorn,plain-websockets,picows
BENCH_STORM_CLIENTS ?= 2500
bench-storm: bench-system-deps dev-deps
	$(PY) -m benchmarks.run --paths $(BENCH_STORM_PATHS) --clients= --watchlist-clients= --slow-clients 0 \
		--storm-clients $(BENCH_STORM_CLIENTS) $(BENCH_ARGS)

## 1 vs 2 app servers behind nginx (and without it), same run; its section of docs/PERFORMANCE.md.
# cluster-uvicorn-1,cluster-uvicorn-2 (with ours-uvicorn) run uvicorn instead: BENCH_CLUSTER_PATHS=...
bench-cluster: bench-system-deps cluster-system-deps dev-deps
	$(PY) -m benchmarks.run --paths $(BENCH_CLUSTER_PATHS) --clients $(BENCH_CLUSTER_CLIENTS) \
		--watchlist-clients= --slow-clients 0 $(BENCH_ARGS)

## The board's cost in headless Chromium: 200 rows at 10 frames/s (issue 10); figures for docs/PERFORMANCE.md.
# PAGE_BENCH_ARGS passes options through, e.g. make bench-page PAGE_BENCH_ARGS="--label after --seconds 30".
PAGE_BENCH_ARGS ?=
.PHONY: bench-page
bench-page: system-test-deps dev-deps
	$(PY) -m benchmarks.page $(PAGE_BENCH_ARGS)

## Issue 11's targets under load and past it: 5,000 clients, whole board and watchlists, the server's core
## shared with busy loops, and slow consumers; its own section of docs/PERFORMANCE.md (about 25 minutes).
BENCH_OVERLOAD_PATHS ?= ours-daphne,ours-uvicorn
BENCH_OVERLOAD_REPEAT ?= 3
.PHONY: bench-overload
bench-overload: bench-system-deps dev-deps
	$(PY) -m benchmarks.run --paths $(BENCH_OVERLOAD_PATHS) --clients 5000 --watchlist-clients 5000 \
		--overload-clients 5000 --slow-clients 5000 --repeat $(BENCH_OVERLOAD_REPEAT) $(BENCH_ARGS)
