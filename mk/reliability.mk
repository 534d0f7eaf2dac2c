# Reliability runs (issue 9), not in CI: each starts `make cluster`'s topology itself, through
# deploy/cluster.py, on free loopback ports in a scratch directory, and stops it at the end.
# `make chaos` (about 6 minutes): 500 page-like clients while an app server, the active feed or
# the Redis primary is SIGKILLed every 20 s for 5 minutes; exits non-zero when a client showed old
# prices as live, was not live again within 5 s of a fault (of the failover), saw a seq gap or an
# older epoch, or when not one feed is active at the end.
# `make soak` (about 31 minutes): 1,000 clients with churn; each app server's RSS and descriptors
# every minute, and a verdict on growth. Results go to var/reliability/ (JSON); record them in
# docs/RELIABILITY.md. CHAOS_ARGS / SOAK_ARGS pass options, e.g. make soak SOAK_ARGS="--duration 300".
CHAOS_ARGS ?=
SOAK_ARGS ?=
RELIABILITY_OUT ?= var/reliability

.PHONY: chaos soak

## Chaos: kill an app server, the feed or the Redis primary every 20 s under 500 clients; check what each client shows.
chaos: cluster-system-deps deps
	$(PY) -m benchmarks.chaos --json $(RELIABILITY_OUT)/chaos-$$(date -u +%Y%m%dT%H%M%SZ).json $(CHAOS_ARGS)

## Soak: 1,000 clients with churn for 30 minutes; RSS and descriptors of each app server every minute.
soak: cluster-system-deps deps
	$(PY) -m benchmarks.soak --json $(RELIABILITY_OUT)/soak-$$(date -u +%Y%m%dT%H%M%SZ).json $(SOAK_ARGS)
