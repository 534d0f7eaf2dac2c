# The fan-out benchmark (issue 4): every server path under the same market and load client.
# `make bench` runs the full matrix (about 20 minutes) and regenerates docs/PERFORMANCE.md;
# `make bench-quick` is a smoke run of about two minutes, written under var/bench/.
# BENCH_ARGS passes options through, e.g. make bench BENCH_ARGS="--paths ours-uvicorn --clients 1000,5000".
BENCH_ARGS ?=

.PHONY: bench bench-quick bench-system-deps

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
