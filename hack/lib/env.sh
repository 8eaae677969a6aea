# shellcheck shell=bash
# The env files: the contract between the local cluster and whatever uses it
# (tests, people, the Rust e2e harness). Format: one `export NAME="VALUE"` per
# line; values never contain `"`, `$`, backslashes or newlines, so a parser may
# strip `export ` and the quotes.

_env_line() { printf 'export %s="%s"\n' "$1" "$2"; }

# env_write NODE...: $BERTH_STATE/env and $BERTH_STATE/nodes/NODE/env.
env_write() {
	local node dir
	{
		echo "# Berth local cluster, written by hack/up.sh on $(date -u +%FT%TZ). Source it."
		_env_line KUBECONFIG "$ADMIN_KUBECONFIG"
		_env_line BERTH_STATE "$BERTH_STATE"
		_env_line BERTH_REGISTRY "$REGISTRY"
		_env_line BERTH_NODES "$*"
		_env_line BERTH_WEBHOOK_TOKEN_FILE "$WEBHOOK_TOKEN_FILE"
		_env_line BERTH_WEBHOOK_ADDR "$WEBHOOK_ADDR"
		_env_line BERTH_API_SERVER "$APISERVER_URL"
		_env_line BERTH_CA_CERT "$PKI_DIR/ca.crt"
		_env_line BERTH_CONTROLLER_KUBECONFIG "$CONTROLLER_KUBECONFIG"
		_env_line BERTH_NODES_DIR "$NODES_DIR"
		_env_line BERTH_LOG_DIR "$LOG_DIR"
	} >"$ENV_FILE.tmp"
	mv "$ENV_FILE.tmp" "$ENV_FILE"
	for node in "$@"; do
		dir="$(node_dir "$node")"
		{
			echo "# Host $node of the Berth local cluster, written by hack/up.sh. Source it."
			_env_line NODE_NAME "$node"
			_env_line NODE_IP "$(node_ip "$node")"
			_env_line NETNS "$(node_netns "$node")"
			_env_line CRI_ENDPOINT "unix://$(node_sock "$node")"
			_env_line POD_CIDR "$(node_pod_cidr "$node")"
			_env_line KUBECONFIG "$dir/kubeconfig"
			_env_line TLS_CERT "$PKI_DIR/node-$node.crt"
			_env_line TLS_KEY "$PKI_DIR/node-$node.key"
			_env_line POD_LOG_DIR "$dir/logs"
			_env_line CONTAINERD_LOG "$dir/containerd.log"
		} >"$dir/env.tmp"
		mv "$dir/env.tmp" "$dir/env"
	done
}
