//! `kubectl berth set triggers KIND/NAME ...`: reads the object, computes the annotation, writes it with a merge
//! patch (only that annotation changes), and prints the triggers when no change is asked for.

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch};
use kube::{Client, ResourceExt};
use serde_json::Value;

use super::merge_params;
use crate::cli::TriggersArgs;
use crate::client::Session;
use crate::decide::table::render;
use crate::decide::triggers::{self, BERTH_TRIGGERS, Change, Kind};
use crate::error::{Error, Result, is_not_found};
use crate::output;

/// Runs `set triggers`.
pub async fn run(session: &Session, args: &TriggersArgs) -> Result<String> {
    let (kind, name) = triggers::parse_object(&args.object)?;
    let ns = session.namespace.as_str();
    let (api, object) = read(&session.client, ns, kind, &name).await?;
    let key = triggers::key_in_effect(object.annotations().contains_key(BERTH_TRIGGERS));
    let current = object.annotations().get(key).cloned();

    let change = match (
        &args.from_image,
        args.remove,
        args.remove_all,
        args.auto,
        args.manual,
    ) {
        (_, _, true, _, _) => Change::RemoveAll,
        (Some(from), true, _, _, _) => Change::Remove(triggers::parse_from(from, ns)?),
        (Some(from), false, _, _, manual) => {
            let mut containers = args.containers.clone();
            let pod_spec = pod_spec(&object, kind);
            let all = triggers::containers_of(&pod_spec);
            if containers.is_empty() {
                match all.0.as_slice() {
                    [only] if all.1.is_empty() => containers.push(only.clone()),
                    _ => {
                        return Err(Error::usage(format!(
                            "{}/{name} has several containers: name the one(s) to trigger with -c ({})",
                            kind.singular(),
                            all.0.iter().chain(&all.1).cloned().collect::<Vec<_>>().join(", ")
                        )));
                    }
                }
            }
            Change::Add {
                from: triggers::parse_from(from, ns)?,
                containers,
                paused: manual,
            }
        }
        (None, _, _, true, _) => Change::SetAll { paused: false },
        (None, _, _, _, true) => Change::SetAll { paused: true },
        (None, ..) => return print(&object, kind, current.as_deref()),
    };
    let containers = triggers::containers_of(&pod_spec(&object, kind));
    let value = triggers::apply(current.as_deref(), &change, kind, &containers)?;
    let updated = if value == current {
        object
    } else {
        let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
        api.patch(&name, &merge_params(), &Patch::Merge(&patch))
            .await
            .map_err(Error::kube(format!(
                "annotate {}/{name} in {ns}",
                kind.singular()
            )))?
    };
    match args.output {
        Some(format) => output::objects(format, &[updated]),
        None => Ok(format!("{}/{name} triggers updated\n", kind.plural())),
    }
}

/// The object, read through the first API version the server serves (CronJob: `batch/v1`, else `v1beta1`).
async fn read(
    client: &Client,
    ns: &str,
    kind: Kind,
    name: &str,
) -> Result<(Api<DynamicObject>, DynamicObject)> {
    let (group, versions): (&str, &[&str]) = match kind {
        Kind::CronJob => ("batch", &["v1", "v1beta1"]),
        _ => ("apps", &["v1"]),
    };
    let kind_name = match kind {
        Kind::Deployment => "Deployment",
        Kind::StatefulSet => "StatefulSet",
        Kind::DaemonSet => "DaemonSet",
        Kind::CronJob => "CronJob",
    };
    for (i, version) in versions.iter().enumerate() {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, kind_name),
            kind.plural(),
        );
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
        match api.get(name).await {
            Ok(object) => return Ok((api, object)),
            // A 404 of a version the server does not serve: try the next; of the object: it is missing.
            Err(e)
                if is_not_found(&e)
                    && i + 1 < versions.len()
                    && !served(client, group, version, kind).await =>
            {
                continue;
            }
            Err(e) if is_not_found(&e) => {
                return Err(Error::NotFound {
                    kind: kind.singular().into(),
                    name: name.to_owned(),
                    namespace: ns.to_owned(),
                });
            }
            Err(e) => return Err(Error::kube(format!("get {}/{name} in {ns}", kind.singular()))(e)),
        }
    }
    unreachable!("the last version answers or fails")
}

/// Whether the server serves `kind` in `group/version` (Kubernetes 1.20 serves CronJob in `batch/v1beta1` only,
/// though it serves `batch/v1` for Jobs).
async fn served(client: &Client, group: &str, version: &str, kind: Kind) -> bool {
    client
        .list_api_group_resources(&format!("{group}/{version}"))
        .await
        .is_ok_and(|list| list.resources.iter().any(|r| r.name == kind.plural()))
}

fn pod_spec(object: &DynamicObject, kind: Kind) -> Value {
    let mut value = &object.data;
    for key in kind.pod_spec_keys().iter() {
        value = &value[*key];
    }
    value.clone()
}

/// The trigger table of `oc set triggers` without flags.
fn print(object: &DynamicObject, kind: Kind, current: Option<&str>) -> Result<String> {
    let rows: Vec<Vec<String>> = triggers::rows(current)?
        .into_iter()
        .map(|(value, auto)| {
            vec![
                format!("{}/{}", kind.plural(), object.name_any()),
                "image".into(),
                value,
                auto.to_string(),
            ]
        })
        .collect();
    Ok(render(&["NAME", "TYPE", "VALUE", "AUTO"], &rows))
}
