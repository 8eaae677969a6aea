//! A trigger's `fieldPath`: the one container of the pod template whose image it sets.

use super::target::{ContainerList, ContainerPath, Select, TargetKind};

/// Reads `PODSPEC.containers[N].image` (by index, from 0) or `PODSPEC.containers[?(@.name=="NAME")].image`
/// (`=` for `==`, single quotes), or the same with `initContainers`, where `PODSPEC` is where `kind` keeps its
/// pod spec. These are the forms OpenShift's trigger controller reads. The error says what is wrong, for a
/// person.
pub fn field_path(path: &str, kind: TargetKind) -> Result<ContainerPath, String> {
    let pod_spec = kind.pod_spec_path();
    let expected =
        format!("{pod_spec}.containers[0].image or {pod_spec}.containers[?(@.name==\"NAME\")].image");
    let trimmed = path.trim();
    let trimmed = trimmed.strip_prefix('.').unwrap_or(trimmed);
    let rest = trimmed
        .strip_prefix(pod_spec)
        .and_then(|r| r.strip_prefix('.'))
        .ok_or_else(|| format!("a {kind} keeps its pod spec at {pod_spec}: write {expected}"))?;
    let (list, rest) = if let Some(r) = rest.strip_prefix("initContainers[") {
        (ContainerList::InitContainers, r)
    } else if let Some(r) = rest.strip_prefix("containers[") {
        (ContainerList::Containers, r)
    } else {
        return Err(format!(
            "only containers and initContainers can be set: write {expected}"
        ));
    };
    let select_error = || format!("select the container by index or by name: write {expected}");
    let (select, rest) = match rest.trim_start().strip_prefix("?(") {
        Some(filter) => by_name(filter, &select_error)?,
        None => by_index(rest, &select_error)?,
    };
    if rest != ".image" {
        return Err(format!("only a container's image can be set: write {expected}"));
    }
    Ok(ContainerPath { list, select })
}

/// `N]` and what follows.
fn by_index<'a>(rest: &'a str, select_error: &dyn Fn() -> String) -> Result<(Select, &'a str), String> {
    let (index, rest) = rest.split_once(']').ok_or_else(select_error)?;
    let index = index.trim();
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return Err(if index.starts_with('-') {
            "a container index counts from 0: negative indexes are not supported".to_owned()
        } else {
            select_error()
        });
    }
    let index = index
        .parse()
        .map_err(|_| format!("the container index {index} is too large"))?;
    Ok((Select::Index(index), rest))
}

/// `@.name=="NAME")]` and what follows.
fn by_name<'a>(filter: &'a str, select_error: &dyn Fn() -> String) -> Result<(Select, &'a str), String> {
    let rest = filter.trim_start();
    let rest = rest.strip_prefix("@.name").ok_or_else(select_error)?.trim_start();
    let rest = rest
        .strip_prefix("==")
        .or_else(|| rest.strip_prefix('='))
        .ok_or_else(select_error)?
        .trim_start();
    let quote = rest
        .chars()
        .next()
        .filter(|c| matches!(c, '"' | '\''))
        .ok_or_else(select_error)?;
    let rest = &rest[1..];
    let end = rest
        .find(quote)
        .ok_or_else(|| "the container name's quote is not closed".to_owned())?;
    let name = &rest[..end];
    if name.is_empty() {
        return Err("the container name is empty".to_owned());
    }
    let rest = rest[end + 1..].trim_start();
    let rest = rest.strip_prefix(")]").ok_or_else(select_error)?;
    Ok((Select::Name(name.to_owned()), rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triggers::annotation::{OPENSHIFT_TRIGGERS, TriggerError, parse};

    const WEB: &str = r#"spec.template.spec.containers[?(@.name=="web")].image"#;

    fn path(list: ContainerList, select: Select) -> ContainerPath {
        ContainerPath { list, select }
    }

    fn web() -> ContainerPath {
        path(ContainerList::Containers, Select::Name("web".into()))
    }

    fn parse_one(path: &str, kind: TargetKind) -> Result<(), TriggerError> {
        let value =
            serde_json::json!([{"from": {"kind": "ImageStreamTag", "name": "app:live"}, "fieldPath": path}]);
        parse(OPENSHIFT_TRIGGERS, &value.to_string(), "ns", kind).map(|_| ())
    }

    #[test]
    fn every_spelling_of_the_field_path_reads() {
        for path in [
            WEB,
            r#"spec.template.spec.containers[?(@.name="web")].image"#,
            r#"spec.template.spec.containers[?(@.name=='web')].image"#,
            r#"spec.template.spec.containers[?( @.name == "web" )].image"#,
            r#".spec.template.spec.containers[?(@.name=="web")].image"#,
            r#"  spec.template.spec.containers[?(@.name=="web")].image "#,
        ] {
            assert_eq!(field_path(path, TargetKind::StatefulSet), Ok(web()), "{path}");
        }
        let cases = [
            (
                TargetKind::DaemonSet,
                r#"spec.template.spec.initContainers[?(@.name="setup")].image"#,
                path(ContainerList::InitContainers, Select::Name("setup".into())),
            ),
            (
                TargetKind::CronJob,
                r#"spec.jobTemplate.spec.template.spec.containers[?(@.name=="job")].image"#,
                path(ContainerList::Containers, Select::Name("job".into())),
            ),
            // By index, as OpenShift's own templates write it.
            (
                TargetKind::Deployment,
                "spec.template.spec.containers[0].image",
                path(ContainerList::Containers, Select::Index(0)),
            ),
            (
                TargetKind::Deployment,
                "spec.template.spec.initContainers[0].image",
                path(ContainerList::InitContainers, Select::Index(0)),
            ),
            (
                TargetKind::StatefulSet,
                "spec.template.spec.containers[ 12 ].image",
                path(ContainerList::Containers, Select::Index(12)),
            ),
            (
                TargetKind::CronJob,
                "spec.jobTemplate.spec.template.spec.initContainers[1].image",
                path(ContainerList::InitContainers, Select::Index(1)),
            ),
        ];
        for (kind, text, want) in cases {
            assert_eq!(field_path(text, kind), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_field_paths_say_what_is_wrong() {
        let cases = [
            (
                TargetKind::Deployment,
                r#"spec.template.spec.containers[?(@.name=="web")]"#,
                "image",
            ),
            (
                TargetKind::Deployment,
                r#"spec.template.spec.containers[?(@.name=="web").image"#,
                "by name",
            ),
            (
                TargetKind::Deployment,
                "spec.template.spec.containers[@.name=test].image",
                "by index or by name",
            ),
            (
                TargetKind::Deployment,
                "spec.template.spec.containers[*].image",
                "by index or by name",
            ),
            (
                TargetKind::Deployment,
                "spec.template.spec.containers[].image",
                "containers[0].image",
            ),
            (
                TargetKind::Deployment,
                "spec.template.spec.containers[0.image",
                "by index",
            ),
            (
                TargetKind::Deployment,
                "spec.template.spec.containers[-1].image",
                "negative",
            ),
            (
                TargetKind::Deployment,
                "spec.template.spec.containers[99999999999999999999999].image",
                "too large",
            ),
            (
                TargetKind::Deployment,
                "spec.template.spec.containers[0].env",
                "image",
            ),
            (
                TargetKind::Deployment,
                "spec.template.spec.containers[0]",
                "image",
            ),
            (
                TargetKind::Deployment,
                r#"spec.template.spec.containers[?(@.name=="web)].image"#,
                "quote",
            ),
            (
                TargetKind::Deployment,
                r#"spec.template.spec.containers[?(@.name=="")].image"#,
                "empty",
            ),
            (
                TargetKind::Deployment,
                r#"spec.template.spec.volumes[?(@.name=="web")].image"#,
                "initContainers",
            ),
            (
                TargetKind::Deployment,
                "spec.template.spec.volumes[0].image",
                "initContainers",
            ),
            (
                TargetKind::Deployment,
                r#"spec.template.spec.containers[?(@.name=="web")].env"#,
                "image",
            ),
            (
                TargetKind::Deployment,
                r#"spec.template.spec.containers[?(@.image=="web")].image"#,
                "by name",
            ),
            (TargetKind::Deployment, "", "pod spec"),
            (TargetKind::CronJob, WEB, "spec.jobTemplate.spec.template.spec"),
            (
                TargetKind::CronJob,
                "spec.template.spec.containers[0].image",
                "spec.jobTemplate.spec.template.spec.containers[0].image",
            ),
            (
                TargetKind::Deployment,
                r#"spec.jobTemplate.spec.template.spec.containers[?(@.name=="web")].image"#,
                "spec.template.spec",
            ),
        ];
        for (kind, path, says) in cases {
            let err = field_path(path, kind).unwrap_err();
            assert!(err.contains(says), "{path}: {err}");
            // And through the whole annotation, a specific error.
            let e = parse_one(path, kind).unwrap_err();
            assert!(
                matches!(e, TriggerError::InvalidFieldPath { index: 0, .. }),
                "{e}"
            );
        }
    }
}
