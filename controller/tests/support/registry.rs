//! A real registry for tests: Debian's `docker-registry` (the CNCF distribution registry, 2.8) on
//! 127.0.0.1 with a random free port, config and storage in a temporary directory, killed on drop; and a
//! small pusher that uploads blobs, image manifests and indexes over the registry's HTTP API.
//!
//! Tests that use it fail (they do not skip) when the binary is missing: run `hack/deps.sh`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest as _;

/// Media types pushed by the helpers.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A running `docker-registry`, stopped when dropped.
pub struct LocalRegistry {
    child: Child,
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// The user and password it requires, if started with htpasswd authentication.
    pub basic_auth: Option<(String, String)>,
    /// The PEM of the CA that signed its certificate, if it serves TLS.
    pub ca_pem: Option<Vec<u8>>,
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn registry_binary() -> PathBuf {
    // The CNCF distribution registry 2.8, as Debian packages it.
    require_tool("docker-registry", "docker-registry")
}

/// The path of a tool the test needs, or a failure that says which Debian package to install.
pub fn require_tool(name: &str, package: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("this test needs `{name}` (Debian package {package}): run hack/deps.sh or `apt-get install -y {package}`")
        })
}

fn run(program: &PathBuf, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    assert!(
        output.status.success(),
        "{} {}: {}\n{}",
        program.display(),
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A test CA and a certificate for 127.0.0.1 signed by it, in `dir`: (certificate, key, CA PEM).
pub fn make_certificates(dir: &std::path::Path) -> (PathBuf, PathBuf, Vec<u8>) {
    let openssl = require_tool("openssl", "openssl");
    let path = |name: &str| dir.join(name).to_str().expect("utf-8 path").to_string();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=berth-test-ca"];
    ca.extend(ec);
    let (ca_key, ca_pem) = (path("ca.key"), path("ca.pem"));
    ca.extend(["-keyout", &ca_key, "-out", &ca_pem]);
    ca.extend([
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    run(&openssl, &ca);
    let (key, csr, cert, ext) = (path("tls.key"), path("tls.csr"), path("tls.pem"), path("tls.ext"));
    let mut request = vec!["req", "-subj", "/CN=127.0.0.1", "-keyout", &key, "-out", &csr];
    request.extend(ec);
    run(&openssl, &request);
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .expect("write extensions");
    let sign = [
        "x509",
        "-req",
        "-days",
        "2",
        "-in",
        &csr,
        "-CA",
        &ca_pem,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
    ];
    let mut sign = sign.to_vec();
    sign.extend(["-out", &cert, "-extfile", &ext]);
    run(&openssl, &sign);
    (cert.into(), key.into(), std::fs::read(&ca_pem).expect("read CA"))
}

fn free_port() -> u16 {
    // The port is free when asked; the registry binds it a moment later. Good enough on loopback.
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

impl LocalRegistry {
    /// An open registry (no authentication).
    pub async fn start() -> Self {
        Self::start_inner(None, false).await
    }

    /// A registry serving HTTPS with a certificate for 127.0.0.1 from a fresh test CA (made with `openssl`);
    /// the CA's PEM is in [`ca_pem`](Self::ca_pem).
    pub async fn start_with_tls() -> Self {
        Self::start_inner(None, true).await
    }

    /// A registry that requires HTTP Basic authentication with this user and password (htpasswd, bcrypt).
    pub async fn start_with_htpasswd(user: &str, password: &str) -> Self {
        Self::start_inner(Some((user.to_string(), password.to_string())), false).await
    }

    async fn start_inner(basic_auth: Option<(String, String)>, tls: bool) -> Self {
        let binary = registry_binary();
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    \
             rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n  secret: berth-test\n",
            dir.path().join("data").display()
        );
        let ca_pem = tls.then(|| {
            let (cert, key, ca) = make_certificates(dir.path());
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
            ca
        });
        if let Some((user, password)) = &basic_auth {
            let hash = bcrypt::hash(password, 5).expect("bcrypt");
            std::fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n")).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let child = Command::new(&binary)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let registry = Self {
            child,
            dir,
            host,
            basic_auth,
            ca_pem,
        };
        registry.wait_ready().await;
        registry
    }

    async fn wait_ready(&self) {
        berth_controller::registry::install_crypto_provider();
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            // Any HTTP answer (200, or 401 with htpasswd) means it is serving.
            if client
                .get(format!("http://{}/v2/", self.host))
                .send()
                .await
                .is_ok()
            {
                return;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
                panic!(
                    "docker-registry did not answer on {} within 15 s; its log:\n{log}",
                    self.host
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Builds a one-layer busybox image as an OCI layout with `umoci` (no daemon, as `hack/images.sh`
    /// does) and pushes it with `skopeo` to `repository:tag`; returns the digest `skopeo inspect` reports.
    pub fn push_busybox_with_skopeo(&self, repository: &str, tag: &str) -> String {
        let umoci = require_tool("umoci", "umoci");
        let skopeo = require_tool("skopeo", "skopeo");
        let busybox = PathBuf::from("/bin/busybox");
        assert!(
            busybox.is_file(),
            "this test needs /bin/busybox (Debian package busybox-static): run hack/deps.sh"
        );
        let work = tempfile::tempdir().expect("temp dir");
        let layout = work.path().join("layout");
        let bundle = work.path().join("bundle");
        let (layout_s, bundle_s) = (layout.to_str().unwrap(), bundle.to_str().unwrap());
        let image = format!("{layout_s}:{tag}");
        run(&umoci, &["init", "--layout", layout_s]);
        run(&umoci, &["new", "--image", &image]);
        run(&umoci, &["unpack", "--rootless", "--image", &image, bundle_s]);
        let bin = bundle.join("rootfs/bin");
        std::fs::create_dir_all(&bin).expect("rootfs/bin");
        std::fs::copy(&busybox, bin.join("busybox")).expect("copy busybox");
        run(&umoci, &["repack", "--image", &image, bundle_s]);
        run(
            &umoci,
            &[
                "config",
                "--image",
                &image,
                "--os",
                "linux",
                "--architecture",
                "amd64",
            ],
        );
        let destination = format!("docker://{}/{repository}:{tag}", self.host);
        let mut copy = vec!["copy", "--quiet", "--dest-tls-verify=false"];
        let creds = self
            .basic_auth
            .as_ref()
            .map(|(u, p)| format!("{u}:{p}"))
            .unwrap_or_default();
        if !creds.is_empty() {
            copy.extend(["--dest-creds", creds.as_str()]);
        }
        let source = format!("oci:{image}");
        copy.extend([source.as_str(), destination.as_str()]);
        run(&skopeo, &copy);
        let mut inspect = vec!["inspect", "--tls-verify=false", "--format", "{{.Digest}}"];
        if !creds.is_empty() {
            inspect.extend(["--creds", creds.as_str()]);
        }
        inspect.push(destination.as_str());
        run(&skopeo, &inspect).trim().to_string()
    }

    /// A pusher with the registry's own credentials.
    pub fn pusher(&self) -> Pusher {
        berth_controller::registry::install_crypto_provider();
        let scheme = if self.ca_pem.is_some() { "https" } else { "http" };
        // The pusher is test scaffolding: it does not verify the test registry's certificate.
        let client = reqwest::Client::builder()
            .tls_danger_accept_invalid_certs(true)
            .build()
            .expect("client");
        Pusher {
            client,
            base: format!("{scheme}://{}", self.host),
            auth: self.basic_auth.clone(),
        }
    }
}

/// Uploads content to a registry over its HTTP API.
pub struct Pusher {
    client: reqwest::Client,
    base: String,
    auth: Option<(String, String)>,
}

/// A pushed manifest: its digest, size and media type (what an index entry needs).
#[derive(Debug, Clone)]
pub struct Pushed {
    pub digest: String,
    pub size: usize,
    pub media_type: &'static str,
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

impl Pusher {
    fn with_auth(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    /// Uploads a blob (monolithic upload: POST then PUT with the digest).
    pub async fn push_blob(&self, repository: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        let started = self
            .with_auth(
                self.client
                    .post(format!("{}/v2/{repository}/blobs/uploads/", self.base)),
            )
            .send()
            .await;
        let started = started.expect("POST blob upload");
        assert_eq!(
            started.status(),
            202,
            "POST blob upload: {}",
            started.text().await.unwrap_or_default()
        );
        let location = started.headers()["location"]
            .to_str()
            .expect("location")
            .to_string();
        let mut url = if location.starts_with('/') {
            reqwest::Url::parse(&format!("{}{location}", self.base))
        } else {
            reqwest::Url::parse(&location)
        }
        .expect("upload URL");
        url.query_pairs_mut().append_pair("digest", &digest);
        let put = self
            .with_auth(self.client.put(url))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .expect("PUT blob");
        assert_eq!(
            put.status(),
            201,
            "PUT blob: {}",
            put.text().await.unwrap_or_default()
        );
        digest
    }

    /// Uploads a manifest under `reference` (a tag, or its digest).
    pub async fn push_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &'static str,
        bytes: &[u8],
    ) -> Pushed {
        let response = self
            .with_auth(
                self.client
                    .put(format!("{}/v2/{repository}/manifests/{reference}", self.base)),
            )
            .header("content-type", media_type)
            .body(bytes.to_vec())
            .send()
            .await
            .expect("PUT manifest");
        assert_eq!(
            response.status(),
            201,
            "PUT manifest: {}",
            response.text().await.unwrap_or_default()
        );
        Pushed {
            digest: sha256(bytes),
            size: bytes.len(),
            media_type,
        }
    }

    /// Pushes a small single-platform OCI image (config + one layer) whose content depends on `marker`,
    /// and tags it `tag` (or pushes it by digest only when `tag` is `None`).
    pub async fn push_image(
        &self,
        repository: &str,
        tag: Option<&str>,
        platform: (&str, &str),
        marker: &str,
    ) -> Pushed {
        let (os, arch) = platform;
        let config = format!(
            r#"{{"architecture":"{arch}","os":"{os}","config":{{"Labels":{{"berth.test/marker":"{marker}"}}}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
        );
        let layer = format!("layer of {marker} for {os}/{arch}").into_bytes();
        let config_digest = self.push_blob(repository, config.as_bytes()).await;
        let layer_digest = self.push_blob(repository, &layer).await;
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer_digest}","size":{}}}]}}"#,
            config.len(),
            layer.len()
        );
        let digest = sha256(manifest.as_bytes());
        self.push_manifest(
            repository,
            tag.unwrap_or(&digest),
            OCI_MANIFEST,
            manifest.as_bytes(),
        )
        .await
    }

    /// Pushes an OCI index of already pushed manifests, each with its platform `(os, arch)`, under `tag`.
    pub async fn push_index(
        &self,
        repository: &str,
        tag: &str,
        entries: &[((&str, &str), &Pushed)],
    ) -> Pushed {
        let manifests: Vec<String> = entries
            .iter()
            .map(|((os, arch), m)| {
                format!(
                    r#"{{"mediaType":"{}","digest":"{}","size":{},"platform":{{"os":"{os}","architecture":"{arch}"}}}}"#,
                    m.media_type, m.digest, m.size
                )
            })
            .collect();
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
            manifests.join(",")
        );
        self.push_manifest(repository, tag, OCI_INDEX, index.as_bytes())
            .await
    }
}
