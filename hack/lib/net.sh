# shellcheck shell=bash
# Hosts as network namespaces: bridge berth0 (root namespace) <-veth-> netns
# berth-i (eth0 = 10.213.0.(10+i)), plus routes so that the root namespace and
# every host reach every pod subnet directly.

GUARD_CHAIN=BERTH-GUARD

# net_bridge_up: the bridge and its address, and a guard so that nothing on
# the bridge's subnet (apiserver, registry) is reachable from outside. Linux
# accepts a packet for any local address on any interface, so without the guard
# a neighbour on eth0 routing 10.213.0.1 at us would reach the apiserver.
net_bridge_up() {
	if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
		ip link add "$BRIDGE" type bridge
	fi
	ip addr replace "$BRIDGE_IP/24" dev "$BRIDGE"
	ip link set "$BRIDGE" up
	net_guard_up
}

net_guard_up() {
	if ! command -v iptables >/dev/null 2>&1 || ! iptables -S INPUT >/dev/null 2>&1; then
		warn "iptables unusable: $BRIDGE_NET is not guarded against traffic from outside interfaces"
		return 0
	fi
	iptables -N "$GUARD_CHAIN" 2>/dev/null || iptables -F "$GUARD_CHAIN"
	iptables -A "$GUARD_CHAIN" -i lo -j RETURN
	iptables -A "$GUARD_CHAIN" -i "$BRIDGE" -j RETURN
	iptables -A "$GUARD_CHAIN" -j DROP
	iptables -C INPUT -d "$BRIDGE_NET" -j "$GUARD_CHAIN" 2>/dev/null ||
		iptables -I INPUT -d "$BRIDGE_NET" -j "$GUARD_CHAIN"
}

net_guard_down() {
	command -v iptables >/dev/null 2>&1 || return 0
	while iptables -D INPUT -d "$BRIDGE_NET" -j "$GUARD_CHAIN" 2>/dev/null; do :; done
	iptables -F "$GUARD_CHAIN" 2>/dev/null || true
	iptables -X "$GUARD_CHAIN" 2>/dev/null || true
}

# net_host_up NODE: netns, veth into the bridge, address, default route, forwarding.
net_host_up() {
	local node="$1" ns veth ip
	ns="$(node_netns "$node")" veth="$(node_veth "$node")" ip="$(node_ip "$node")"
	ip netns add "$ns"
	ip link add "$veth" type veth peer name eth0 netns "$ns"
	ip link set "$veth" master "$BRIDGE" up
	ip -n "$ns" link set lo up
	ip -n "$ns" addr add "$ip/24" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" route add default via "$BRIDGE_IP"
	# The host routes for its pods' CNI bridge: pods reach other hosts' pods and the root namespace reaches its pods.
	in_netns "$ns" sysctl -qw net.ipv4.ip_forward=1
	# The root namespace reaches pod IPs through the host (it does not forward itself: its ip_forward stays as it is).
	ip route replace "$(node_pod_cidr "$node")" via "$ip" dev "$BRIDGE"
}

# net_pod_routes NODE...: in every host, a route to each other host's pod subnet
# via that host on the shared segment (the root namespace does not forward, so
# the default route would not do).
net_pod_routes() {
	local a b
	for a in "$@"; do
		for b in "$@"; do
			[[ "$a" == "$b" ]] && continue
			ip -n "$(node_netns "$a")" route replace "$(node_pod_cidr "$b")" via "$(node_ip "$b")" dev eth0
		done
	done
}

# net_host_down NODE: removes the netns (its eth0 and CNI bridge go with it once no
# process is left inside), the root-side veth and the pod route. Idempotent.
net_host_down() {
	local node="$1" ns
	ns="$(node_netns "$node")"
	ip route del "$(node_pod_cidr "$node")" 2>/dev/null || true
	if [[ -e "/run/netns/$ns" ]]; then
		ip netns del "$ns" 2>/dev/null || umount -l "/run/netns/$ns" 2>/dev/null || true
		rm -f "/run/netns/$ns"
	fi
	ip link del "$(node_veth "$node")" 2>/dev/null || true
}

net_bridge_down() {
	net_guard_down
	ip link del "$BRIDGE" 2>/dev/null || true
}

# net_known_hosts: netns that look like ours (berth-<n>), recorded or not, so
# down also cleans what a killed up left before it recorded anything.
net_known_hosts() {
	ip netns list 2>/dev/null | awk '$1 ~ /^berth-[0-9]+$/ {print $1}'
	ip -o link show 2>/dev/null | awk -F': ' '$2 ~ /^berth-v[0-9]+@/ {sub(/@.*/, "", $2); sub(/^berth-v/, "berth-", $2); print $2}'
}
