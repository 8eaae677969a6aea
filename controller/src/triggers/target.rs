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

impl fmt::Display for ContainerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.list {
            ContainerList::Containers => write!(f, "container {:?}", self.name),
            ContainerList::InitContainers => write!(f, "init container {:?}", self.name),
        }
    }
}

/// How a trigger's `fieldPath` picks a container of its list.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Select {
    /// `[?(@.name=="NAME")]`: the container of that name.
    Name(String),
    /// `[N]`: the container at that position, from 0.
    Index(usize),
}

/// A container as a trigger's `fieldPath` selects it: by name or by position in one list of the pod spec.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerPath {
    /// The list it is in.
    pub list: ContainerList,
    /// How it is picked there.
    pub select: Select,
}

impl ContainerPath {
    /// The container it selects in `object`'s pod spec now, by name (what a strategic merge patch of the list
    /// merges on), with the container itself. `None` when it selects nothing, or a container without a name.
    pub fn resolve<'a>(&self, kind: TargetKind, object: &'a Value) -> Option<(ContainerRef, &'a Value)> {
        let containers = kind.pod_spec(object)?.get(self.list.key())?.as_array()?;
        let container = match &self.select {
            Select::Name(name) => containers
                .iter()
                .find(|c| c.get("name").and_then(Value::as_str) == Some(name.as_str()))?,
            Select::Index(index) => containers.get(*index)?,
        };
        let name = container.get("name").and_then(Value::as_str)?;
        let resolved = ContainerRef {
            list: self.list,
            name: name.to_owned(),
        };
        Some((resolved, container))
    }
}

impl From<ContainerRef> for ContainerPath {
    fn from(container: ContainerRef) -> Self {
        ContainerPath {
            list: container.list,
            select: Select::Name(container.name),
        }
    }
}

impl fmt::Display for ContainerPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.select, self.list) {
            (Select::Name(name), ContainerList::Containers) => write!(f, "container {name:?}"),
            (Select::Name(name), ContainerList::InitContainers) => write!(f, "init container {name:?}"),
            (Select::Index(index), list) => write!(f, "{}[{index}]", list.key()),
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
        fn find<'a>(path: &ContainerPath, kind: TargetKind, object: &'a Value) -> Option<&'a Value> {
            path.resolve(kind, object).map(|(_, c)| c)
        }
        let web = ContainerPath {
            list: ContainerList::Containers,
            select: Select::Name("web".into()),
        };
        let setup = ContainerPath {
            list: ContainerList::InitContainers,
            select: Select::Name("setup".into()),
        };
        for kind in [
            TargetKind::Deployment,
            TargetKind::StatefulSet,
            TargetKind::DaemonSet,
        ] {
            assert_eq!(find(&web, kind, &deployment).unwrap()["image"], "a");
            assert!(find(&web, kind, &cronjob).is_none());
        }
        assert_eq!(find(&setup, TargetKind::CronJob, &cronjob).unwrap()["image"], "b");
        assert!(find(&web, TargetKind::CronJob, &cronjob).is_none());
        assert!(find(&web, TargetKind::Deployment, &json!({})).is_none());
    }

    #[test]
    fn paths_resolve_by_name_or_index_to_a_named_container() {
        let deployment = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "web", "image": "a"}, {"name": "side", "image": "b"}, {"image": "nameless"}],
            "initContainers": [{"name": "setup", "image": "c"}]}}}});
        let at = |list, select| ContainerPath { list, select };
        let named = |list, name: &str| ContainerRef {
            list,
            name: name.into(),
        };
        let (c, i) = (ContainerList::Containers, ContainerList::InitContainers);
        let kind = TargetKind::Deployment;
        for (path, want, image) in [
            (at(c, Select::Index(0)), named(c, "web"), "a"),
            (at(c, Select::Index(1)), named(c, "side"), "b"),
            (at(c, Select::Name("side".into())), named(c, "side"), "b"),
            (at(i, Select::Index(0)), named(i, "setup"), "c"),
            (at(i, Select::Name("setup".into())), named(i, "setup"), "c"),
        ] {
            let (resolved, container) = path.resolve(kind, &deployment).unwrap();
            assert_eq!(
                (&resolved, container["image"].as_str()),
                (&want, Some(image)),
                "{path}"
            );
        }
        for path in [
            at(c, Select::Index(2)),
            at(c, Select::Index(3)),
            at(i, Select::Index(1)),
            at(i, Select::Name("web".into())),
        ] {
            assert!(path.resolve(kind, &deployment).is_none(), "{path}");
        }
        assert!(
            at(c, Select::Index(0))
                .resolve(TargetKind::CronJob, &deployment)
                .is_none()
        );
        assert_eq!(at(i, Select::Index(3)).to_string(), "initContainers[3]");
        assert_eq!(
            ContainerPath::from(named(c, "web")).to_string(),
            "container \"web\""
        );
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
