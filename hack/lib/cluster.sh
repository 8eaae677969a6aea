# shellcheck shell=bash
# shellcheck disable=SC2034 # constants used by the scripts that source this file
# The local cluster's topology and file layout: one place that says which
# address, port, path and name everything has. up/down/status/smoke read it.

# Network. 10.213.0.0/24 is the hosts' L2 segment (bridge berth0 in the root
# namespace), host i is 10.213.0.(10+i), its pods 10.214.i.0/24. Services get
# 10.215.0.0/24, implemented by kube-proxy (iptables) inside each host.
BRIDGE=berth0
BRIDGE_IP=10.213.0.1
BRIDGE_NET=10.213.0.0/24
SERVICE_CIDR=10.215.0.0/24
FIRST_SERVICE_IP=10.215.0.1
MAX_NODES=50

# Ports. etcd uses non-default ports so that a distribution etcd on 2379 does not collide.
ETCD_CLIENT_URL=http://127.0.0.1:12379
ETCD_PEER_URL=http://127.0.0.1:12380
APISERVER_PORT=6443
APISERVER_URL="https://$BRIDGE_IP:$APISERVER_PORT"
KCM_PORT=10257
SCHEDULER_PORT=10259
REGISTRY="$BRIDGE_IP:5000"
WEBHOOK_ADDR=127.0.0.1:8085
AGENT_PORT=10250

# Files.
PKI_DIR="$BERTH_STATE/pki"
LOG_DIR="$BERTH_STATE/logs"
NODES_DIR="$BERTH_STATE/nodes"
NODES_LIST="$BERTH_STATE/nodes.list"    # node names of the cluster, written first by up
KUBELET_NODES_LIST="$BERTH_STATE/kubelet-nodes.list" # those whose node is the kubelet (--kubelet-host)
UP_DONE="$BERTH_STATE/up.done"          # written last by a successful up
ENV_FILE="$BERTH_STATE/env"
TOKEN_FILE="$BERTH_STATE/tokens.csv"    # the apiserver's static token file
WEBHOOK_TOKEN_FILE="$BERTH_STATE/webhook-token"
ADMIN_KUBECONFIG="$BERTH_STATE/admin.kubeconfig"
CONTROLLER_KUBECONFIG="$BERTH_STATE/controller.kubeconfig"
KCM_KUBECONFIG="$BERTH_STATE/kube-controller-manager.kubeconfig"
SCHEDULER_KUBECONFIG="$BERTH_STATE/kube-scheduler.kubeconfig"

node_name() { echo "berth-$1"; }
node_index() { echo "${1##*-}"; }
node_netns() { echo "$1"; } # a host's network namespace has the host's name
node_ip() { echo "10.213.0.$((10 + $(node_index "$1")))"; }
node_pod_cidr() { echo "10.214.$(node_index "$1").0/24"; }
node_veth() { echo "berth-v$(node_index "$1")"; } # root-side end; inside it is eth0
node_cni_bridge() { echo "cni-b$(node_index "$1")"; }
node_dir() { echo "$NODES_DIR/$1"; }
node_sock() { echo "$NODES_DIR/$1/containerd.sock"; }

# cluster_nodes: the node names up recorded (empty when none).
cluster_nodes() {
	[[ -f "$NODES_LIST" ]] && cat "$NODES_LIST"
	return 0
}

# kubelet_nodes: the hosts whose node is the real kubelet (hack/up.sh --kubelet-host).
kubelet_nodes() {
	[[ -f "$KUBELET_NODES_LIST" ]] && cat "$KUBELET_NODES_LIST"
	return 0
}

# agent_nodes: the hosts whose node is a Berth agent.
agent_nodes() {
	local n k
	for n in $(cluster_nodes); do
		for k in $(kubelet_nodes); do [[ "$n" == "$k" ]] && continue 2; done
		echo "$n"
	done
}

# kubectl_bin: any kubectl on PATH, else Debian's kubernetes-client (installed by deps.sh).
kubectl_bin() { command -v kubectl || die "kubectl not found: run hack/deps.sh"; }

kc() { "$(kubectl_bin)" --kubeconfig "$ADMIN_KUBECONFIG" "$@"; }

# in_netns NETNS CMD...: runs CMD in a host's network namespace only. Unlike
# `ip netns exec`, nsenter does not remount /sys: `ip netns exec` mounts a fresh
# sysfs over /sys, which hides the cgroup v1 hierarchies under /sys/fs/cgroup
# and breaks runc. nsenter execs CMD in place, so a recorded pid stays valid.
in_netns() {
	local ns="$1"
	shift
	nsenter --net="/run/netns/$ns" -- "$@"
}

# cluster_healthy: up finished and every component it must run (control plane,
# each host's containerd) is alive and answering. Berth's own binaries are
# optional here: they may not be written yet.
cluster_healthy() {
	local c node
	[[ -f "$UP_DONE" ]] || return 1
	for c in "${CONTROL_PLANE[@]}"; do
		pid_alive "$c" && component_healthy "$c" || return 1
	done
	for node in $(cluster_nodes); do
		pid_alive "containerd-$node" && containerd_healthy "$node" || return 1
	done
}
