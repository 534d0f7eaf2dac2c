# The scaled topology on this machine, without Docker (deploy/cluster.py, docs/DEPLOYMENT.md):
# redis-server, $(WORKERS) app servers, runfeed + a standby, nginx on http://$(CLUSTER_LISTEN)/.
WORKERS ?= 2
CLUSTER_LISTEN ?= 127.0.0.1:8080
# App servers on unix sockets under .run/sockets/ (0), or on loopback ports N, N+1, ...
CLUSTER_APP_PORT ?= 0
CLUSTER_REDIS_PORT ?= 6380

.PHONY: cluster cluster-stop cluster-restart cluster-system-deps

# Debian packages the cluster runs: nginx and redis-server (installed as root when missing).
cluster-system-deps:
	@missing=""; \
	{ command -v nginx || test -x /usr/sbin/nginx; } >/dev/null || missing="$$missing nginx"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

## Run the cluster in the foreground on http://$(CLUSTER_LISTEN)/; Ctrl-C (or `make cluster-stop`) stops it.
# The runner migrates, runs setup_demo and collectstatic itself (DATABASE_URL as `make run`).
cluster: cluster-system-deps deps
	exec $(PY) -m deploy.cluster start --workers $(WORKERS) --listen $(CLUSTER_LISTEN) \
		--app-port $(CLUSTER_APP_PORT) --redis-port $(CLUSTER_REDIS_PORT)

## Stop a running cluster (what it started, by pid; nothing else).
cluster-stop:
	$(PY) -m deploy.cluster stop

## Restart the app servers one at a time, each healthy before the next.
cluster-restart:
	$(PY) -m deploy.cluster restart
