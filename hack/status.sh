#!/usr/bin/env bash
# Says what of the local cluster runs: per component, whether its recorded pid
# is alive and whether its endpoint answers. Exit 0 when everything up started
# is alive and answering, 1 otherwise (3 when no cluster was ever started).
set -euo pipefail
HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/lib/load.sh
source "$HACK/lib/load.sh"

if [[ ! -f "$NODES_LIST" ]]; then
	echo "no local cluster in $BERTH_STATE (hack/up.sh starts one)"
	exit 3
fi
mapfile -t nodes < <(cluster_nodes)
bad=0

# row NAME PIDNAME ENDPOINT HEALTH_CMD...: one line per component.
row() {
	local name="$1" pidname="$2" endpoint="$3" pid="-" alive=no answers=no
	shift 3
	pid="$(recorded_pid "$pidname")" && alive=yes || pid="-"
	"$@" >/dev/null 2>&1 && answers=yes
	[[ $alive == yes && $answers == yes ]] || bad=1
	printf '%-28s %-8s %-6s %-8s %s\n' "$name" "$pid" "$alive" "$answers" "$endpoint"
}

# An optional component (Berth binaries) that up may have skipped.
optional_row() {
	local name="$1" pidname="$2" endpoint="$3"
	shift 3
	if [[ -f "$(pid_file "$pidname")" ]]; then
		row "$name" "$pidname" "$endpoint" "$@"
	else
		printf '%-28s %-8s %-6s %-8s %s\n' "$name" - - - "not started (binary missing, or stopped)"
	fi
}

printf '%-28s %-8s %-6s %-8s %s\n' COMPONENT PID ALIVE ANSWERS ENDPOINT
row etcd etcd "$ETCD_CLIENT_URL" etcd_healthy
row kube-apiserver kube-apiserver "$APISERVER_URL" apiserver_healthy
row kube-controller-manager kube-controller-manager "https://127.0.0.1:$KCM_PORT" kcm_healthy
row kube-scheduler kube-scheduler "https://127.0.0.1:$SCHEDULER_PORT" scheduler_healthy
row registry registry "http://$REGISTRY" registry_healthy
optional_row berth-controller berth-controller "$WEBHOOK_ADDR (webhook)" tcp_open "${WEBHOOK_ADDR%:*}" "${WEBHOOK_ADDR##*:}"
for node in "${nodes[@]}"; do
	row "containerd ($node)" "containerd-$node" "$(node_sock "$node")" containerd_healthy "$node"
	row "kube-proxy ($node)" "kube-proxy-$node" "iptables, healthz 127.0.0.1:10256 in the netns" kube_proxy_healthy "$node"
	if kubelet_nodes | grep -qx "$node"; then
		row "kubelet ($node)" "kubelet-$node" "https://$(node_ip "$node"):$AGENT_PORT" kubelet_healthy "$node"
	else
		optional_row "berth-agent ($node)" "berth-agent-$node" "https://$(node_ip "$node"):$AGENT_PORT" tcp_open "$(node_ip "$node")" "$AGENT_PORT"
	fi
done

if [[ -f "$UP_DONE" ]]; then
	echo "up finished at $(<"$UP_DONE"); env: $ENV_FILE"
else
	echo "up did not finish (or down ran): hack/up.sh starts fresh"
	bad=1
fi
exit "$bad"
