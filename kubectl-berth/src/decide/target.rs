//! The objects that carry image triggers (Deployments, StatefulSets, DaemonSets, CronJobs): how the command line
//! names them, and where each keeps its pod spec and containers.

use serde_json::Value;

use crate::error::{Error, Result};

/// The kinds that carry trigger annotations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` StatefulSet.
    StatefulSet,
    /// `apps/v1` DaemonSet.
    DaemonSet,
    /// `batch` CronJob.
    CronJob,
}

impl Kind {
    /// Reads `deployment`, `deploy`, `deployments.apps`, `sts`, `ds`, `cj`, ...
    pub fn parse(word: &str) -> Option<Kind> {
        let word = word.to_ascii_lowercase();
        let base = word.split('.').next().unwrap_or_default();
        Some(match base {
            "deployment" | "deployments" | "deploy" => Kind::Deployment,
            "statefulset" | "statefulsets" | "sts" => Kind::StatefulSet,
            "daemonset" | "daemonsets" | "ds" => Kind::DaemonSet,
            "cronjob" | "cronjobs" | "cj" => Kind::CronJob,
            _ => return None,
        })
    }

    /// The resource's plural, as `kubectl get` names it.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Deployment => "deployments",
            Kind::StatefulSet => "statefulsets",
            Kind::DaemonSet => "daemonsets",
            Kind::CronJob => "cronjobs",
        }
    }

    /// The singular lower-case name.
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Deployment => "deployment",
            Kind::StatefulSet => "statefulset",
            Kind::DaemonSet => "daemonset",
            Kind::CronJob => "cronjob",
        }
    }

    /// Where the object keeps its pod spec, as keys and as a path.
    pub fn pod_spec_keys(self) -> &'static [&'static str] {
        match self {
            Kind::CronJob => &["spec", "jobTemplate", "spec", "template", "spec"],
            _ => &["spec", "template", "spec"],
        }
    }
}

/// Reads `KIND/NAME`.
pub fn parse_object(input: &str) -> Result<(Kind, String)> {
    let (kind, name) = input
        .split_once('/')
        .filter(|(_, n)| !n.is_empty() && !n.contains('/'))
        .ok_or_else(|| {
            Error::usage(format!(
                "{input:?} must be of the form KIND/NAME, e.g. deployment/web"
            ))
        })?;
    let kind = Kind::parse(kind).ok_or_else(|| {
        Error::usage(format!(
            "{kind:?} cannot carry image triggers: use deployment, statefulset, daemonset or cronjob"
        ))
    })?;
    Ok((kind, name.to_owned()))
}

/// The containers of a pod spec: `(containers, initContainers)` by name.
pub fn containers_of(pod_spec: &Value) -> (Vec<String>, Vec<String>) {
    let names = |key: &str| {
        pod_spec
            .get(key)
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    (names("containers"), names("initContainers"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_and_containers() {
        assert_eq!(
            parse_object("deploy/web").unwrap(),
            (Kind::Deployment, "web".into())
        );
        assert_eq!(parse_object("statefulsets.apps/db").unwrap().0, Kind::StatefulSet);
        assert_eq!(parse_object("cj/nightly").unwrap().0, Kind::CronJob);
        assert!(matches!(parse_object("pod/x"), Err(Error::Usage(_))));
        assert!(matches!(parse_object("web"), Err(Error::Usage(_))));
        let spec = json!({"containers": [{"name": "web"}], "initContainers": [{"name": "init"}]});
        assert_eq!(
            containers_of(&spec),
            (vec!["web".to_owned()], vec!["init".to_owned()])
        );
    }
}
