# shellcheck shell=bash
# The images the Kubernetes e2e suite (test/utils/image/manifest.go of 1.20) asks for,
# built from what this machine has and pushed to the local registry under the names
# and tags the suite uses, so it runs without the internet. `KUBE_TEST_REPO_LIST`
# (written by e2e_repo_list) points each of the suite's registries at a path of the
# local registry. Sourced after common.sh and images.sh.
#
# What each image is (the docs table in hack/README.md says the same):
#   agnhost:2.21           the real agnhost, built from the same Kubernetes tree, with
#                          the shared libraries `ldd` lists, a busybox userland, and
#                          Debian's curl and bash (the real image has them from Alpine);
#                          entrypoint /agnhost, default argument `pause`, as upstream
#   busybox:1.29           Debian's busybox-static with every applet linked
#   pause:3.2              Berth's pause image (a shell that sleeps forever)
#   httpd:2.4.38-alpine,   stand-ins: busybox httpd on :80 serving Apache's "It works!"
#   httpd:2.4.39-alpine    page from /usr/local/apache2/htdocs
#   nginx:1.14-alpine,     stand-ins: busybox httpd on :80 serving "Welcome to nginx!"
#   nginx:1.15-alpine      from /usr/share/nginx/html
#   nonroot:1.0            busybox whose image config says USER 1234
#   jessie-dnsutils:1.0    stand-in: busybox with Debian's dig and glibc's getent (agnhost
#                          carries the same two, as upstream's has dig)
# Anything else the suite asks for is absent: those tests fail with ErrImagePull,
# which the report counts under "images".

# Bump when what these images contain changes.
E2E_IMAGES_RECIPE=3

# Where each of the suite's registries lives in the local registry.
e2e_repo_list() {
	local reg="$1"
	cat <<-EOF
		dockerLibraryRegistry: $reg/library
		e2eRegistry: $reg/kubernetes-e2e-test-images
		e2eVolumeRegistry: $reg/kubernetes-e2e-test-images/volume
		promoterE2eRegistry: $reg/e2e-test-images
		buildImageRegistry: $reg/build-image
		gcRegistry: $reg/k8s.gcr.io
		sigStorageRegistry: $reg/sig-storage
		gcrReleaseRegistry: $reg/gke-release
		privateRegistry: $reg/k8s-authenticated-test
		sampleRegistry: $reg/google-samples
		gcAuthenticatedRegistry: $reg/authenticated-image-pulling
		invalidRegistry: invalid.invalid/invalid
	EOF
}

# e2e_image_repos: the repositories push_e2e_images writes, under the registry.
e2e_image_repos() {
	printf '%s\n' library/busybox e2e-test-images/agnhost k8s.gcr.io/pause library/httpd library/nginx \
		kubernetes-e2e-test-images/nonroot kubernetes-e2e-test-images/jessie-dnsutils
}

# A busybox userland with every applet, and PATH in the config (umoci sets none).
_e2e_full_busybox() {
	local root="$1"
	mkdir -p "$root/usr/bin" "$root/sbin" "$root/usr/sbin" "$root/root"
	local a
	for a in $(/bin/busybox --list); do
		[[ -e "$root/bin/$a" || -L "$root/bin/$a" ]] || ln -sf busybox "$root/bin/$a"
	done
	printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
}
E2E_PATH_ENV="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_e2e_layout() { # NAME TAG FILL CONFIG_ARGS...: image_layout with this file's recipe
	local IMAGES_RECIPE="e2e-$E2E_IMAGES_RECIPE"
	image_layout "$@"
}

_fill_busybox() { _e2e_full_busybox "$1"; }

# _copy_binary ROOT SRC DEST: a dynamically linked binary and what its loader needs,
# the libraries at the same paths as on this machine.
_copy_binary() {
	local root="$1" src="$2" dest="$3" lib
	mkdir -p "$root$(dirname "$dest")"
	install -m 0755 "$src" "$root$dest"
	for lib in $(ldd "$src" | grep -oE '/[^ ]+\.so[^ ]*'); do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
}

# _fill_dns_tools ROOT: what the suite's DNS queriers run: dig (Debian's bind9-dnsutils) and
# glibc's getent, resolving by /etc/hosts then DNS as a glibc image does.
_fill_dns_tools() {
	local root="$1"
	_copy_binary "$root" "$(command -v dig)" /usr/bin/dig
	_copy_binary "$root" "$(command -v getent)" /usr/bin/getent
	mkdir -p "$root/etc"
	printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
}

_fill_dnsutils() {
	_e2e_full_busybox "$1"
	_fill_dns_tools "$1"
}

_AGNHOST_BIN=""
_fill_agnhost() {
	local root="$1"
	_e2e_full_busybox "$root"
	_fill_dns_tools "$root"
	_copy_binary "$root" "$_AGNHOST_BIN" /agnhost
	ln -sf agnhost "$root/agnhost-2"
	_copy_binary "$root" "$(command -v curl)" /usr/bin/curl
	_copy_binary "$root" /bin/bash /usr/bin/bash
	mkdir -p "$root/uploads" "$root/etc/ssl/certs"
	cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/" 2>/dev/null || true
}

_WEB_DIR="" _WEB_PAGE=""
_fill_web() {
	local root="$1"
	_e2e_full_busybox "$root"
	mkdir -p "$root$_WEB_DIR"
	printf '%s\n' "$_WEB_PAGE" >"$root$_WEB_DIR/index.html"
}

# shellcheck disable=SC2016 # the entrypoint script is expanded in the container
_web_entrypoint=(--config.entrypoint /bin/sh --config.entrypoint -c)
_web_cmd() { echo "httpd -f -p 80 -h $1 & trap \"kill \$! 2>/dev/null; exit 0\" TERM INT; wait \$!"; }

# push_e2e_images REGISTRY KUBE_BIN_DIR: builds (cached) and pushes every image above.
push_e2e_images() {
	local reg="$1" kube_bin="$2" layout v
	[[ -x "$kube_bin/agnhost" ]] || die "no agnhost in $kube_bin: run hack/build-kube.sh"

	layout="$(_e2e_layout e2e-busybox 1.29 _fill_busybox --config.env "$E2E_PATH_ENV" --config.cmd sh)"
	image_push "$layout" 1.29 "$reg/library/busybox:1.29"

	_AGNHOST_BIN="$kube_bin/agnhost"
	layout="$(_e2e_layout e2e-agnhost 2.21 _fill_agnhost --config.env "$E2E_PATH_ENV" --config.entrypoint /agnhost \
		--config.cmd pause --config.exposedports 80/tcp --config.exposedports 8080/tcp \
		--config.exposedports 8081/tcp --config.exposedports 9376/tcp)"
	image_push "$layout" 2.21 "$reg/e2e-test-images/agnhost:2.21"

	image_push "$(build_pause)" 1 "$reg/k8s.gcr.io/pause:3.2"

	_WEB_DIR=/usr/local/apache2/htdocs _WEB_PAGE='<html><body><h1>It works!</h1></body></html>'
	for v in 2.4.38-alpine 2.4.39-alpine; do
		layout="$(_e2e_layout e2e-httpd "$v" _fill_web --config.env "$E2E_PATH_ENV" \
			--config.exposedports 80/tcp "${_web_entrypoint[@]}" --config.entrypoint "$(_web_cmd "$_WEB_DIR")")"
		image_push "$layout" "$v" "$reg/library/httpd:$v"
	done

	_WEB_DIR=/usr/share/nginx/html _WEB_PAGE='<html><body><h1>Welcome to nginx!</h1></body></html>'
	for v in 1.14-alpine 1.15-alpine; do
		layout="$(_e2e_layout e2e-nginx "$v" _fill_web --config.env "$E2E_PATH_ENV" \
			--config.exposedports 80/tcp "${_web_entrypoint[@]}" --config.entrypoint "$(_web_cmd "$_WEB_DIR")")"
		image_push "$layout" "$v" "$reg/library/nginx:$v"
	done

	layout="$(_e2e_layout e2e-nonroot 1.0 _fill_busybox --config.env "$E2E_PATH_ENV" --config.user 1234 --config.cmd sh)"
	image_push "$layout" 1.0 "$reg/kubernetes-e2e-test-images/nonroot:1.0"

	layout="$(_e2e_layout e2e-jessie-dnsutils 1.0 _fill_dnsutils --config.env "$E2E_PATH_ENV" --config.cmd sh)"
	image_push "$layout" 1.0 "$reg/kubernetes-e2e-test-images/jessie-dnsutils:1.0"
}
