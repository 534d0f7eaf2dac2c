#!/bin/sh
# One Redis node of the set Sentinel watches (docs/DEPLOYMENT.md, "Redis with Sentinel"): choose
# its role from what the sentinels say, then become the server (exec: the pid stays the same).
#
#     REDIS_NODES=HOST:PORT,HOST:PORT TICKER_REDIS_SENTINELS=HOST:PORT,... TICKER_REDIS_MASTER=ticker \
#         node.sh N redis-server [OPTION...]
#
# N is this node's place in REDIS_NODES (from 1); the server gets --port and
# --replica-announce-ip from it (the name the sentinels know it by), and --replicaof when it is
# to replicate. The nodes keep nothing on disk, so a node that restarts is empty and must not
# come back as the master, or its replicas would copy the empty data set:
#
# - no sentinel answers (the first start of all): the first node is the master, the others
#   replicate it;
# - a sentinel names another node as the master: replicate that one;
# - they all still name this node (it died and the failover has not happened yet): wait until
#   they name another, for at most FAILOVER_WAIT seconds (15), unless they know no replica that
#   is up (there is nothing to promote: this node is the master again, empty, as a single Redis
#   that restarted would be).
set -eu

index=$1
shift
master_name=${TICKER_REDIS_MASTER:-ticker}
wait_for=${FAILOVER_WAIT:-15}
nodes=$(echo "$REDIS_NODES" | tr ',' ' ')
sentinels=$(echo "$TICKER_REDIS_SENTINELS" | tr ',' ' ')

me=$(echo "$nodes" | cut -d' ' -f"$index")
first=$(echo "$nodes" | cut -d' ' -f1)
[ -n "$me" ] || { echo "node.sh: no node $index in REDIS_NODES=$REDIS_NODES" >&2; exit 2; }

ask() {  # ask SENTINEL COMMAND...: its raw answer, nothing if it does not answer
    timeout 2 redis-cli -h "${1%:*}" -p "${1##*:}" --raw SENTINEL "$2" "$master_name" 2>/dev/null || true
}

# The master the sentinels name: another node's address, "self", or "" when none answers.
named() {
    said=""
    for sentinel in $sentinels; do
        addr=$(ask "$sentinel" get-master-addr-by-name | awk 'NR == 1 { h = $0 } NR == 2 { print h ":" $0 }')
        [ -n "$addr" ] || continue
        [ "$addr" = "$me" ] || { echo "$addr"; return; }
        said=self
    done
    echo "$said"
}

# Whether some sentinel knows a replica that is up (one a failover can promote).
replica_up() {
    for sentinel in $sentinels; do
        if ask "$sentinel" replicas | awk 'flags { if ($0 !~ /down|disconnected/) up = 1 } { flags = ($0 == "flags") }
                                          END { exit !up }'; then
            return 0
        fi
    done
    return 1
}

master=$(named)
if [ "$master" = self ] && replica_up; then
    echo "node.sh: $me was the master; waiting for the sentinels to promote a replica"
    deadline=$(( $(date +%s) + wait_for ))
    while [ "$master" = self ] && [ "$(date +%s)" -lt "$deadline" ]; do
        sleep 0.2
        master=$(named)
    done
fi
case $master in
    "") [ "$me" = "$first" ] && master=self || master=$first ;;
esac

set -- "$@" --port "${me##*:}" --replica-announce-ip "${me%:*}"
if [ "$master" = self ]; then
    echo "node.sh: $me starts as the master"
else
    echo "node.sh: $me starts as a replica of $master"
    set -- "$@" --replicaof "${master%:*}" "${master##*:}"
fi
exec "$@"
