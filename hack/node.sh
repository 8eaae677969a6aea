#!/usr/bin/env bash
# Operations on one host of the running local cluster, for tests of lost nodes
# and restarts:
#
#   hack/node.sh cut NODE           cut the host off the network (its veth goes down)
#   hack/node.sh restore NODE       reconnect it
#   hack/node.sh stop-agent NODE    stop its berth-agent (containers keep running)
#   hack/node.sh start-agent NODE   start its berth-agent again (current binary)
#   hack/node.sh stop NODE          stop the whole host: agent, kube-proxy, containers, containerd
#   hack/node.sh start NODE         start its containerd, kube-proxy and agent again
#   hack/node.sh restart-containerd NODE
#                                   stop its containerd (SIGTERM: the shims and containers keep
#                                   running, as in a runtime upgrade) and start it again
set -euo pipefail
HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/lib/load.sh
source "$HACK/lib/load.sh"

usage() { die "usage: hack/node.sh cut|restore|stop-agent|start-agent|stop|start|restart-containerd NODE"; }
(($# == 2)) || usage
op="$1" node="$2"
require_root
cluster_nodes | grep -qx -- "$node" || die "no host '$node' in the cluster (hosts: $(cluster_nodes | paste -sd' '))"

case "$op" in
cut)
	ip link set "$(node_veth "$node")" down
	log "$node cut off (its link $(node_veth "$node") is down)"
	;;
restore)
	ip link set "$(node_veth "$node")" up
	log "$node reconnected"
	;;
stop-agent)
	stop_named "berth-agent-$node" 10
	;;
start-agent)
	pid_alive "berth-agent-$node" && die "berth-agent on $node is already running"
	[[ -x "$(berth_agent_bin)" ]] || die "$(berth_agent_bin) not built"
	berth_start_agent "$node"
	berth_check_alive "$node"
	log "started berth-agent on $node (log: $(node_dir "$node")/agent.log)"
	;;
stop)
	stop_named "berth-agent-$node" 10
	stop_named "kube-proxy-$node" 10
	containerd_clean "$node"
	log "$node stopped (containers, containerd, kube-proxy, agent)"
	;;
start)
	pid_alive "containerd-$node" && die "containerd on $node is already running"
	containerd_start "$node"
	wait_for "containerd of $node" 30 "$(node_dir "$node")/containerd.log" "containerd-$node" containerd_healthy "$node"
	if ! pid_alive "kube-proxy-$node"; then
		kube_proxy_start "$node" "$("$HACK/build-kube.sh" | tail -n1)"
		wait_for "kube-proxy of $node (healthz)" 60 "$(node_dir "$node")/kube-proxy.log" "kube-proxy-$node" kube_proxy_healthy "$node"
	fi
	if [[ -x "$(berth_agent_bin)" && "${BERTH_NO_COMPONENTS:-0}" != 1 ]]; then
		berth_start_agent "$node"
		berth_check_alive "$node"
	fi
	log "$node started"
	;;
restart-containerd)
	stop_named "containerd-$node" 10
	containerd_start "$node"
	wait_for "containerd of $node" 30 "$(node_dir "$node")/containerd.log" "containerd-$node" containerd_healthy "$node"
	log "containerd of $node restarted (its containers kept running)"
	;;
*) usage ;;
esac
