//! The kinds an annotation trigger can reach, where each keeps its pod template, and the containers in it.

use std::fmt;

use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

/// A kind whose objects may carry a trigger annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetKind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` StatefulSet.
    StatefulSet,
    /// `apps/v1` DaemonSet.
    DaemonSet,
    /// `batch/v1` CronJob (`batch/v1beta1` on servers older than 1.21).
    CronJob,
}

impl TargetKind {
    /// Every kind, in a fixed order.
    pub const ALL: [TargetKind; 4] = [
        TargetKind::Deployment,
        TargetKind::StatefulSet,
        TargetKind::DaemonSet,
        TargetKind::CronJob,
    ];

    /// The kind's name, as in `kind:`.
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Deployment => "Deployment",
            TargetKind::StatefulSet => "StatefulSet",
            TargetKind::DaemonSet => "DaemonSet",
            TargetKind::CronJob => "CronJob",
        }
    }

    /// The API group.
    pub fn group(self) -> &'static str {
        match self {
            TargetKind::CronJob => "batch",
            _ => "apps",
        }
    }

    /// The resource's plural name.
    pub fn plural(self) -> &'static str {
        match self {
            TargetKind::Deployment => "deployments",
            TargetKind::StatefulSet => "statefulsets",
            TargetKind::DaemonSet => "daemonsets",
            TargetKind::CronJob => "cronjobs",
        }
    }

    /// The API versions to try, preferred first. Only CronJob has an older one worth serving (Kubernetes 1.20
    /// serves CronJob in `batch/v1beta1` only).
    pub fn versions(self) -> &'static [&'static str] {
        match self {
            TargetKind::CronJob => &["v1", "v1beta1"],
            _ => &["v1"],
        }
    }

    /// The kind's API resource in `version`.
    pub fn api_resource(self, version: &str) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(self.group(), version, self.name()),
            self.plural(),
        )
    }

    /// The path from the object to its pod spec, as keys.
    pub fn pod_spec_keys(self) -> &'static [&'static str] {
        match self {
            TargetKind::CronJob => &["spec", "jobTemplate", "spec", "template", "spec"],
            _ => &["spec", "template", "spec"],
        }
    }

    /// The path from the object to its pod spec, dotted, as a trigger's `fieldPath` begins.
    pub fn pod_spec_path(self) -> &'static str {
        match self {
            TargetKind::CronJob => "spec.jobTemplate.spec.template.spec",
            _ => "spec.template.spec",
        }
    }

    /// The object's pod spec, if it has one.
    pub fn pod_spec(self, object: &Value) -> Option<&Value> {
        self.pod_spec_keys().iter().try_fold(object, |v, key| v.get(key))
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which container list of the pod spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContainerList {
    /// `containers`.
    Containers,
    /// `initContainers`.
    InitContainers,
}

impl ContainerList {
    /// The list's key in the pod spec.
    pub fn key(self) -> &'static str {
        match self {
            ContainerList::Containers => "containers",
            ContainerList::InitContainers => "initContainers",
        }
    }
}

/// One container of a pod template, by list and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerRef {
    /// The list it is in.
    pub list: ContainerList,
    /// Its name.
    pub name: String,
}

impl ContainerRef {
    /// The container in `object`'s pod spec, if there is one by that name.
    pub fn find<'a>(&self, kind: TargetKind, object: &'a Value) -> Option<&'a Value> {
        kind.pod_spec(object)?
            .get(self.list.key())?
            .as_array()?
            .iter()
            .find(|c| c.get("name").and_then(Value::as_str) == Some(self.name.as_str()))
    }
}

impl fmt::Display for ContainerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.list {
            ContainerList::Containers => write!(f, "container {:?}", self.name),
            ContainerList::InitContainers => write!(f, "init container {:?}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_specs_are_found_where_each_kind_keeps_them() {
        let deployment =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "a"}]}}}});
        let cronjob = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {
            "initContainers": [{"name": "setup", "image": "b"}]}}}}}});
        let web = ContainerRef {
            list: ContainerList::Containers,
            name: "web".into(),
        };
        let setup = ContainerRef {
            list: ContainerList::InitContainers,
            name: "setup".into(),
        };
        for kind in [
            TargetKind::Deployment,
            TargetKind::StatefulSet,
            TargetKind::DaemonSet,
        ] {
            assert_eq!(web.find(kind, &deployment).unwrap()["image"], "a");
            assert!(web.find(kind, &cronjob).is_none());
        }
        assert_eq!(setup.find(TargetKind::CronJob, &cronjob).unwrap()["image"], "b");
        assert!(web.find(TargetKind::CronJob, &cronjob).is_none());
        assert!(web.find(TargetKind::Deployment, &json!({})).is_none());
    }

    #[test]
    fn api_resources() {
        let cj = TargetKind::CronJob.api_resource("v1beta1");
        assert_eq!(
            (cj.api_version.as_str(), cj.plural.as_str()),
            ("batch/v1beta1", "cronjobs")
        );
        let sts = TargetKind::StatefulSet.api_resource("v1");
        assert_eq!(
            (sts.api_version.as_str(), sts.kind.as_str()),
            ("apps/v1", "StatefulSet")
        );
    }
}
