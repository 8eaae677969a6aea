//! The files of configMap, secret, downwardAPI and projected volumes, as the kubelet's
//! `MakePayload`s: every key (or the listed `items` with their paths and modes), `defaultMode`
//! 0644, missing objects and keys an error unless `optional`. Pure over the objects read.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, ServiceAccountTokenProjection, Volume,
};

use super::atomic::{File, Payload};
use crate::downward::{self, Allocatable};

/// The default file mode of API-data volumes.
pub const DEFAULT_MODE: i32 = 0o644;

/// What the payloads are made from.
#[derive(Default)]
pub struct Inputs {
    /// ConfigMaps by name; `None` when it does not exist.
    pub config_maps: HashMap<String, Option<ConfigMap>>,
    /// Secrets by name; `None` when it does not exist.
    pub secrets: HashMap<String, Option<Secret>>,
    /// Service-account tokens by [`token_key`].
    pub tokens: HashMap<String, String>,
    /// Defaults of unset limits (resourceFieldRef).
    pub allocatable: Allocatable,
}

/// The key of a token request: audience and lifetime.
pub fn token_key(t: &ServiceAccountTokenProjection) -> String {
    format!(
        "{}|{}",
        t.audience.as_deref().unwrap_or(""),
        t.expiration_seconds.unwrap_or(3600)
    )
}

fn mode(m: Option<i32>, default: i32) -> u32 {
    u32::try_from(m.unwrap_or(default)).unwrap_or(0o644) & 0o7777
}

/// Maps `data` through `items` (all keys when there are none).
fn project(
    data: &HashMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: i32,
    optional: bool,
    missing_key: &dyn Fn(&str) -> String,
    out: &mut Payload,
) -> Result<(), String> {
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in data {
                out.insert(
                    k.clone(),
                    File {
                        data: v.clone(),
                        mode: mode(None, default_mode),
                    },
                );
            }
        }
        Some(items) => {
            for it in items {
                match data.get(&it.key) {
                    Some(v) => {
                        out.insert(
                            it.path.clone(),
                            File {
                                data: v.clone(),
                                mode: mode(it.mode, default_mode),
                            },
                        );
                    }
                    None if optional => {}
                    None => return Err(missing_key(&it.key)),
                }
            }
        }
    }
    Ok(())
}

fn config_map_data(cm: &ConfigMap) -> HashMap<String, Vec<u8>> {
    let mut m: HashMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        m.insert(k.clone(), v.0.clone());
    }
    m
}

fn secret_data(s: &Secret) -> HashMap<String, Vec<u8>> {
    s.data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}

/// The keys of a ConfigMap or Secret (`data`, `None` when it does not exist) projected into
/// `out`; `kind` and `missing_key` word the errors as the kubelet's.
#[allow(
    clippy::too_many_arguments,
    reason = "one call per volume source, all fields named there"
)]
fn object(
    data: Option<HashMap<String, Vec<u8>>>,
    kind: &str,
    missing_key: &dyn Fn(&str) -> String,
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    default_mode: i32,
    optional: bool,
    out: &mut Payload,
) -> Result<(), String> {
    match data {
        Some(data) => project(&data, items, default_mode, optional, missing_key, out),
        None if optional => Ok(()),
        None => Err(format!("{kind} {name:?} not found")),
    }
}

fn config_map(
    inputs: &Inputs,
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    default_mode: i32,
    optional: bool,
    out: &mut Payload,
) -> Result<(), String> {
    let data = inputs
        .config_maps
        .get(name)
        .and_then(Option::as_ref)
        .map(config_map_data);
    let missing = |k: &str| format!("configmap references non-existent config key: {k}");
    object(
        data,
        "configmap",
        &missing,
        name,
        items,
        default_mode,
        optional,
        out,
    )
}

fn secret(
    inputs: &Inputs,
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    default_mode: i32,
    optional: bool,
    out: &mut Payload,
) -> Result<(), String> {
    let data = inputs.secrets.get(name).and_then(Option::as_ref).map(secret_data);
    let missing = |k: &str| format!("references non-existent secret key: {k}");
    object(data, "secret", &missing, name, items, default_mode, optional, out)
}

fn downward_items(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: i32,
    alloc: Allocatable,
    out: &mut Payload,
) -> Result<(), String> {
    for it in items {
        let value = if let Some(f) = &it.field_ref {
            downward::metadata_field(pod, &f.field_path)
                .ok_or_else(|| format!("unsupported fieldPath: {}", f.field_path))?
        } else if let Some(r) = &it.resource_field_ref {
            downward::pod_resource_field(pod, r, alloc).map_err(|e| e.to_string())?
        } else {
            continue;
        };
        out.insert(
            it.path.clone(),
            File {
                data: value.into_bytes(),
                mode: mode(it.mode, default_mode),
            },
        );
    }
    Ok(())
}

/// The service-account token projections of volume `v`.
pub fn tokens(v: &Volume) -> Vec<&ServiceAccountTokenProjection> {
    v.projected
        .iter()
        .flat_map(|p| p.sources.iter().flatten())
        .filter_map(|s| s.service_account_token.as_ref())
        .collect()
}

/// The ConfigMaps and Secrets volume `v` reads.
pub fn references(v: &Volume) -> (Vec<String>, Vec<String>) {
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    if let Some(c) = &v.config_map {
        cms.push(c.name.clone());
    }
    if let Some(s) = &v.secret {
        secrets.push(s.secret_name.clone().unwrap_or_default());
    }
    for s in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
        if let Some(c) = &s.config_map {
            cms.push(c.name.clone());
        }
        if let Some(x) = &s.secret {
            secrets.push(x.name.clone());
        }
    }
    (cms, secrets)
}

/// The files of API-data volume `v` of `pod`; `Ok(None)` for other volume types.
pub fn payload(pod: &Pod, v: &Volume, inputs: &Inputs) -> Result<Option<Payload>, String> {
    let mut out = Payload::new();
    if let Some(c) = &v.config_map {
        let dm = c.default_mode.unwrap_or(DEFAULT_MODE);
        config_map(
            inputs,
            &c.name,
            c.items.as_ref(),
            dm,
            c.optional == Some(true),
            &mut out,
        )?;
    } else if let Some(s) = &v.secret {
        let dm = s.default_mode.unwrap_or(DEFAULT_MODE);
        let name = s.secret_name.as_deref().unwrap_or("");
        secret(
            inputs,
            name,
            s.items.as_ref(),
            dm,
            s.optional == Some(true),
            &mut out,
        )?;
    } else if let Some(d) = &v.downward_api {
        let dm = d.default_mode.unwrap_or(DEFAULT_MODE);
        downward_items(
            pod,
            d.items.as_deref().unwrap_or_default(),
            dm,
            inputs.allocatable,
            &mut out,
        )?;
    } else if let Some(p) = &v.projected {
        let dm = p.default_mode.unwrap_or(DEFAULT_MODE);
        for s in p.sources.iter().flatten() {
            if let Some(c) = &s.config_map {
                config_map(
                    inputs,
                    &c.name,
                    c.items.as_ref(),
                    dm,
                    c.optional == Some(true),
                    &mut out,
                )?;
            }
            if let Some(x) = &s.secret {
                secret(
                    inputs,
                    &x.name,
                    x.items.as_ref(),
                    dm,
                    x.optional == Some(true),
                    &mut out,
                )?;
            }
            if let Some(d) = &s.downward_api {
                downward_items(
                    pod,
                    d.items.as_deref().unwrap_or_default(),
                    dm,
                    inputs.allocatable,
                    &mut out,
                )?;
            }
            if let Some(t) = &s.service_account_token {
                let token = inputs
                    .tokens
                    .get(&token_key(t))
                    .ok_or_else(|| "the service account token is not available yet".to_string())?;
                out.insert(
                    t.path.clone(),
                    File {
                        data: token.clone().into_bytes(),
                        mode: mode(None, dm),
                    },
                );
            }
            if s.cluster_trust_bundle.is_some() {
                return Err("clusterTrustBundle projections are not supported".into());
            }
        }
    } else {
        return Ok(None);
    }
    Ok(Some(out))
}

#[cfg(test)]
#[path = "payload_tests.rs"]
mod tests;
