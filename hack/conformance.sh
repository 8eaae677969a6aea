#!/usr/bin/env bash
# Runs the Kubernetes 1.20 e2e suite (e2e.test, built from the same Debian source tree
# as the API server) against the local cluster, with Berth agents as the nodes, and
# prints the conformance table (hack/conformance/report.py).
#
#   hack/conformance.sh                    every [Conformance] test, skipping [Serial] and [Disruptive]
#   hack/conformance.sh --node-conformance the [NodeConformance] tests instead
#   hack/conformance.sh --serial           include [Serial] and [Disruptive] (they stop parts of the cluster)
#   hack/conformance.sh --ci               only the expected passes (hack/conformance/expected-pass.txt);
#                                          exit 1 when one of them does not pass
#   hack/conformance.sh --focus RE         only tests matching RE (within the scope above)
#   hack/conformance.sh --update-expected  rewrite the expected-pass list from this run's passes
#   hack/conformance.sh --nodes N          parallel ginkgo nodes (default 24: most of a failing
#                                          test's time is the suite waiting for its 5-minute timeouts)
#   hack/conformance.sh --on kubelet       the same against the kubelet host instead of the Berth
#                                          nodes (hack/up.sh --kubelet-host): the reference result
#   hack/conformance.sh --budget SECONDS   stop the suite after SECONDS (ginkgo's -timeout): the tests
#                                          not finished by then count as not passed. Default: none,
#                                          1200 with --ci (a hung test must not eat CI's time)
#
# A failing test is data: the exit code is 0 whatever failed, except with --ci. Uses a
# running cluster (hack/up.sh) or brings one up and stops it again at the end. While it
# runs, the tested nodes' NoSchedule taint (berth.dev/agent on Berth nodes,
# berth.dev/peer on the kubelet host) is lifted, as the suite's pods tolerate nothing,
# and put back afterwards; the other nodes keep theirs, so every pod of the suite lands
# on the kind of node under test. Reports: $BERTH_STATE/conformance/<time>/.
set -euo pipefail
HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/lib/load.sh
source "$HACK/lib/load.sh"
# shellcheck source=hack/lib/images.sh
source "$HACK/lib/images.sh"
# shellcheck source=hack/lib/e2e-images.sh
source "$HACK/lib/e2e-images.sh"

EXPECTED="$HACK/conformance/expected-pass.txt"
scope='\[Conformance\]' title=Conformance skip='\[Serial\]|\[Disruptive\]|\[Flaky\]' focus="" ci=0 update=0 nodes=24
on=berth budget=
while (($#)); do
	case "$1" in
	--node-conformance) scope='\[NodeConformance\]' title=NodeConformance EXPECTED="$HACK/conformance/expected-pass-node.txt" ;;
	--serial) skip='\[Flaky\]' ;;
	--ci) ci=1 ;;
	--focus) focus="${2:?--focus needs a regex}" && shift ;;
	--update-expected) update=1 ;;
	--nodes) nodes="${2:?--nodes needs a number}" && shift ;;
	--on) on="${2:?--on needs berth or kubelet}" && shift ;;
	--budget) budget="${2:?--budget needs seconds}" && shift ;;
	-h | --help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' && exit 0 ;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
	shift
done
case "$on" in
berth) taint_key=berth.dev/agent taint_value=true ;;
kubelet) taint_key=$KUBELET_TAINT_KEY taint_value=kubelet ;;
*) die "--on takes berth or kubelet, got '$on'" ;;
esac
[[ -z "$budget" ]] && ((ci)) && budget=1200
[[ -z "$budget" || "$budget" =~ ^[1-9][0-9]*$ ]] || die "--budget takes a number of seconds, got '$budget'"
((ci)) && [[ "$on" != berth ]] && die "--ci checks the Berth nodes' expected passes: drop --on $on"
require_root

KUBE_BIN="$("$HACK/build-kube.sh" | tail -n1)"
for b in e2e.test ginkgo agnhost; do
	[[ -x "$KUBE_BIN/$b" ]] || die "no $b in $KUBE_BIN: run hack/build-kube.sh"
done

# --- the cluster ----------------------------------------------------------------
started_cluster=0
untainted=()
finish() {
	local rc=$? node
	for node in "${untainted[@]}"; do
		kc taint nodes "$node" "$taint_key=$taint_value:NoSchedule" --overwrite >/dev/null 2>&1 ||
			warn "could not put the taint $taint_key back on $node"
	done
	# The suite deletes its namespaces as each test ends; a run cut short leaves some.
	kc delete namespaces -l e2e-run --wait=false >/dev/null 2>&1 || true
	if ((started_cluster)); then
		log "stopping the cluster this run started"
		"$HACK/down.sh" >/dev/null 2>&1 || warn "hack/down.sh failed; run it by hand"
	fi
	exit "$rc"
}
trap finish EXIT
if ! cluster_healthy; then
	log "no running cluster: starting one (hack/up.sh)"
	started_cluster=1
	"$HACK/up.sh"
fi
pid_alive kube-scheduler || die "kube-scheduler is not running: the suite's pods would never be placed (hack/up.sh starts it)"

log "pushing the suite's images to $REGISTRY (hack/lib/e2e-images.sh says which are stand-ins)"
push_e2e_images "$REGISTRY" "$KUBE_BIN"
# Pods of the suite pull IfNotPresent: a host still holding an older build of an image
# under the same tag would run that one. Forget them; they are pulled again (local, small).
for node in $(cluster_nodes); do
	ctr --address "$(node_sock "$node")" -n k8s.io images ls -q 2>/dev/null |
		grep -E "^$REGISTRY/($(e2e_image_repos | paste -sd'|'))[:@]" |
		xargs -r ctr --address "$(node_sock "$node")" -n k8s.io images rm >/dev/null 2>&1 || true
done

if [[ "$on" == berth ]]; then
	mapfile -t test_nodes < <(agent_nodes)
else
	mapfile -t test_nodes < <(kubelet_nodes)
	((${#test_nodes[@]})) || die "--on kubelet needs a kubelet host: hack/down.sh, then hack/up.sh --kubelet-host"
fi
for node in "${test_nodes[@]}"; do
	kc get node "$node" >/dev/null 2>&1 || die "node $node is not registered (hack/status.sh; its log is under $(node_dir "$node"))"
	if kc get node "$node" -o jsonpath='{.spec.taints[*].key}' | grep -qw "$taint_key"; then
		kc taint nodes "$node" "$taint_key:NoSchedule-" >/dev/null
		untainted+=("$node")
	fi
done
log "nodes for the suite: ${test_nodes[*]} (taint $taint_key lifted for the run)"

# --- the run --------------------------------------------------------------------
out="$BERTH_STATE/conformance/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
e2e_repo_list "$REGISTRY" >"$out/repo-list.yaml"

run_focus="$scope"
if ((ci)); then
	[[ -s "$EXPECTED" ]] || die "$EXPECTED is empty or missing: run without --ci and --update-expected first"
	run_focus="$(python3 - "$EXPECTED" <<-'EOF'
		import re, sys
		names = [l.split() for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")]
		# The JUnit name is ginkgo's full text; the focus matches the same text. Some names have
		# two spaces where the list (whitespace-normalised) has one: words join on \s+.
		print("|".join(r"\s+".join(re.escape(w) for w in (n[2:] if n[:2] == ["[k8s.io]"] else n)) for n in names))
	EOF
	)"
elif [[ -n "$focus" ]]; then
	run_focus="(?:$scope).*(?:$focus)|(?:$focus).*(?:$scope)"
fi

# ginkgo's own -timeout interrupts the suite (AfterSuite runs, the report is written); the
# outer timeout is the backstop should a node not answer the interrupt.
limit=() ginkgo_timeout=24h budget_note=""
if [[ -n "$budget" ]]; then
	ginkgo_timeout="${budget}s" budget_note=", budget ${budget} s"
	limit=(timeout --kill-after=30 "$((budget + 120))")
fi
log "running e2e.test: scope $scope, skipping /$skip/, $nodes parallel nodes$budget_note (log: $out/e2e.log)"
t0=$SECONDS
set +e
KUBE_TEST_REPO_LIST="$out/repo-list.yaml" "${limit[@]}" "$KUBE_BIN/ginkgo" -nodes="$nodes" -noColor -timeout="$ginkgo_timeout" \
	"$KUBE_BIN/e2e.test" -- \
	--provider=skeleton --kubeconfig="$ADMIN_KUBECONFIG" \
	--ginkgo.focus="$run_focus" --ginkgo.skip="$skip" \
	--report-dir="$out" --disable-log-dump --dump-logs-on-failure=false \
	--non-blocking-taints="berth.dev/agent,$KUBELET_TAINT_KEY,node-role.kubernetes.io/master" \
	--allowed-not-ready-nodes=0 --system-pods-startup-timeout=1m \
	>"$out/e2e.log" 2>&1
e2e_rc=$?
set -e
log "e2e.test finished in $((SECONDS - t0)) s (exit $e2e_rc; a failing test is counted, not fatal)"
if [[ -n "$budget" ]] && ((SECONDS - t0 >= budget)); then
	warn "the suite ran out of its ${budget} s budget: tests still running were stopped and count as not passed (grep -n 'Received interrupt\|Timeout' $out/e2e.log)"
fi
if ! compgen -G "$out/junit*.xml" >/dev/null && ! grep -aq '^{"msg":"\(PASSED\|FAILED\)' "$out/e2e.log"; then
	tail -n 30 "$out/e2e.log" >&2
	die "e2e.test wrote no JUnit report: it did not get to run its tests (log: $out/e2e.log)"
fi

nodes_title="Berth nodes"
[[ "$on" == kubelet ]] && nodes_title="the kubelet node"
report_args=("$out" --scope "$scope" --title "$title on $nodes_title" --write-passed "$out/passed.txt")
((ci)) && report_args+=(--expected "$EXPECTED")
set +e
python3 "$HACK/conformance/report.py" "${report_args[@]}" | tee "$out/table.md"
report_rc=${PIPESTATUS[0]}
set -e
if ((update)) && [[ "$on" == kubelet ]]; then
	warn "--update-expected ignored with --on kubelet (the list is the Berth nodes')"
elif ((update)); then
	{
		echo "# $title tests that pass on Berth nodes (hack/conformance.sh --update-expected, $(date -u +%F))."
		echo "# CI runs these and fails when one stops passing. Update on purpose."
		cat "$out/passed.txt"
	} >"$EXPECTED"
	log "wrote $(grep -vc '^#' "$EXPECTED") expected passes to $EXPECTED"
fi
log "JUnit, log and table in $out"
exit "$report_rc"
