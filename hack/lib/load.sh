# shellcheck shell=bash
# Sources every hack/lib file the cluster scripts (up/down/status/smoke) share.
_berth_lib="$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=hack/lib/common.sh
source "$_berth_lib/common.sh"
# shellcheck source=hack/lib/cluster.sh
source "$_berth_lib/cluster.sh"
# shellcheck source=hack/lib/net.sh
source "$_berth_lib/net.sh"
# shellcheck source=hack/lib/pki.sh
source "$_berth_lib/pki.sh"
# shellcheck source=hack/lib/control-plane.sh
source "$_berth_lib/control-plane.sh"
# shellcheck source=hack/lib/containerd.sh
source "$_berth_lib/containerd.sh"
# shellcheck source=hack/lib/berth.sh
source "$_berth_lib/berth.sh"
# shellcheck source=hack/lib/kubelet.sh
source "$_berth_lib/kubelet.sh"
# shellcheck source=hack/lib/kube-proxy.sh
source "$_berth_lib/kube-proxy.sh"
# shellcheck source=hack/lib/env.sh
source "$_berth_lib/env.sh"
unset _berth_lib
