#!/usr/bin/env bash
# Brings up a local Berth cluster on this machine:
#   etcd + kube-apiserver + kube-controller-manager + kube-scheduler (built from Debian's source
#   package), a registry on 10.213.0.1:5000, and N hosts (network namespaces
#   berth-1..N), each with its own containerd and kube-proxy; then Berth's controller
#   and agents if they are built.
#
#   hack/up.sh [--nodes N]     (default 3)
#   hack/up.sh --kubelet-host  one more host, berth-(N+1), whose node is the real kubelet
#                              1.20 on its own containerd (the peer of hack/bench.sh and
#                              hack/conformance.sh --on kubelet); tainted berth.dev/peer
#
# State: ${BERTH_STATE:-~/.berth/local}; source $BERTH_STATE/env afterwards.
# Running it again on a running cluster reports it and exits 0; after a killed
# or failed run it cleans up (hack/down.sh) and starts fresh.
# BERTH_KEEP_ON_FAILURE=1 leaves a failed cluster as it is, for debugging.
set -euo pipefail
HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/lib/load.sh
source "$HACK/lib/load.sh"

NODES=3
nodes_given=0
kubelet_host=0
while (($#)); do
	case "$1" in
	--nodes) NODES="${2:?--nodes needs a number}" && nodes_given=1 && shift 2 ;;
	--nodes=*) NODES="${1#--nodes=}" && nodes_given=1 && shift ;;
	--kubelet-host) kubelet_host=1 && shift ;;
	-h | --help) sed -n '2,17p' "$0" && exit 0 ;;
	*) die "unknown argument '$1' (usage: hack/up.sh [--nodes N] [--kubelet-host])" ;;
	esac
done
if ! [[ "$NODES" =~ ^[0-9]+$ ]] || ((NODES < 1 || NODES > MAX_NODES)); then
	die "--nodes must be 1..$MAX_NODES, got '$NODES'"
fi
NODE_NAMES=() AGENT_NODES=() KUBELET_NODES=()
for ((i = 1; i <= NODES; i++)); do AGENT_NODES+=("$(node_name "$i")"); done
((kubelet_host)) && KUBELET_NODES+=("$(node_name $((NODES + 1)))")
NODE_NAMES=("${AGENT_NODES[@]}" "${KUBELET_NODES[@]}")

# leftovers: anything a previous (killed, failed) run may have left.
leftovers() {
	[[ -d "$BERTH_STATE/pids" ]] && compgen -G "$BERTH_STATE/pids/*.pid" >/dev/null && return 0
	[[ -n "$(net_known_hosts)" ]] && return 0
	ip link show "$BRIDGE" >/dev/null 2>&1
}

print_next_steps() {
	cat <<-EOF

		Berth local cluster is up: $(cluster_nodes | wc -l) hosts ($(cluster_nodes | paste -sd' ')), API $APISERVER_URL, registry $REGISTRY
		Next:
		  source $ENV_FILE            # KUBECONFIG, BERTH_REGISTRY, BERTH_NODES, ...
		  kubectl get nodes,ns
		  hack/images.sh push-demo v3       # a new demo image version
		  hack/status.sh                    # what runs, what answers
		  hack/down.sh                      # stop everything (--purge also removes $BERTH_STATE)
		Logs: $LOG_DIR/, $NODES_DIR/<node>/{containerd,agent}.log
	EOF
}

require_root
"$HACK/deps.sh" || die "installing dependencies failed (hack/deps.sh)"
cluster_lock

if cluster_healthy; then
	running="$(agent_nodes | wc -l)"
	if ((nodes_given && running != NODES)); then
		die "a cluster with $running nodes is already running (asked for $NODES): run hack/down.sh first"
	fi
	if ((kubelet_host)) && [[ -z "$(kubelet_nodes)" ]]; then
		die "the running cluster has no kubelet host (asked for --kubelet-host): run hack/down.sh first"
	fi
	log "cluster already running ($running Berth nodes$([[ -z "$(kubelet_nodes)" ]] || echo ", kubelet host $(kubelet_nodes)"))"
	mapfile -t running_nodes < <(agent_nodes)
	berth_start_missing "${running_nodes[@]}"
	for node in $(cluster_nodes); do
		pid_alive "kube-proxy-$node" && continue
		kube_proxy_start "$node" "$("$HACK/build-kube.sh" | tail -n1)"
		log "started kube-proxy on $node (log: $(node_dir "$node")/kube-proxy.log)"
	done
	print_next_steps
	exit 0
fi
if leftovers; then
	log "found a stopped or partial cluster in $BERTH_STATE: cleaning it up first"
	"$HACK/down.sh" --purge
fi

started=$SECONDS
KUBE_BIN="$("$HACK/build-kube.sh" | tail -n1)"

# Ports: one clear line if something else holds one.
port_free 127.0.0.1 "${ETCD_CLIENT_URL##*:}"
port_free 127.0.0.1 "${ETCD_PEER_URL##*:}"
port_free "$BRIDGE_IP" "$APISERVER_PORT"
port_free "$BRIDGE_IP" "${REGISTRY##*:}"
port_free 127.0.0.1 "$KCM_PORT"
port_free 127.0.0.1 "$SCHEDULER_PORT"

# From here on a failure tears down what was started (logs stay for reading).
on_exit() {
	local rc=$?
	((rc == 0)) && return 0
	trap - EXIT
	if [[ "${BERTH_KEEP_ON_FAILURE:-0}" == 1 ]]; then
		echo "up failed (exit $rc); BERTH_KEEP_ON_FAILURE=1: leaving it as it is. Logs: $LOG_DIR" >&2
	else
		echo "up failed (exit $rc): tearing down what it started; logs kept in $LOG_DIR and $NODES_DIR/*/" >&2
		"$HACK/down.sh" >&2 || true
	fi
	exit "$rc"
}
trap on_exit EXIT

rm -rf "$BERTH_STATE"
mkdir -p "$BERTH_STATE" "$LOG_DIR" "$NODES_DIR" "$BERTH_STATE/pids"
printf '%s\n' "${NODE_NAMES[@]}" >"$NODES_LIST"
printf '%s\n' "${KUBELET_NODES[@]}" | sed '/^$/d' >"$KUBELET_NODES_LIST"

log "certificates, tokens and kubeconfigs"
pki_control_plane
tokens_write
kube_proxy_identity
kubeconfig_write "$ADMIN_KUBECONFIG" admin admin
kubeconfig_write "$CONTROLLER_KUBECONFIG" berth-controller berth-controller
kubeconfig_write "$KCM_KUBECONFIG" kube-controller-manager system:kube-controller-manager
kubeconfig_write "$SCHEDULER_KUBECONFIG" kube-scheduler system:kube-scheduler
for node in "${AGENT_NODES[@]}"; do
	pki_node "$node"
	node_kubeconfig_write "$node" "$(node_dir "$node")/kubeconfig"
done
for node in "${KUBELET_NODES[@]}"; do
	pki_node "$node"
done
webhook_token >/dev/null

log "network: bridge $BRIDGE ($BRIDGE_IP), hosts ${NODE_NAMES[*]}"
net_bridge_up
for node in "${NODE_NAMES[@]}"; do net_host_up "$node"; done
net_pod_routes "${NODE_NAMES[@]}"

log "starting etcd, registry and ${#NODE_NAMES[@]} containerd"
etcd_start
registry_start
for node in "${KUBELET_NODES[@]}"; do kubelet_root_shared "$node"; done
for node in "${NODE_NAMES[@]}"; do
	containerd_config "$node"
	containerd_start "$node"
done

wait_for etcd 30 "$(component_log etcd)" etcd etcd_healthy
apiserver_start "$KUBE_BIN"
wait_for "registry ($REGISTRY/v2/)" 30 "$(component_log registry)" registry registry_healthy
log "pushing images to $REGISTRY"
BERTH_REGISTRY="$REGISTRY" "$HACK/images.sh" all
wait_for "kube-apiserver ($APISERVER_URL/readyz)" 90 "$(component_log kube-apiserver)" kube-apiserver apiserver_healthy
kcm_start "$KUBE_BIN"
scheduler_start "$KUBE_BIN"
for node in "${NODE_NAMES[@]}"; do
	wait_for "containerd of $node ($(node_sock "$node"))" 30 "$(node_dir "$node")/containerd.log" "containerd-$node" containerd_healthy "$node"
done

# Nothing Berth-specific is applied but the CRDs and the local RBAC bindings.
n="$(apply_crds)"
((n == 0)) || log "applied $n CRD file(s) from crds/"
applied="$(apply_local_rbac)"
[[ -z "$applied" ]] || log "applied $applied (RBAC for berth:controllers and system:nodes)"
wait_for "kube-controller-manager (https://127.0.0.1:$KCM_PORT/healthz)" 60 "$(component_log kube-controller-manager)" kube-controller-manager kcm_healthy
wait_for "kube-scheduler (https://127.0.0.1:$SCHEDULER_PORT/healthz)" 60 "$(component_log kube-scheduler)" kube-scheduler scheduler_healthy

berth_start_all "${AGENT_NODES[@]}"
for node in "${KUBELET_NODES[@]}"; do
	kubelet_start "$node" "$KUBE_BIN"
	wait_for "kubelet of $node (healthz)" 60 "$(node_dir "$node")/kubelet.log" "kubelet-$node" kubelet_healthy "$node"
	wait_for "node $node Ready (kubelet)" 90 "$(node_dir "$node")/kubelet.log" "kubelet-$node" kubelet_node_ready "$node"
	log "kubelet host $node is Ready (log: $(node_dir "$node")/kubelet.log)"
done

for node in "${NODE_NAMES[@]}"; do kube_proxy_start "$node" "$KUBE_BIN"; done
for node in "${NODE_NAMES[@]}"; do
	wait_for "kube-proxy of $node (healthz)" 60 "$(node_dir "$node")/kube-proxy.log" "kube-proxy-$node" kube_proxy_healthy "$node"
done
log "started kube-proxy (iptables) on ${NODE_NAMES[*]} (logs: $NODES_DIR/<node>/kube-proxy.log)"

env_write "${AGENT_NODES[@]}"
date -u +%FT%TZ >"$UP_DONE"
trap - EXIT
log "cluster up in $((SECONDS - started))s"
print_next_steps
