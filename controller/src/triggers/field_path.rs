//! A trigger's `fieldPath`: the one container of the pod template whose image it sets.

use super::target::{ContainerList, ContainerRef, TargetKind};

/// Reads `PODSPEC.containers[?(@.name=="NAME")].image` (or `initContainers`, `=` for `==`, single quotes),
/// where `PODSPEC` is where `kind` keeps its pod spec. The error says what is wrong, for a person.
pub fn field_path(path: &str, kind: TargetKind) -> Result<ContainerRef, String> {
    let expected = format!("{}.containers[?(@.name==\"NAME\")].image", kind.pod_spec_path());
    let trimmed = path.trim();
    let trimmed = trimmed.strip_prefix('.').unwrap_or(trimmed);
    let rest = trimmed
        .strip_prefix(kind.pod_spec_path())
        .and_then(|r| r.strip_prefix('.'))
        .ok_or_else(|| {
            format!(
                "a {kind} keeps its pod spec at {}: write {expected}",
                kind.pod_spec_path()
            )
        })?;
    let (list, rest) = if let Some(r) = rest.strip_prefix("initContainers[") {
        (ContainerList::InitContainers, r)
    } else if let Some(r) = rest.strip_prefix("containers[") {
        (ContainerList::Containers, r)
    } else {
        return Err(format!(
            "only containers and initContainers can be set: write {expected}"
        ));
    };
    let select = || format!("select the container by name: write {expected}");
    let rest = rest.strip_prefix("?(").ok_or_else(select)?.trim_start();
    let rest = rest.strip_prefix("@.name").ok_or_else(select)?.trim_start();
    let rest = rest
        .strip_prefix("==")
        .or_else(|| rest.strip_prefix('='))
        .ok_or_else(select)?
        .trim_start();
    let quote = rest
        .chars()
        .next()
        .filter(|c| matches!(c, '"' | '\''))
        .ok_or_else(select)?;
    let rest = &rest[1..];
    let end = rest
        .find(quote)
        .ok_or_else(|| "the container name's quote is not closed".to_owned())?;
    let name = &rest[..end];
    if name.is_empty() {
        return Err("the container name is empty".to_owned());
    }
    let rest = rest[end + 1..].trim_start();
    let rest = rest.strip_prefix(")]").ok_or_else(select)?;
    if rest != ".image" {
        return Err(format!("only a container's image can be set: write {expected}"));
    }
    Ok(ContainerRef {
        list,
        name: name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triggers::annotation::{OPENSHIFT_TRIGGERS, TriggerError, parse};

    const WEB: &str = r#"spec.template.spec.containers[?(@.name=="web")].image"#;

    fn web() -> ContainerRef {
        ContainerRef {
            list: ContainerList::Containers,
            name: "web".into(),
        }
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
        let init = field_path(
            r#"spec.template.spec.initContainers[?(@.name="setup")].image"#,
            TargetKind::DaemonSet,
        )
        .unwrap();
        assert_eq!(
            (init.list, init.name.as_str()),
            (ContainerList::InitContainers, "setup")
        );
        let cron = field_path(
            r#"spec.jobTemplate.spec.template.spec.containers[?(@.name=="job")].image"#,
            TargetKind::CronJob,
        )
        .unwrap();
        assert_eq!(cron.name, "job");
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
                "by name",
            ),
            (
                TargetKind::Deployment,
                "spec.template.spec.containers[0].image",
                "by name",
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
