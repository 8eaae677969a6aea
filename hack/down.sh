#!/usr/bin/env bash
# Stops everything hack/up.sh started, by recorded pid, and removes what it set
# up on the machine: containers (and their shims and mounts), containerd, the
# Berth processes, the control plane, the hosts' network namespaces, veths,
# routes, the bridge and its iptables guard. Idempotent; safe after a killed up.
#
#   hack/down.sh            keep $BERTH_STATE files (logs, certs) for reading
#   hack/down.sh --purge    also remove $BERTH_STATE
set -euo pipefail
HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/lib/load.sh
source "$HACK/lib/load.sh"

purge=0
case "${1:-}" in
"") ;;
--purge) purge=1 ;;
*) die "unknown argument '$1' (usage: hack/down.sh [--purge])" ;;
esac
require_root
cluster_lock

# Recorded nodes, plus any berth-<n> netns/veth a killed up left unrecorded.
mapfile -t nodes < <({
	cluster_nodes
	net_known_hosts
} | sort -u)

rm -f "$UP_DONE"
for node in $(kubelet_nodes); do kubelet_stop "$node"; done
for node in "${nodes[@]}"; do stop_named "kube-proxy-$node" 10; done
berth_stop_all "${nodes[@]}"
for node in "${nodes[@]}"; do
	containerd_clean "$node"
done
for ((i = ${#CONTROL_PLANE[@]} - 1; i >= 0; i--)); do
	stop_named "${CONTROL_PLANE[i]}" 15
done
# Anything else with a pid file (a component added later, a renamed one).
if [[ -d "$BERTH_STATE/pids" ]]; then
	for f in "$BERTH_STATE"/pids/*.pid; do
		[[ -e "$f" ]] || continue
		stop_named "$(basename "$f" .pid)" 10
	done
fi

for node in "${nodes[@]}"; do
	unmount_under "$(node_dir "$node")"
	net_host_down "$node"
done
net_bridge_down
unmount_under "$BERTH_STATE"

if ((purge)); then
	rm -rf "$BERTH_STATE"
	log "local cluster down; removed $BERTH_STATE"
else
	log "local cluster down; logs and certificates kept in $BERTH_STATE (--purge removes them)"
fi
