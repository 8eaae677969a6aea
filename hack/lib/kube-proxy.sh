# shellcheck shell=bash
# kube-proxy 1.20 on every host, beside the agent (or the kubelet), as a node runs it:
# iptables mode, inside the host's network namespace, so its rules live in that
# namespace's tables and go with it. One identity for all of them, system:kube-proxy,
# which the API server's RBAC bootstrap binds to the ClusterRole system:node-proxier.
#
# --masquerade-all: the hosts' CNI bridges do not pass bridged traffic through iptables
# (no br_netfilter here), so a reply from a backend on the client's own bridge would
# skip the de-NAT; masquerading sends every reply back through the host's tables.
# --conntrack-max-per-core=0: leave the machine's conntrack table size alone.

KUBE_PROXY_KUBECONFIG_NAME=kube-proxy
POD_CLUSTER_CIDR=10.214.0.0/16

kube_proxy_identity() { _token_line "$KUBE_PROXY_KUBECONFIG_NAME" system:kube-proxy ""; }

# kube_proxy_start NODE KUBE_BIN_DIR
kube_proxy_start() {
	local node="$1" dir
	dir="$(node_dir "$node")"
	[[ -f "$BERTH_STATE/kube-proxy.kubeconfig" ]] ||
		kubeconfig_write "$BERTH_STATE/kube-proxy.kubeconfig" "$KUBE_PROXY_KUBECONFIG_NAME" system:kube-proxy
	start_bg "kube-proxy-$node" "$dir/kube-proxy.log" \
		nsenter --net="/run/netns/$(node_netns "$node")" -- \
		"$2/kube-proxy" \
		--kubeconfig="$BERTH_STATE/kube-proxy.kubeconfig" \
		--hostname-override="$node" --bind-address="$(node_ip "$node")" \
		--proxy-mode=iptables --cluster-cidr="$POD_CLUSTER_CIDR" --masquerade-all \
		--conntrack-max-per-core=0 --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0 \
		--healthz-bind-address=127.0.0.1:10256 --metrics-bind-address=127.0.0.1:10249 \
		--v=1
}

kube_proxy_healthy() {
	in_netns "$(node_netns "$1")" curl -fsS --max-time 2 -o /dev/null http://127.0.0.1:10256/healthz
}
