#!/usr/bin/env bash
# Berth's headline figures beside the anchor, in one run, with release builds. Prints
# figures (ratios to the kubelet where the machine has the peer); asserts nothing about time.
#
#   hack/bench.sh              pods per node 1,10,30 on a Berth node and on the kubelet node
#                              (start latency p50/p99/max, RSS and CPU with 0 and 30 pods);
#                              1,000 tags resolved by a cold controller (time, controller RSS) and
#                              idleness after; 2,000 tags, two thirds missing, at the default
#                              registry rate (time until every tag has a condition)
#   hack/bench.sh --tags N     N tags instead of 1,000 (e.g. 10000)
#   hack/bench.sh --fair-tags N  N tags instead of 2,000 in the fairness run
#   hack/bench.sh --only node|import
#
# It stops any running local cluster and starts its own (release binaries and a kubelet
# host: hack/up.sh --kubelet-host), and stops it at the end, also on failure
# (BERTH_KEEP_CLUSTER=1 keeps it). The import bench raises the controller's registry rate
# limit (BERTH_REGISTRY_QPS, default here 2000/s) so the figure is Berth's, not the limit's.
# Output: the tables on stdout, and $BERTH_CACHE/bench/<time>.md.
set -euo pipefail
HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/lib/load.sh
source "$HACK/lib/load.sh"

tags=1000 fair_tags=2000 only=all
while (($#)); do
	case "$1" in
	--tags) tags="${2:?--tags needs a number}" && shift ;;
	--fair-tags) fair_tags="${2:?--fair-tags needs a number}" && shift ;;
	--only) only="${2:?--only needs node or import}" && shift ;;
	-h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' && exit 0 ;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
	shift
done
[[ "$only" =~ ^(all|node|import)$ ]] || die "--only takes node or import, got '$only'"
[[ "$tags" =~ ^[0-9]+$ ]] || die "--tags takes a number, got '$tags'"
[[ "$fair_tags" =~ ^[0-9]+$ ]] || die "--fair-tags takes a number, got '$fair_tags'"
require_root
"$HACK/deps.sh"

log "release build of Berth's binaries and benches (cargo build --release)"
cargo build --release --workspace --bins --locked
cargo bench -p berth-e2e --locked --no-run >/dev/null 2>&1 || cargo bench -p berth-e2e --locked --no-run
target="${CARGO_TARGET_DIR:-$BERTH_REPO/target}"

finish() {
	local rc=$?
	if [[ "${BERTH_KEEP_CLUSTER:-0}" != 1 ]]; then
		"$HACK/down.sh" >/dev/null 2>&1 || warn "hack/down.sh failed; run it by hand"
	fi
	exit "$rc"
}
trap finish EXIT
"$HACK/down.sh" >/dev/null
BERTH_BIN_DIR="$target/release" BERTH_REGISTRY_QPS="${BERTH_REGISTRY_QPS:-2000}" \
	BERTH_REGISTRY_BURST="${BERTH_REGISTRY_BURST:-2000}" "$HACK/up.sh" --kubelet-host

out="$BERTH_CACHE/bench"
mkdir -p "$out"
report="$out/$(date -u +%Y%m%dT%H%M%SZ).md"
{
	echo "# hack/bench.sh, $(date -u +%FT%TZ), commit $(git -C "$BERTH_REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
	echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB; release builds; kubelet $KUBE_VERSION"
} | tee "$report"
# shellcheck source=/dev/null
source "$ENV_FILE"
if [[ "$only" != import ]]; then
	cargo bench -p berth-e2e --locked --bench node_peer 2>/dev/null | tee -a "$report"
fi
if [[ "$only" != node ]]; then
	echo -e "\n### $tags tags resolved by a cold controller, then 60 s idle (no peer on this machine: OpenShift's figure is not measurable here)\n" | tee -a "$report"
	BERTH_BENCH_TAGS="$tags" BERTH_BENCH_COLD=1 BERTH_BENCH_IDLE=60s \
		cargo bench -p berth-e2e --locked --bench import_idle 2>/dev/null | tee -a "$report"
	echo -e "\n### $fair_tags tags, two thirds missing, at the controller's default registry rate (10/s), cold, then 60 s idle\n" | tee -a "$report"
	BERTH_BENCH_TAGS="$fair_tags" BERTH_BENCH_MISSING=67 BERTH_BENCH_COLD=1 BERTH_BENCH_QPS=10 BERTH_BENCH_IDLE=60s \
		cargo bench -p berth-e2e --locked --bench import_idle 2>/dev/null | tee -a "$report"
fi
log "figures written to $report"
