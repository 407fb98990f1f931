#!/usr/bin/env bash
# Start REPLICAS tilefn servers on ports PORT, PORT+1, ... that share one store and one results
# folder, print the one target that names them all, and drain them all on Ctrl-C or SIGTERM.
# `make replicas` calls it; docs/DEPLOY.md, "Replicas sharing a store", explains what is shared.
set -euo pipefail
: "${PY:?}" "${HOST:?}" "${PORT:?}" "${REPLICAS:?}" "${DATA:?}" "${STORE:?}" "${SANDBOX:?}"

pids=()
stop() {
    trap - INT TERM
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
}
trap 'stop; exit 0' INT TERM

targets=()
for ((i = 0; i < REPLICAS; i++)); do
    port=$((PORT + i))
    "$PY" -m tilefn.server --host "$HOST" --port "$port" --data-root "$DATA" --store "$STORE" \
        --sandbox "$SANDBOX" --metrics-port 0 &
    pids+=("$!")
    targets+=("$HOST:$port")
done
for ((i = 0; i < REPLICAS; i++)); do  # every replica listening before the target is shown
    until (exec 3<>"/dev/tcp/$HOST/$((PORT + i))") 2>/dev/null; do
        kill -0 "${pids[$i]}" 2>/dev/null || { echo "replica $i did not start" >&2; stop; exit 1; }
        sleep 0.2
    done
done
target="ipv4:$(IFS=,; echo "${targets[*]}")"
echo "replicas target: $target"
echo "  $PY -c 'from tilefn.client import Client; c = Client(\"$target\");" \
    "print(sorted({c.server_info()[\"replica\"] for _ in range(12)}))'"
wait -n "${pids[@]}" || true  # one replica ended by itself: stop the rest
stop
