//! Registry credentials from Kubernetes pull secrets (`kubernetes.io/dockerconfigjson` and the older
//! `kubernetes.io/dockercfg`), looked up by registry host the way the kubelet does.
//!
//! Pure functions over the secret's data. Nothing here logs, and no error message contains secret data:
//! JSON errors are reduced to a line and column, because serde's messages quote the offending value.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use k8s_openapi::ByteString;
use serde::Deserialize;

use super::reference::DOCKER_HUB;

/// `type` of a secret holding a `~/.docker/config.json`.
pub const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
/// Its data key.
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
/// `type` of a secret holding a legacy `~/.dockercfg`.
pub const DOCKERCFG_TYPE: &str = "kubernetes.io/dockercfg";
/// Its data key.
pub const DOCKERCFG_KEY: &str = ".dockercfg";

/// A user name and password (or token) for HTTP Basic authentication and token requests.
///
/// `Debug` shows the user name and hides the password; there is no `Display`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    username: String,
    password: String,
}

impl Credentials {
    /// Credentials from a user name and a password.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The user name (not secret; may appear in messages).
    pub fn username(&self) -> &str {
        &self.username
    }

    pub(crate) fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A pull secret that cannot be used. Messages name the key or registry, never secret content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// The secret's type is not one Berth reads.
    #[error(
        "secret type {0:?} holds no registry credentials; use {DOCKER_CONFIG_JSON_TYPE} (or {DOCKERCFG_TYPE})"
    )]
    UnsupportedType(String),
    /// The data key for the type is missing.
    #[error("the secret has no {0:?} key; create it with `kubectl create secret docker-registry`")]
    MissingKey(&'static str),
    /// The data is not the JSON shape expected.
    #[error(
        "{key} is not valid JSON of the expected shape (line {line}, column {column}); recreate the secret"
    )]
    Json {
        /// The data key.
        key: &'static str,
        /// Where the error is.
        line: usize,
        /// Where the error is.
        column: usize,
    },
    /// An `auth` field is not base64 of `user:password`.
    #[error("the `auth` entry for {registry:?} is not base64 of \"user:password\"; recreate the secret")]
    BadAuth {
        /// The registry key of the entry.
        registry: String,
    },
}

#[derive(Deserialize)]
struct DockerConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Credentials by registry, from one or more pull secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RegistryCredentials {
    /// (host, path prefix) → credentials, host normalised, Docker Hub aliases folded into `docker.io`.
    entries: BTreeMap<(String, String), Credentials>,
}

impl fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|((h, p), c)| (format!("{h}{p}"), c)))
            .finish()
    }
}

impl RegistryCredentials {
    /// Reads a secret's `type` and `data`. Accepts `kubernetes.io/dockerconfigjson` (`.dockerconfigjson`)
    /// and `kubernetes.io/dockercfg` (`.dockercfg`).
    pub fn from_secret(type_: &str, data: &BTreeMap<String, ByteString>) -> Result<Self, CredentialsError> {
        match type_ {
            DOCKER_CONFIG_JSON_TYPE => {
                Self::from_dockerconfigjson(&secret_bytes(data, DOCKER_CONFIG_JSON_KEY)?.0)
            }
            DOCKERCFG_TYPE => Self::from_dockercfg(&secret_bytes(data, DOCKERCFG_KEY)?.0),
            other => Err(CredentialsError::UnsupportedType(other.to_string())),
        }
    }

    /// Reads a `~/.docker/config.json`: `{"auths": {host: {"auth": base64("user:pass")} | {"username",
    /// "password"}}}`.
    pub fn from_dockerconfigjson(bytes: &[u8]) -> Result<Self, CredentialsError> {
        let config: DockerConfigJson =
            serde_json::from_slice(bytes).map_err(|e| json_error(DOCKER_CONFIG_JSON_KEY, &e))?;
        Self::from_entries(config.auths)
    }

    /// Reads a legacy `~/.dockercfg`: `{host: {"auth": …, "email": …}}`.
    pub fn from_dockercfg(bytes: &[u8]) -> Result<Self, CredentialsError> {
        let auths: BTreeMap<String, AuthEntry> =
            serde_json::from_slice(bytes).map_err(|e| json_error(DOCKERCFG_KEY, &e))?;
        Self::from_entries(auths)
    }

    fn from_entries(auths: BTreeMap<String, AuthEntry>) -> Result<Self, CredentialsError> {
        let mut entries = BTreeMap::new();
        for (registry, entry) in auths {
            // As the kubelet does: a non-empty `auth` wins over `username`/`password`. Entries with only an
            // `identitytoken` (an OAuth refresh token) are not supported and are skipped.
            let credentials = match entry.auth.as_deref().filter(|a| !a.is_empty()) {
                Some(auth) => decode_auth(auth).ok_or_else(|| CredentialsError::BadAuth {
                    registry: registry.clone(),
                })?,
                None => match (entry.username, entry.password) {
                    (Some(u), Some(p)) if !u.is_empty() => Credentials::new(u, p),
                    _ => continue,
                },
            };
            entries.insert(normalise_key(&registry), credentials);
        }
        Ok(Self { entries })
    }

    /// Adds the entries of `other`; entries already present win (the first secret listed wins, like the
    /// kubelet's order of `imagePullSecrets`).
    pub fn merge(&mut self, other: RegistryCredentials) {
        for (key, credentials) in other.entries {
            self.entries.entry(key).or_insert(credentials);
        }
    }

    /// Whether there are no usable entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The credentials for `registry` (as in a reference: `quay.io`, `127.0.0.1:5000`, `docker.io`) and
    /// `repository`. An entry with a path (`quay.io/team`) applies to repositories under it, and the
    /// longest such path wins over a host-only entry.
    pub fn lookup(&self, registry: &str, repository: &str) -> Option<&Credentials> {
        let host = normalise_host(registry);
        self.entries
            .iter()
            .filter(|((h, path), _)| {
                *h == host
                    && (path.is_empty()
                        || repository == path
                        || repository
                            .strip_prefix(path.as_str())
                            .is_some_and(|rest| rest.starts_with('/')))
            })
            .max_by_key(|((_, path), _)| path.len())
            .map(|(_, credentials)| credentials)
    }
}

fn secret_bytes<'a>(
    data: &'a BTreeMap<String, ByteString>,
    key: &'static str,
) -> Result<&'a ByteString, CredentialsError> {
    data.get(key).ok_or(CredentialsError::MissingKey(key))
}

fn json_error(key: &'static str, e: &serde_json::Error) -> CredentialsError {
    CredentialsError::Json {
        key,
        line: e.line(),
        column: e.column(),
    }
}

fn decode_auth(auth: &str) -> Option<Credentials> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    (!user.is_empty()).then(|| Credentials::new(user, password))
}

/// `https://index.docker.io/v1/` → (`docker.io`, ``); `quay.io/team/` → (`quay.io`, `team`).
fn normalise_key(key: &str) -> (String, String) {
    let key = key.trim();
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let (host, path) = key.split_once('/').unwrap_or((key, ""));
    let host = normalise_host(host);
    // Docker Hub's key carries the API version (`/v1/`), not a repository path.
    let path = if host == DOCKER_HUB && (path.is_empty() || path.starts_with("v1") || path.starts_with("v2"))
    {
        ""
    } else {
        path.trim_end_matches('/')
    };
    (host, path.to_string())
}

fn normalise_host(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB.to_string(),
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t-pa55";

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn secret(type_key: &str, json: String) -> BTreeMap<String, ByteString> {
        BTreeMap::from([(type_key.to_string(), ByteString(json.into_bytes()))])
    }

    #[test]
    fn dockerconfigjson_auth_and_username_password() {
        let json = format!(
            r#"{{"auths":{{
                "quay.io":{{"auth":"{}"}},
                "https://index.docker.io/v1/":{{"username":"hub","password":"{SECRET}"}},
                "127.0.0.1:5000":{{"username":"ignored","password":"x","auth":"{}"}},
                "ghcr.io":{{"identitytoken":"abc"}}
            }}}}"#,
            b64(&format!("robot:{SECRET}")),
            b64("local:pa:ss")
        );
        let creds =
            RegistryCredentials::from_secret(DOCKER_CONFIG_JSON_TYPE, &secret(DOCKER_CONFIG_JSON_KEY, json))
                .unwrap();
        let quay = creds.lookup("quay.io", "org/app").unwrap();
        assert_eq!((quay.username(), quay.password()), ("robot", SECRET));
        let hub = creds.lookup("docker.io", "library/busybox").unwrap();
        assert_eq!((hub.username(), hub.password()), ("hub", SECRET));
        assert_eq!(creds.lookup("index.docker.io", "x/y").unwrap().username(), "hub");
        let local = creds.lookup("127.0.0.1:5000", "app").unwrap();
        assert_eq!(
            (local.username(), local.password()),
            ("local", "pa:ss"),
            "auth wins, password may hold ':'"
        );
        assert!(
            creds.lookup("ghcr.io", "x").is_none(),
            "identity tokens are skipped"
        );
        assert!(creds.lookup("127.0.0.1:5001", "app").is_none());
        let debug = format!("{creds:?}");
        assert!(!debug.contains(SECRET) && debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn dockercfg_and_paths() {
        let json = format!(
            r#"{{"registry.example:8443":{{"auth":"{}","email":"a@b.c"}},
                "registry.example:8443/team":{{"auth":"{}"}}}}"#,
            b64("all:one"),
            b64("team:two")
        );
        let creds = RegistryCredentials::from_secret(DOCKERCFG_TYPE, &secret(DOCKERCFG_KEY, json)).unwrap();
        assert_eq!(
            creds
                .lookup("registry.example:8443", "other/app")
                .unwrap()
                .username(),
            "all"
        );
        assert_eq!(
            creds
                .lookup("registry.example:8443", "team/app")
                .unwrap()
                .username(),
            "team"
        );
        assert_eq!(
            creds
                .lookup("REGISTRY.example:8443", "teamx/app")
                .unwrap()
                .username(),
            "all"
        );
    }

    #[test]
    fn merge_keeps_the_first() {
        let mut a = RegistryCredentials::from_dockerconfigjson(
            br#"{"auths":{"q.io":{"username":"a","password":"1"}}}"#,
        )
        .unwrap();
        let b = RegistryCredentials::from_dockerconfigjson(
            br#"{"auths":{"q.io":{"username":"b","password":"2"},"r.io":{"username":"c","password":"3"}}}"#,
        )
        .unwrap();
        a.merge(b);
        assert_eq!(a.lookup("q.io", "x").unwrap().username(), "a");
        assert_eq!(a.lookup("r.io", "x").unwrap().username(), "c");
    }

    #[test]
    fn errors_never_quote_secret_data() {
        let data = secret(
            DOCKER_CONFIG_JSON_KEY,
            format!(r#"{{"auths":{{"q.io":{{"auth":["{SECRET}"]}}}}}}"#),
        );
        let e = RegistryCredentials::from_secret(DOCKER_CONFIG_JSON_TYPE, &data).unwrap_err();
        assert!(matches!(e, CredentialsError::Json { .. }), "{e:?}");
        assert!(
            !e.to_string().contains(SECRET) && !format!("{e:?}").contains(SECRET),
            "{e}"
        );

        let data = secret(
            DOCKER_CONFIG_JSON_KEY,
            format!(r#"{{"auths":{{"q.io":{{"auth":"{SECRET}"}}}}}}"#),
        );
        let e = RegistryCredentials::from_secret(DOCKER_CONFIG_JSON_TYPE, &data).unwrap_err();
        assert_eq!(
            e,
            CredentialsError::BadAuth {
                registry: "q.io".into()
            }
        );
        assert!(!e.to_string().contains(SECRET));

        let e = RegistryCredentials::from_secret("Opaque", &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("Opaque"));
        let e = RegistryCredentials::from_secret(DOCKERCFG_TYPE, &BTreeMap::new()).unwrap_err();
        assert_eq!(e, CredentialsError::MissingKey(".dockercfg"));
    }

    #[test]
    fn debug_redacts_the_password() {
        let c = Credentials::new("robot", SECRET);
        let debug = format!("{c:?}");
        assert!(debug.contains("robot") && !debug.contains(SECRET), "{debug}");
    }
}
