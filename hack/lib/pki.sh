# shellcheck shell=bash
# The cluster's CA and certificates (openssl), static tokens and kubeconfigs.
# Keys are ECDSA P-256 (PKCS#8 PEM): fast to make, read by Go and rustls alike.

# pki_key FILE: a new private key.
pki_key() {
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
	chmod 0600 "$1"
}

pki_ca() {
	mkdir -p "$PKI_DIR"
	[[ -f "$PKI_DIR/ca.crt" ]] && return 0
	pki_key "$PKI_DIR/ca.key"
	openssl req -x509 -new -key "$PKI_DIR/ca.key" -days 3650 -subj "/CN=berth-local-ca" \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
		-out "$PKI_DIR/ca.crt" 2>/dev/null
}

# pki_cert NAME CN ORG USAGE SANS: signs NAME.crt/NAME.key in $PKI_DIR with the CA.
# USAGE is serverAuth, clientAuth or both ("serverAuth,clientAuth"); SANS is a
# subjectAltName value ("IP:1.2.3.4,DNS:x") or empty; ORG may be empty.
pki_cert() {
	local name="$1" cn="$2" org="$3" usage="$4" sans="$5" subj ext
	subj="/CN=$cn"
	[[ -n "$org" ]] && subj="/O=$org$subj"
	pki_key "$PKI_DIR/$name.key"
	ext="$(mktemp)"
	{
		echo "basicConstraints=critical,CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		echo "extendedKeyUsage=$usage"
		[[ -n "$sans" ]] && echo "subjectAltName=$sans"
	} >"$ext"
	openssl req -new -key "$PKI_DIR/$name.key" -subj "$subj" 2>/dev/null |
		openssl x509 -req -CA "$PKI_DIR/ca.crt" -CAkey "$PKI_DIR/ca.key" -CAcreateserial \
			-days 825 -extfile "$ext" -out "$PKI_DIR/$name.crt" 2>/dev/null
	rm -f "$ext"
	[[ -s "$PKI_DIR/$name.crt" ]] || die "openssl could not sign $PKI_DIR/$name.crt"
}

# pki_control_plane: apiserver serving cert, the apiserver's client cert for
# the agents' :10250 (kubectl logs proxies through it), service-account keys.
pki_control_plane() {
	pki_ca
	pki_cert apiserver kube-apiserver "" serverAuth \
		"IP:127.0.0.1,IP:$BRIDGE_IP,IP:$FIRST_SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
	pki_cert apiserver-kubelet-client kube-apiserver-kubelet-client "" clientAuth ""
	# Service-account tokens are signed RS256: RSA is what every client expects there.
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI_DIR/sa.key" 2>/dev/null
	chmod 0600 "$PKI_DIR/sa.key"
	openssl pkey -in "$PKI_DIR/sa.key" -pubout -out "$PKI_DIR/sa.pub" 2>/dev/null
}

# pki_node NODE: the node's two certificates, as a kubelet has them. node-NODE serves its
# :10250 (SAN = node IP: the apiserver dials the InternalIP and checks it against the CA);
# node-NODE-client is its identity towards the API server, user system:node:NODE in group
# system:nodes, which the Node authorizer and the NodeRestriction admission plugin confine
# to that node's own Node, Lease and pods and the Secrets and ConfigMaps those pods use.
pki_node() {
	local node="$1"
	pki_cert "node-$node" "system:node:$node" system:nodes serverAuth "IP:$(node_ip "$node"),DNS:$node"
	pki_cert "node-$node-client" "system:node:$node" system:nodes clientAuth ""
}

new_token() { openssl rand -hex 24; }

# tokens_write: the apiserver's static token file. One identity per component; the
# token of each is also kept in $BERTH_STATE/tokens/USER-ish name. Nodes have none: they
# authenticate with their client certificates (pki_node, kubeconfig_write_cert).
tokens_write() {
	mkdir -p "$BERTH_STATE/tokens"
	: >"$TOKEN_FILE"
	chmod 0600 "$TOKEN_FILE"
	_token_line admin admin "system:masters"
	_token_line kube-controller-manager system:kube-controller-manager ""
	_token_line kube-scheduler system:kube-scheduler ""
	_token_line berth-controller berth-controller "berth:controllers"
}

# _token_line FILE_NAME USER GROUPS: token,user,uid,"groups"
_token_line() {
	local file="$BERTH_STATE/tokens/$1" user="$2" groups="$3" token
	token="$(new_token)"
	(umask 077 && echo "$token" >"$file")
	echo "$token,$user,$user,\"$groups\"" >>"$TOKEN_FILE"
}

# kubeconfig_write FILE TOKEN_NAME USER: a kubeconfig with the CA embedded, the
# bridge address as server (reachable from the root namespace and every host)
# and a bearer token.
kubeconfig_write() {
	local file="$1" token user="$3"
	token="$(<"$BERTH_STATE/tokens/$2")"
	mkdir -p "$(dirname "$file")"
	(
		umask 077
		cat >"$file" <<-EOF
			apiVersion: v1
			kind: Config
			clusters:
			- name: berth-local
			  cluster:
			    server: $APISERVER_URL
			    certificate-authority-data: $(base64 -w0 <"$PKI_DIR/ca.crt")
			users:
			- name: $user
			  user:
			    token: $token
			contexts:
			- name: berth-local
			  context:
			    cluster: berth-local
			    user: $user
			current-context: berth-local
		EOF
	)
}

# kubeconfig_write_cert FILE USER CERT KEY: a kubeconfig with the CA, the certificate
# and its key embedded (a node's: the kubelet's kubeconfig has the same shape).
kubeconfig_write_cert() {
	local file="$1" user="$2" cert="$3" key="$4"
	mkdir -p "$(dirname "$file")"
	(
		umask 077
		cat >"$file" <<-EOF
			apiVersion: v1
			kind: Config
			clusters:
			- name: berth-local
			  cluster:
			    server: $APISERVER_URL
			    certificate-authority-data: $(base64 -w0 <"$PKI_DIR/ca.crt")
			users:
			- name: $user
			  user:
			    client-certificate-data: $(base64 -w0 <"$cert")
			    client-key-data: $(base64 -w0 <"$key")
			contexts:
			- name: berth-local
			  context:
			    cluster: berth-local
			    user: $user
			current-context: berth-local
		EOF
	)
}

# node_kubeconfig_write NODE FILE: NODE's kubeconfig, as system:node:NODE.
node_kubeconfig_write() {
	kubeconfig_write_cert "$2" "system:node:$1" "$PKI_DIR/node-$1-client.crt" "$PKI_DIR/node-$1-client.key"
}

# webhook_token: the bearer token the registry sends with its notifications;
# made once and kept for the state dir's lifetime.
webhook_token() {
	[[ -s "$WEBHOOK_TOKEN_FILE" ]] || (umask 077 && new_token >"$WEBHOOK_TOKEN_FILE")
	cat "$WEBHOOK_TOKEN_FILE"
}
