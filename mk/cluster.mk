# The scaled topology on this machine, without Docker (deploy/cluster.py, docs/DEPLOYMENT.md):
# Redis with Sentinel (a primary, a replica, three sentinels), $(WORKERS) app servers, runfeed + a
# standby, nginx on http://$(CLUSTER_LISTEN)/, all under one supervisord
# (deploy/supervisord/supervisord.conf.in, rendered into .run/).
WORKERS ?= 2
CLUSTER_LISTEN ?= 127.0.0.1:8080
# App servers on unix sockets under .run/sockets/ (0), or on loopback ports N, N+1, ...
CLUSTER_APP_PORT ?= 0
# Redis: the primary's and the replica's ports, then the three sentinels' (docs/DEPLOYMENT.md).
CLUSTER_REDIS_PORTS ?= 6380,6381
CLUSTER_SENTINEL_PORTS ?= 26380,26381,26382
# https beside http, with a self-signed certificate made under .run/tls/ ('' for none).
CLUSTER_HTTPS_LISTEN ?= 127.0.0.1:8443
# nginx's per-address limits (0: off, e.g. for a load test from this machine).
CLUSTER_LIMIT_WS ?= 200
CLUSTER_LIMIT_REQ ?= 20
CLUSTER_LIMIT_BURST ?= 100

.PHONY: cluster cluster-stop cluster-restart cluster-system-deps tls-cert

# Debian packages the cluster runs: nginx, redis-server and openssl (installed as root when missing).
cluster-system-deps:
	@missing=""; \
	{ command -v nginx || test -x /usr/sbin/nginx; } >/dev/null || missing="$$missing nginx"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

## Run the cluster in the foreground on http://$(CLUSTER_LISTEN)/ and https://$(CLUSTER_HTTPS_LISTEN)/; Ctrl-C (or `make cluster-stop`) stops it.
# The runner migrates, runs setup_demo and collectstatic itself (DATABASE_URL as `make run`).
cluster: cluster-system-deps deps
	exec $(PY) -m deploy.cluster start --workers $(WORKERS) --listen $(CLUSTER_LISTEN) \
		--app-port $(CLUSTER_APP_PORT) --redis-ports $(CLUSTER_REDIS_PORTS) --sentinel-ports $(CLUSTER_SENTINEL_PORTS) \
		--https-listen '$(CLUSTER_HTTPS_LISTEN)' \
		--limit-ws $(CLUSTER_LIMIT_WS) --limit-req $(CLUSTER_LIMIT_REQ) --limit-burst $(CLUSTER_LIMIT_BURST)

## Stop a running cluster: SIGTERM to its supervisord (by pid), which stops everything it started.
cluster-stop:
	$(PY) -m deploy.cluster stop

## Restart the app servers one at a time (supervisorctl restart), each healthy before the next.
cluster-restart:
	$(PY) -m deploy.cluster restart

## A self-signed certificate for local use in .run/tls/ (fullchain.pem, privkey.pem; docker-compose.yml's default).
tls-cert: cluster-system-deps deps
	$(PY) -m deploy.cluster tls-cert
