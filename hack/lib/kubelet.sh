# shellcheck shell=bash
# The peer node: one host whose node is the real kubelet 1.20 (built from the same
# Debian source tree as the API server) on its own containerd, with the same CNI as
# the Berth hosts, so the same pods can land on either kind of node. It is the anchor
# of hack/bench.sh and the reference run of hack/conformance.sh --on kubelet.
#
# It registers with the NoSchedule taint berth.dev/peer=kubelet, so nothing lands on it
# unless asked (Berth's Workloads never do; the conformance run lifts the taint of the
# nodes it tests). Its identity is a Berth agent's: a client certificate of user
# system:node:<name> in group system:nodes (pki_node), under the Node authorizer and
# NodeRestriction; :10250 takes client certificates of the cluster CA and tokens (webhook).

KUBELET_TAINT_KEY=berth.dev/peer

# kubelet_root_shared NODE: the kubelet's --root-dir as a shared bind mount, made before
# the host's containerd starts. containerd runs in a mount namespace of its own (slave of
# the machine's); the machine's root mount is private here, so without this the tmpfs the
# kubelet mounts for secret, configMap, projected and downward API volumes would never
# reach containerd, and those containers would see empty directories.
kubelet_root_shared() {
	local root
	root="$(node_dir "$1")/kubelet"
	mkdir -p "$root"
	mountpoint -q "$root" || mount --bind "$root" "$root"
	mount --make-rshared "$root"
}

# kubelet_start NODE KUBE_BIN_DIR: inside the host's network namespace (mounts are
# the root namespace's, as containerd, in a slave mount namespace, sees them).
kubelet_start() {
	local node="$1" dir
	dir="$(node_dir "$node")"
	mkdir -p "$dir/kubelet" "$dir/kubelet-certs"
	node_kubeconfig_write "$node" "$dir/kubelet.kubeconfig"
	start_bg "kubelet-$node" "$dir/kubelet.log" \
		nsenter --net="/run/netns/$(node_netns "$node")" -- \
		"$2/kubelet" \
		--kubeconfig="$dir/kubelet.kubeconfig" \
		--hostname-override="$node" --node-ip="$(node_ip "$node")" \
		--address="$(node_ip "$node")" --port="$AGENT_PORT" --read-only-port=0 \
		--healthz-bind-address=127.0.0.1 --healthz-port=10248 \
		--tls-cert-file="$PKI_DIR/node-$node.crt" --tls-private-key-file="$PKI_DIR/node-$node.key" \
		--client-ca-file="$PKI_DIR/ca.crt" --anonymous-auth=false --authentication-token-webhook --authorization-mode=Webhook \
		--container-runtime=remote --container-runtime-endpoint="unix://$(node_sock "$node")" \
		--image-service-endpoint="unix://$(node_sock "$node")" --runtime-request-timeout=2m \
		--cgroup-driver=cgroupfs --cgroup-root=/ --fail-swap-on=false \
		--root-dir="$dir/kubelet" --cert-dir="$dir/kubelet-certs" \
		--pod-manifest-path="" \
		--register-with-taints="$KUBELET_TAINT_KEY=kubelet:NoSchedule" \
		--node-labels="$KUBELET_TAINT_KEY=kubelet" \
		--eviction-hard="memory.available<100Mi,nodefs.available<1%,imagefs.available<1%" \
		--image-gc-high-threshold=100 --image-gc-low-threshold=99 \
		--serialize-image-pulls=false \
		--v=1
}

kubelet_healthy() { in_netns "$(node_netns "$1")" curl -fsS --max-time 2 http://127.0.0.1:10248/healthz | grep -q '^ok'; }

# kubelet_node_ready NODE: the API server has the node Ready.
kubelet_node_ready() {
	[[ "$(kc get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

# kubelet_stop NODE: before its containerd is cleaned (a live kubelet restarts pods).
kubelet_stop() {
	stop_named "kubelet-$1" 15
	# The pod cgroups the kubelet made (it removes them itself only for pods it deletes).
	local d
	for d in /sys/fs/cgroup/*/kubepods; do
		[[ -d "$d" ]] || continue
		find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
	done
}
