//! `kubectl berth tag`: what SOURCE names and what each destination's `spec.from` becomes, as `oc tag` decides
//! it.
//!
//! - A SOURCE with a registry host is a `DockerImage`; `STREAM@sha256:...` an `ImageStreamImage`;
//!   `STREAM:TAG` an `ImageStreamTag`; anything else a `DockerImage`. `--source` forces the kind.
//! - Without `--alias`, an `ImageStreamTag` source is copied: the destination gets the source's current image,
//!   pinned by digest (`REPO@sha256:...`, a `DockerImage`), so it stays when the source moves. With `--alias`
//!   the destination follows the source (`from.kind: ImageStreamTag`).
//! - Import flags (`--scheduled`, `--insecure`, `--import-mode`) only make sense for a registry source.

use berth_api::image::{
    ImageStreamTagSpec, ImageStreamTagStatus, ImportMode, ReferencePolicyType, SourceKind, TagImportPolicy,
    TagReferencePolicy, TagSource,
};
use berth_api::names::StreamTagRef;
use berth_api::validation::is_sha256_digest;

use super::reference::ImageRef;
use crate::error::{Error, Result};

/// What SOURCE names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A registry reference, as given.
    Docker(String),
    /// A tag of a stream, possibly of another namespace.
    StreamTag {
        /// The stream's namespace when given (`NS/STREAM:TAG`).
        namespace: Option<String>,
        /// The tag.
        tag: StreamTagRef,
    },
    /// A digest of a stream.
    StreamImage {
        /// The stream's namespace when given.
        namespace: Option<String>,
        /// The stream.
        stream: String,
        /// `sha256:...`.
        digest: String,
    },
}

/// The `--source` hint, as `oc tag` accepts it.
pub fn parse_source_hint(hint: &str) -> Result<SourceKind> {
    match hint.to_ascii_lowercase().as_str() {
        "imagestreamtag" | "istag" => Ok(SourceKind::ImageStreamTag),
        "imagestreamimage" | "isimage" => Ok(SourceKind::ImageStreamImage),
        "docker" | "dockerimage" => Ok(SourceKind::DockerImage),
        _ => Err(Error::usage(format!(
            "invalid source {hint:?}; valid values are docker, dockerimage, imagestreamimage, imagestreamtag, isimage, istag"
        ))),
    }
}

/// What SOURCE names, inferred as `oc tag` infers it unless `hint` says.
pub fn infer(source: &str, hint: Option<SourceKind>) -> Result<Source> {
    let parsed = ImageRef::parse(source).map_err(|e| Error::usage(format!("invalid SOURCE: {e}")))?;
    let kind = hint.unwrap_or(match (&parsed.registry, &parsed.id, &parsed.tag) {
        (Some(_), _, _) => SourceKind::DockerImage,
        (None, Some(_), _) => SourceKind::ImageStreamImage,
        (None, None, Some(_)) => SourceKind::ImageStreamTag,
        (None, None, None) => SourceKind::DockerImage,
    });
    if kind != SourceKind::DockerImage && parsed.registry.is_some() {
        return Err(Error::usage(
            "a registry host in SOURCE is only allowed for a container image (--source=docker)",
        ));
    }
    if kind != SourceKind::DockerImage && parsed.namespace.as_deref().is_some_and(|ns| ns.contains('/')) {
        return Err(Error::usage(format!(
            "{source:?}: a stream is named NAMESPACE/STREAM at most"
        )));
    }
    match kind {
        SourceKind::DockerImage => Ok(Source::Docker(source.trim().to_owned())),
        SourceKind::ImageStreamTag => {
            let (Some(tag), None) = (&parsed.tag, &parsed.id) else {
                return Err(Error::usage(
                    "--source=imagestreamtag requires a valid <stream>:<tag> in SOURCE",
                ));
            };
            let tag: StreamTagRef = format!("{}:{tag}", parsed.name)
                .parse()
                .map_err(|e| Error::usage(format!("invalid SOURCE: {e}")))?;
            Ok(Source::StreamTag {
                namespace: parsed.namespace,
                tag,
            })
        }
        SourceKind::ImageStreamImage => {
            let Some(digest) = parsed.id.filter(|d| is_sha256_digest(d)) else {
                return Err(Error::usage(
                    "--source=imagestreamimage requires a valid <stream>@sha256:<64 hex digits> in SOURCE",
                ));
            };
            Ok(Source::StreamImage {
                namespace: parsed.namespace,
                stream: parsed.name,
                digest,
            })
        }
    }
}

/// A destination: `[NAMESPACE/]STREAM:TAG`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The namespace, when another one than the current is named.
    pub namespace: Option<String>,
    /// The stream and tag.
    pub tag: StreamTagRef,
}

/// Reads a destination.
pub fn parse_destination(input: &str) -> Result<Destination> {
    let (namespace, rest) = match input.split_once('/') {
        Some((ns, rest)) if !ns.is_empty() && !rest.contains('/') => (Some(ns.to_owned()), rest),
        Some(_) => return Err(Error::usage(format!("invalid image stream {input:?}"))),
        None => (None, input),
    };
    let tag = rest
        .parse()
        .map_err(|e| Error::usage(format!("{input:?} must be of the form <stream>:<tag>: {e}")))?;
    Ok(Destination { namespace, tag })
}

/// The flags of `tag` that shape a destination.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TagFlags {
    /// `--alias`.
    pub alias: bool,
    /// `--scheduled`.
    pub scheduled: bool,
    /// `--insecure`.
    pub insecure: bool,
    /// `--reference`.
    pub reference: bool,
    /// `--reference-policy`, when given.
    pub reference_policy: Option<ReferencePolicyType>,
    /// `--import-mode`, when given.
    pub import_mode: Option<ImportMode>,
}

/// Checks the flags against the source, as `oc tag` does.
pub fn validate(source: &Source, flags: &TagFlags) -> Result<()> {
    let import_flags = flags.scheduled || flags.insecure || flags.import_mode.is_some();
    if flags.alias {
        if import_flags {
            return Err(Error::usage(
                "cannot set a tag as an alias and also set import flags (--scheduled, --insecure, --import-mode)",
            ));
        }
        if !matches!(source, Source::StreamTag { .. }) {
            return Err(Error::usage(
                "--alias needs an image stream tag (STREAM:TAG) as SOURCE",
            ));
        }
    }
    if import_flags && !matches!(source, Source::Docker(_)) {
        return Err(Error::usage(
            "only container images can have importing flags set (--scheduled, --insecure, --import-mode)",
        ));
    }
    Ok(())
}

/// What a destination's `spec.from` becomes. `copied` is the source tag's status, read when the source is a
/// tag that is copied (not aliased).
pub fn destination_from(
    source: &Source,
    source_text: &str,
    flags: &TagFlags,
    copied: Option<&ImageStreamTagStatus>,
) -> Result<TagSource> {
    Ok(match source {
        Source::Docker(reference) => TagSource {
            kind: SourceKind::DockerImage,
            name: reference.clone(),
            namespace: None,
        },
        Source::StreamTag { namespace, tag } if flags.alias => TagSource {
            kind: SourceKind::ImageStreamTag,
            name: tag.to_string(),
            namespace: namespace.clone(),
        },
        Source::StreamTag { .. } => {
            // Copy: the image the source points at now, by digest (or as recorded, for a reference-only tag).
            let pull_spec = copied.and_then(|s| s.pull_spec.clone()).ok_or_else(|| {
                Error::refused(format!(
                    "{source_text:?} is not currently pointing to an image, cannot use it as the source of a tag"
                ))
            })?;
            TagSource {
                kind: SourceKind::DockerImage,
                name: pull_spec,
                namespace: None,
            }
        }
        Source::StreamImage {
            namespace,
            stream,
            digest,
        } => TagSource {
            kind: SourceKind::ImageStreamImage,
            name: format!("{stream}@{digest}"),
            namespace: namespace.clone(),
        },
    })
}

/// The spec a destination gets.
pub fn destination_spec(dest: &Destination, from: TagSource, flags: &TagFlags) -> ImageStreamTagSpec {
    let import_policy =
        (flags.scheduled || flags.insecure || flags.import_mode.is_some()).then_some(TagImportPolicy {
            scheduled: flags.scheduled,
            insecure: flags.insecure,
            import_mode: flags.import_mode,
            version_policy: None,
        });
    ImageStreamTagSpec {
        stream: dest.tag.stream.clone(),
        tag: dest.tag.tag.clone(),
        annotations: None,
        from,
        reference: flags.reference,
        import_policy,
        reference_policy: flags.reference_policy.map(|type_| TagReferencePolicy { type_ }),
    }
}

/// What `tag` says for a destination, in `oc tag`'s words.
pub fn message(dest_label: &str, from: &TagSource, flags: &TagFlags) -> String {
    let what = match &from.namespace {
        Some(ns) => format!("{ns}/{}", from.name),
        None => from.name.clone(),
    };
    if flags.alias {
        format!("Tag {dest_label} set up to track {what}.")
    } else if flags.scheduled {
        format!("Tag {dest_label} set to import {what} periodically.")
    } else {
        format!("Tag {dest_label} set to {what}.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn st(ns: Option<&str>, s: &str) -> Source {
        Source::StreamTag {
            namespace: ns.map(Into::into),
            tag: s.parse().unwrap(),
        }
    }

    #[test]
    fn sources_are_inferred_as_oc_infers_them() {
        assert_eq!(infer("app:live", None).unwrap(), st(None, "app:live"));
        assert_eq!(
            infer("team/app:live", None).unwrap(),
            st(Some("team"), "app:live")
        );
        assert_eq!(
            infer(&format!("app@{D}"), None).unwrap(),
            Source::StreamImage {
                namespace: None,
                stream: "app".into(),
                digest: D.into()
            }
        );
        for docker in [
            "10.213.0.1:5000/berth/demo:v1",
            "quay.io/x/y",
            "localhost/demo:1",
            "nginx",
            "library/nginx",
        ] {
            assert_eq!(
                infer(docker, None).unwrap(),
                Source::Docker(docker.into()),
                "{docker}"
            );
        }
        assert_eq!(
            infer("nginx:1.25", Some(SourceKind::DockerImage)).unwrap(),
            Source::Docker("nginx:1.25".into())
        );
    }

    #[test]
    fn forced_kinds_need_their_shape() {
        assert!(matches!(
            infer("quay.io/x:1", Some(SourceKind::ImageStreamTag)),
            Err(Error::Usage(_))
        ));
        assert!(matches!(
            infer("app", Some(SourceKind::ImageStreamTag)),
            Err(Error::Usage(_))
        ));
        assert!(matches!(
            infer("app:v1", Some(SourceKind::ImageStreamImage)),
            Err(Error::Usage(_))
        ));
        assert!(matches!(infer("app@sha256:abc", None), Err(Error::Usage(_))));
        assert_eq!(parse_source_hint("ISTAG").unwrap(), SourceKind::ImageStreamTag);
        assert_eq!(parse_source_hint("docker").unwrap(), SourceKind::DockerImage);
        assert!(parse_source_hint("git").is_err());
    }

    #[test]
    fn flags_are_checked_as_oc_checks_them() {
        let alias = TagFlags {
            alias: true,
            ..Default::default()
        };
        let scheduled = TagFlags {
            scheduled: true,
            ..Default::default()
        };
        assert!(validate(&st(None, "a:b"), &alias).is_ok());
        assert!(validate(&Source::Docker("x/y:1".into()), &alias).is_err());
        assert!(validate(&st(None, "a:b"), &scheduled).is_err());
        assert!(validate(&Source::Docker("x/y:1".into()), &scheduled).is_ok());
        let both = TagFlags {
            alias: true,
            insecure: true,
            ..Default::default()
        };
        assert!(matches!(validate(&st(None, "a:b"), &both), Err(Error::Usage(_))));
    }

    #[test]
    fn a_copy_pins_the_digest_and_an_alias_follows() {
        let status = ImageStreamTagStatus {
            digest: Some(D.into()),
            pull_spec: Some(format!("reg:5000/x@{D}")),
            ..Default::default()
        };
        let copy = destination_from(
            &st(None, "app:live"),
            "app:live",
            &TagFlags::default(),
            Some(&status),
        )
        .unwrap();
        assert_eq!(
            (copy.kind, copy.name.as_str()),
            (SourceKind::DockerImage, format!("reg:5000/x@{D}").as_str())
        );
        let alias = TagFlags {
            alias: true,
            ..Default::default()
        };
        let follow = destination_from(&st(Some("team"), "app:live"), "team/app:live", &alias, None).unwrap();
        assert_eq!(
            follow,
            TagSource {
                kind: SourceKind::ImageStreamTag,
                name: "app:live".into(),
                namespace: Some("team".into())
            }
        );
        let empty =
            destination_from(&st(None, "app:live"), "app:live", &TagFlags::default(), None).unwrap_err();
        assert!(
            empty.to_string().contains("not currently pointing to an image"),
            "{empty}"
        );
        assert_eq!(empty.exit_code(), 1);
    }

    #[test]
    fn destination_specs_and_messages() {
        let dest = parse_destination("app:prod").unwrap();
        assert_eq!(dest.namespace, None);
        assert_eq!(
            parse_destination("team/app:prod").unwrap().namespace.as_deref(),
            Some("team")
        );
        assert!(parse_destination("app").is_err());
        assert!(parse_destination("a/b/c:d").is_err());
        let flags = TagFlags {
            scheduled: true,
            insecure: true,
            ..Default::default()
        };
        let from = TagSource {
            kind: SourceKind::DockerImage,
            name: "reg:5000/x:1".into(),
            namespace: None,
        };
        let spec = destination_spec(&dest, from.clone(), &flags);
        assert_eq!((spec.stream.as_str(), spec.tag.as_str()), ("app", "prod"));
        let policy = spec.import_policy.unwrap();
        assert!(policy.scheduled && policy.insecure);
        assert_eq!(spec.reference_policy, None);
        assert_eq!(
            message("app:prod", &from, &flags),
            "Tag app:prod set to import reg:5000/x:1 periodically."
        );
        assert_eq!(
            message("app:prod", &from, &TagFlags::default()),
            "Tag app:prod set to reg:5000/x:1."
        );
    }
}
