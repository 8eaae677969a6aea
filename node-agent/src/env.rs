//! A container's environment as the kubelet 1.20 builds it (`makeEnvironmentVariables`):
//! `envFrom` (ConfigMaps and Secrets, with prefix; keys that are not valid variable names are
//! skipped and reported), then `env` in order (literal values with `$(VAR)` expansion,
//! `fieldRef`, `resourceFieldRef`, `configMapKeyRef`, `secretKeyRef`), then the service
//! variables (`getServiceEnvVarMap`: the `kubernetes` Service of `default` always, the
//! Services of the pod's namespace when `enableServiceLinks`), which never override.
//!
//! [`build`] is pure over the objects [`fetch`] read; a missing ConfigMap or Secret (not
//! optional) is an [`EnvError`] whose text is the kubelet's, shown as the container's
//! `CreateContainerConfigError`. Values never reach a log: [`Built`] has no `Debug` of its
//! values.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use kube::Client;
use kube::api::{Api, ListParams};

use crate::cri::api::KeyValue;
use crate::downward::{self, Allocatable};
use crate::error::{Error, Result};

/// What the environment may refer to besides the pod: the node, and the objects read.
#[derive(Default)]
pub struct Sources {
    /// The node's name.
    pub node_name: String,
    /// The node's IP.
    pub host_ip: String,
    /// The pod's IP.
    pub pod_ip: String,
    /// Defaults of unset limits.
    pub allocatable: Allocatable,
    /// ConfigMaps of the pod's namespace by name; `None` when it does not exist.
    pub config_maps: HashMap<String, Option<ConfigMap>>,
    /// Secrets of the pod's namespace by name; `None` when it does not exist.
    pub secrets: HashMap<String, Option<Secret>>,
    /// The Services whose variables are injected (see [`service_vars`]).
    pub services: Vec<Service>,
}

/// Why the environment cannot be built (the container waits, `CreateContainerConfigError`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// A referenced ConfigMap does not exist.
    #[error("configmap {0:?} not found")]
    ConfigMapNotFound(String),
    /// A referenced Secret does not exist.
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    /// A referenced key is not in the ConfigMap.
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKey {
        /// The key.
        key: String,
        /// Namespace.
        namespace: String,
        /// ConfigMap.
        name: String,
    },
    /// A referenced key is not in the Secret.
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKey {
        /// The key.
        key: String,
        /// Namespace.
        namespace: String,
        /// Secret.
        name: String,
    },
    /// A `fieldRef` the downward API does not offer.
    #[error("unsupported fieldPath: {0}")]
    FieldPath(String),
    /// A `resourceFieldRef` without a value.
    #[error("{0}")]
    Resource(#[from] downward::ResourceError),
}

/// The environment, and the warnings to publish (`InvalidEnvironmentVariableNames`).
pub struct Built {
    /// The variables, in order.
    pub vars: Vec<KeyValue>,
    /// One message per `envFrom` source with skipped keys (names only, never values).
    pub invalid: Vec<String>,
}

/// True for a valid variable name (`IsEnvVarName`: `[-._a-zA-Z][-._a-zA-Z0-9]*`).
pub fn is_env_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '-' | '.' | '_'))
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// Expands `$(VAR)` with `lookup` as the kubelet (`$$` escapes; unknown names stay as written).
pub fn expand(value: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(end) = after.strip_prefix('(').and_then(|a| a.find(')')) {
            let name = &after[1..=end];
            match lookup(name) {
                Some(v) => out.push_str(&v),
                None => out.push_str(&rest[i..i + end + 3]),
            }
            rest = &after[end + 2..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Expands `value` against a built environment (the last value of a name wins).
pub fn expand_with(value: &str, vars: &[KeyValue]) -> String {
    expand(value, &|n| {
        vars.iter()
            .rev()
            .find(|kv| kv.key == n)
            .map(|kv| kv.value.clone())
    })
}

fn env_name(s: &str) -> String {
    s.replace('-', "_").to_uppercase()
}

fn service_ip_set(s: &Service) -> bool {
    s.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_some_and(|ip| !ip.is_empty() && ip != "None")
}

/// The service variables of `services` (`envvars.FromServices`), by name.
pub fn service_vars(pod_ns: &str, enable_links: bool, services: &[Service]) -> BTreeMap<String, String> {
    let mut chosen: BTreeMap<String, &Service> = BTreeMap::new();
    for s in services.iter().filter(|s| service_ip_set(s)) {
        let name = s.metadata.name.clone().unwrap_or_default();
        let ns = s.metadata.namespace.as_deref().unwrap_or("");
        if ns == "default" && name == "kubernetes" {
            chosen.entry(name).or_insert(s);
        } else if ns == pod_ns && enable_links {
            chosen.insert(name, s);
        }
    }
    let mut m = BTreeMap::new();
    for (name, s) in chosen {
        let Some(spec) = s.spec.as_ref() else { continue };
        let ip = spec.cluster_ip.clone().unwrap_or_default();
        let ports = spec.ports.clone().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let prefix = env_name(&name);
        m.insert(format!("{prefix}_SERVICE_HOST"), ip.clone());
        m.insert(format!("{prefix}_SERVICE_PORT"), first.port.to_string());
        for p in &ports {
            if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
                m.insert(
                    format!("{prefix}_SERVICE_PORT_{}", env_name(pn)),
                    p.port.to_string(),
                );
            }
        }
        let host = |port: i32| {
            if ip.contains(':') {
                format!("[{ip}]:{port}")
            } else {
                format!("{ip}:{port}")
            }
        };
        for (i, p) in ports.iter().enumerate() {
            let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            let lower = proto.to_lowercase();
            if i == 0 {
                m.insert(format!("{prefix}_PORT"), format!("{lower}://{}", host(p.port)));
            }
            let pp = format!("{prefix}_PORT_{}_{}", p.port, proto.to_uppercase());
            m.insert(pp.clone(), format!("{lower}://{}", host(p.port)));
            m.insert(format!("{pp}_PROTO"), lower.clone());
            m.insert(format!("{pp}_PORT"), p.port.to_string());
            m.insert(format!("{pp}_ADDR"), ip.clone());
        }
    }
    m
}

/// The ConfigMaps and Secrets the environment of `c` reads.
pub fn references(c: &Container) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut cms = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for f in c.env_from.iter().flatten() {
        if let Some(r) = &f.config_map_ref {
            cms.insert(r.name.clone());
        }
        if let Some(r) = &f.secret_ref {
            secrets.insert(r.name.clone());
        }
    }
    for e in c.env.iter().flatten() {
        let Some(from) = &e.value_from else { continue };
        if let Some(r) = &from.config_map_key_ref {
            cms.insert(r.name.clone());
        }
        if let Some(r) = &from.secret_key_ref {
            secrets.insert(r.name.clone());
        }
    }
    (cms, secrets)
}

/// An ordered map: a later value replaces an earlier one in place.
#[derive(Default)]
struct Ordered(Vec<KeyValue>);

impl Ordered {
    fn set(&mut self, key: String, value: String) {
        match self.0.iter_mut().find(|kv| kv.key == key) {
            Some(kv) => kv.value = value,
            None => self.0.push(KeyValue { key, value }),
        }
    }
    fn get(&self, key: &str) -> Option<String> {
        self.0.iter().find(|kv| kv.key == key).map(|kv| kv.value.clone())
    }
}

/// The environment of container `c` of `pod`.
pub fn build(pod: &Pod, c: &Container, src: &Sources) -> Result<Built, EnvError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let mut service = service_vars(ns, links, &src.services);
    let mut env = Ordered::default();
    let mut invalid = Vec::new();
    for f in c.env_from.iter().flatten() {
        let prefix = f.prefix.as_deref().unwrap_or("");
        let (kind, name, data): (&str, &str, Vec<(String, String)>) = if let Some(r) = &f.config_map_ref {
            match src.config_maps.get(&r.name).and_then(Option::as_ref) {
                Some(cm) => (
                    "configMap",
                    &r.name,
                    cm.data
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
                None if r.optional == Some(true) => continue,
                None => return Err(EnvError::ConfigMapNotFound(r.name.clone())),
            }
        } else if let Some(r) = &f.secret_ref {
            match src.secrets.get(&r.name).and_then(Option::as_ref) {
                Some(s) => (
                    "secret",
                    &r.name,
                    s.data
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
                        .collect(),
                ),
                None if r.optional == Some(true) => continue,
                None => return Err(EnvError::SecretNotFound(r.name.clone())),
            }
        } else {
            continue;
        };
        let mut bad = Vec::new();
        for (k, v) in data {
            let k = format!("{prefix}{k}");
            if is_env_var_name(&k) {
                env.set(k, v);
            } else {
                bad.push(k);
            }
        }
        if !bad.is_empty() {
            bad.sort();
            invalid.push(format!(
                "Keys [{}] from the EnvFrom {kind} {ns}/{name} were skipped since they are considered invalid environment variable names.",
                bad.join(", ")
            ));
        }
    }
    for e in c.env.iter().flatten() {
        let value = match (e.value.as_deref().filter(|v| !v.is_empty()), &e.value_from) {
            (Some(v), _) => expand(v, &|n| env.get(n).or_else(|| service.get(n).cloned())),
            (None, Some(from)) => {
                if let Some(f) = &from.field_ref {
                    downward::env_field(pod, &src.node_name, &src.host_ip, &src.pod_ip, &f.field_path)
                        .ok_or_else(|| EnvError::FieldPath(f.field_path.clone()))?
                } else if let Some(r) = &from.resource_field_ref {
                    downward::resource_field(c, r, src.allocatable)?
                } else if let Some(r) = &from.config_map_key_ref {
                    let optional = r.optional == Some(true);
                    let Some(cm) = src.config_maps.get(&r.name).and_then(Option::as_ref) else {
                        if optional {
                            continue;
                        }
                        return Err(EnvError::ConfigMapNotFound(r.name.clone()));
                    };
                    match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => {
                            return Err(EnvError::ConfigMapKey {
                                key: r.key.clone(),
                                namespace: ns.into(),
                                name: r.name.clone(),
                            });
                        }
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    let optional = r.optional == Some(true);
                    let Some(s) = src.secrets.get(&r.name).and_then(Option::as_ref) else {
                        if optional {
                            continue;
                        }
                        return Err(EnvError::SecretNotFound(r.name.clone()));
                    };
                    match s.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                        None if optional => continue,
                        None => {
                            return Err(EnvError::SecretKey {
                                key: r.key.clone(),
                                namespace: ns.into(),
                                name: r.name.clone(),
                            });
                        }
                    }
                } else {
                    String::new()
                }
            }
            (None, None) => String::new(),
        };
        service.remove(&e.name);
        env.set(e.name.clone(), value);
    }
    let mut vars = env.0;
    for (k, v) in service {
        if !vars.iter().any(|kv| kv.key == k) {
            vars.push(KeyValue { key: k, value: v });
        }
    }
    Ok(Built { vars, invalid })
}

/// Reads `name` of the namespace's `kind`; `None` when it does not exist.
pub(crate) async fn get_opt<K>(api: &Api<K>, what: &str, name: &str) -> Result<Option<K>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get(name).await {
        Ok(o) => Ok(Some(o)),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
        Err(e) => Err(Error::kube(format!("reading {what} {name}"), e)),
    }
}

/// Reads what the environment of `c` refers to: its ConfigMaps and Secrets, and the Services
/// (the pod's namespace when `enableServiceLinks`, and `default/kubernetes`).
pub async fn fetch(client: &Client, pod: &Pod, c: &Container, src: &mut Sources) -> Result<()> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let (cms, secrets) = references(c);
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    for name in cms {
        let o = get_opt(&cm_api, "configmap", &name).await?;
        src.config_maps.insert(name, o);
    }
    let secret_api: Api<Secret> = Api::namespaced(client.clone(), ns);
    for name in secrets {
        let o = get_opt(&secret_api, "secret", &name).await?;
        src.secrets.insert(name, o);
    }
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let default_api: Api<Service> = Api::namespaced(client.clone(), "default");
    if let Some(k) = get_opt(&default_api, "service", "kubernetes").await? {
        src.services.push(k);
    }
    if links {
        let api: Api<Service> = Api::namespaced(client.clone(), ns);
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| Error::kube(format!("listing the services of {ns}"), e))?;
        src.services.extend(list.items);
    }
    Ok(())
}

#[cfg(test)]
#[path = "env_tests.rs"]
mod tests;
