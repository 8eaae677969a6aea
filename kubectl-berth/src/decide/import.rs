//! `kubectl berth import-image`: what to import, and what to create first, as `oc import-image` decides it.
//!
//! - `IS[:TAG]`, the tag `latest` when none is given; `--all` re-imports every tag of the stream that comes from
//!   a registry. A digest is refused (use `tag`).
//! - An existing tag is re-imported where it comes from; an alias is followed within its stream. `--from` must
//!   then agree with the tag's source (`tag` changes sources).
//! - A stream or tag that does not exist is created from `--from` (or from the target itself when it is a
//!   registry reference) only with `--confirm`; otherwise the command refuses and says so.
//! - Berth imports tags, not whole repositories: `--all` with `--from` is refused.

use berth_api::image::SourceKind;

use super::reference::ImageRef;
use crate::error::{Error, Result};

/// What the command line asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportRequest {
    /// The stream.
    pub stream: String,
    /// The tag (`None` with `--all`).
    pub tag: Option<String>,
    /// `--from`, or the target itself when it names a registry.
    pub from: Option<String>,
    /// `--confirm`.
    pub confirm: bool,
    /// `--scheduled`.
    pub scheduled: bool,
    /// `--insecure`.
    pub insecure: bool,
}

/// Reads `IS[:TAG]` and the flags.
pub fn request(
    target: &str,
    from: Option<&str>,
    all: bool,
    confirm: bool,
    scheduled: bool,
    insecure: bool,
) -> Result<ImportRequest> {
    let parsed = ImageRef::parse(target).map_err(|e| Error::usage(format!("invalid image stream: {e}")))?;
    if parsed.id.is_some() {
        return Err(Error::usage("to import images by digest, use the 'tag' command"));
    }
    if all && parsed.tag.is_some() {
        return Err(Error::usage(format!(
            "cannot specify a tag {target:?} as well as --all"
        )));
    }
    if all && from.is_some() {
        return Err(Error::usage(
            "--all re-imports the tags of a stream; Berth does not import whole repositories, so --from cannot go with it",
        ));
    }
    if !berth_api::validation::is_dns_subdomain(&parsed.name) {
        return Err(Error::usage(format!(
            "{:?} is not a valid image stream name",
            parsed.name
        )));
    }
    let names_registry = parsed.registry.is_some() || parsed.namespace.is_some();
    let tag = (!all).then(|| parsed.tag.clone().unwrap_or_else(|| "latest".to_owned()));
    if let Some(tag) = &tag
        && !berth_api::validation::is_oci_tag(tag)
    {
        return Err(Error::usage(format!("{tag:?} is not a valid tag")));
    }
    Ok(ImportRequest {
        stream: parsed.name.clone(),
        tag,
        from: from
            .map(str::to_owned)
            .or_else(|| names_registry.then(|| target.trim().to_owned())),
        confirm,
        scheduled,
        insecure,
    })
}

/// A tag of the stream as seen: where it comes from and whether it is inline in the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownTag {
    /// The tag.
    pub tag: String,
    /// Its source's kind.
    pub kind: SourceKind,
    /// Its source's name.
    pub from: String,
    /// Its source's namespace, when given.
    pub namespace: Option<String>,
    /// Whether `importPolicy.scheduled` is set.
    pub scheduled: bool,
    /// Whether `importPolicy.insecure` is set.
    pub insecure: bool,
    /// Whether it is defined inline in the stream's `spec.tags`.
    pub inline: bool,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportPlan {
    /// Ask for a re-import of these tags; `set_policy` when `--scheduled`/`--insecure` add to a tag's policy.
    Reimport {
        /// The tags.
        tags: Vec<String>,
        /// Whether the tags' import policy changes.
        set_policy: bool,
    },
    /// Create the tag (and the stream, when `create_stream`) from a registry reference, then import it.
    Create {
        /// Whether the stream is missing too.
        create_stream: bool,
        /// The tag.
        tag: String,
        /// The registry reference.
        from: String,
    },
}

/// Decides from the request and the stream's tags (`None` when the stream does not exist).
pub fn plan(request: &ImportRequest, tags: Option<&[KnownTag]>) -> Result<ImportPlan> {
    let stream = &request.stream;
    let Some(tags) = tags else {
        if !request.confirm {
            return Err(Error::refused(format!(
                "no image stream named {stream:?} exists, pass --confirm to create and import"
            )));
        }
        let Some(tag) = request.tag.clone() else {
            return Err(Error::refused(format!(
                "no image stream named {stream:?} exists; --all needs a stream with tags"
            )));
        };
        return Ok(ImportPlan::Create {
            create_stream: true,
            tag,
            from: request.from.clone().unwrap_or_else(|| stream.clone()),
        });
    };
    let Some(wanted) = &request.tag else {
        let docker: Vec<String> = tags
            .iter()
            .filter(|t| t.kind == SourceKind::DockerImage)
            .map(|t| t.tag.clone())
            .collect();
        if docker.is_empty() {
            return Err(Error::refused(format!(
                "image stream {stream:?} does not have tags pointing to external container images"
            )));
        }
        return reimport(request, tags, docker);
    };
    let Some(found) = follow(stream, wanted, tags)? else {
        let Some(from) = &request.from else {
            return Err(Error::refused(format!(
                "the tag {wanted:?} does not exist on the image stream {stream:?} - choose an existing tag to import or use the 'tag' command to create a new tag"
            )));
        };
        if !request.confirm {
            return Err(Error::refused(format!(
                "the tag {stream}:{wanted} does not exist, pass --confirm to create it from {from} and import"
            )));
        }
        return Ok(ImportPlan::Create {
            create_stream: false,
            tag: wanted.clone(),
            from: from.clone(),
        });
    };
    if found.kind != SourceKind::DockerImage {
        return Err(Error::refused(format!(
            "tag {wanted:?} points to existing {:?} {:?}, it cannot be re-imported",
            found.kind, found.from
        )));
    }
    if let Some(from) = request.from.as_deref().filter(|f| *f != found.from) {
        return Err(Error::refused(format!(
            "the tag {wanted:?} points to {:?} - use the 'tag' command if you want to change the source to {from:?}",
            found.from
        )));
    }
    reimport(request, tags, vec![found.tag.clone()])
}

fn reimport(request: &ImportRequest, tags: &[KnownTag], chosen: Vec<String>) -> Result<ImportPlan> {
    let adds = |t: &KnownTag| (request.scheduled && !t.scheduled) || (request.insecure && !t.insecure);
    let changing: Vec<&KnownTag> = tags
        .iter()
        .filter(|t| chosen.contains(&t.tag) && adds(t))
        .collect();
    if let Some(inline) = changing.iter().find(|t| t.inline) {
        return Err(Error::refused(format!(
            "tag {}:{} is defined inline in its image stream: set its importPolicy in the stream's spec.tags",
            request.stream, inline.tag
        )));
    }
    Ok(ImportPlan::Reimport {
        tags: chosen,
        set_policy: !changing.is_empty(),
    })
}

/// Follows aliases within the stream to the tag that is imported.
fn follow<'a>(stream: &str, tag: &str, tags: &'a [KnownTag]) -> Result<Option<&'a KnownTag>> {
    let mut seen = vec![tag.to_owned()];
    let Some(mut current) = tags.iter().find(|t| t.tag == tag) else {
        return Ok(None);
    };
    while current.kind == SourceKind::ImageStreamTag {
        let (target_stream, target_tag) = current
            .from
            .split_once(':')
            .unwrap_or((stream, current.from.as_str()));
        if target_stream != stream || current.namespace.is_some() {
            return Err(Error::refused(format!(
                "tag {tag:?} points to an image stream tag of another stream ({}); import that one",
                current.from
            )));
        }
        if seen.iter().any(|s| s == target_tag) {
            return Err(Error::refused(format!(
                "tag {tag:?} is part of an alias loop: {}",
                seen.join(" -> ")
            )));
        }
        seen.push(target_tag.to_owned());
        current = tags.iter().find(|t| t.tag == target_tag).ok_or_else(|| {
            Error::refused(format!(
                "tag {tag:?} follows {stream}:{target_tag}, which does not exist"
            ))
        })?;
    }
    Ok(Some(current))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(tag: &str, kind: SourceKind, from: &str) -> KnownTag {
        KnownTag {
            tag: tag.into(),
            kind,
            from: from.into(),
            namespace: None,
            scheduled: false,
            insecure: false,
            inline: false,
        }
    }

    #[test]
    fn targets_and_flags() {
        let r = request("app", None, false, false, false, false).unwrap();
        assert_eq!((r.stream.as_str(), r.tag.as_deref()), ("app", Some("latest")));
        let r = request("app:v1", Some("reg:5000/x:v1"), false, true, false, false).unwrap();
        assert_eq!(r.from.as_deref(), Some("reg:5000/x:v1"));
        let r = request("reg:5000/team/app:v2", None, false, true, false, false).unwrap();
        assert_eq!((r.stream.as_str(), r.tag.as_deref()), ("app", Some("v2")));
        assert_eq!(r.from.as_deref(), Some("reg:5000/team/app:v2"));
        assert_eq!(request("app", None, true, false, false, false).unwrap().tag, None);
        for (target, from, all) in [
            ("app:v1", None, true),
            ("app@sha256:abc", None, false),
            ("app", Some("x"), true),
        ] {
            assert!(
                matches!(
                    request(target, from, all, false, false, false),
                    Err(Error::Usage(_))
                ),
                "{target}"
            );
        }
    }

    #[test]
    fn a_missing_stream_needs_confirm() {
        let r = request("app:v1", Some("reg/x:v1"), false, false, false, false).unwrap();
        let e = plan(&r, None).unwrap_err();
        assert!(e.to_string().contains("pass --confirm"), "{e}");
        let r = ImportRequest { confirm: true, ..r };
        assert_eq!(
            plan(&r, None).unwrap(),
            ImportPlan::Create {
                create_stream: true,
                tag: "v1".into(),
                from: "reg/x:v1".into()
            }
        );
    }

    #[test]
    fn a_missing_tag_needs_from_and_confirm() {
        let tags = vec![known("v1", SourceKind::DockerImage, "reg/x:v1")];
        let r = request("app:v2", None, false, true, false, false).unwrap();
        assert!(
            plan(&r, Some(&tags))
                .unwrap_err()
                .to_string()
                .contains("use the 'tag' command")
        );
        let r = request("app:v2", Some("reg/x:v2"), false, false, false, false).unwrap();
        assert!(
            plan(&r, Some(&tags))
                .unwrap_err()
                .to_string()
                .contains("pass --confirm")
        );
        let r = ImportRequest { confirm: true, ..r };
        assert!(matches!(
            plan(&r, Some(&tags)).unwrap(),
            ImportPlan::Create {
                create_stream: false,
                ..
            }
        ));
    }

    #[test]
    fn existing_tags_reimport_where_they_come_from() {
        let tags = vec![
            known("v1", SourceKind::DockerImage, "reg/x:v1"),
            known("live", SourceKind::ImageStreamTag, "v1"),
            known("pinned", SourceKind::ImageStreamImage, "app@sha256:aa"),
            known("other", SourceKind::ImageStreamTag, "web:v1"),
        ];
        let r = request("app:live", None, false, false, false, false).unwrap();
        assert_eq!(
            plan(&r, Some(&tags)).unwrap(),
            ImportPlan::Reimport {
                tags: vec!["v1".into()],
                set_policy: false
            }
        );
        let r = request("app:pinned", None, false, false, false, false).unwrap();
        assert!(
            plan(&r, Some(&tags))
                .unwrap_err()
                .to_string()
                .contains("cannot be re-imported")
        );
        let r = request("app:other", None, false, false, false, false).unwrap();
        assert!(
            plan(&r, Some(&tags))
                .unwrap_err()
                .to_string()
                .contains("another stream")
        );
        let r = request("app:v1", Some("reg/y:v1"), false, false, false, false).unwrap();
        assert!(
            plan(&r, Some(&tags))
                .unwrap_err()
                .to_string()
                .contains("use the 'tag' command")
        );
        let r = request("app", None, true, false, true, false).unwrap();
        assert_eq!(
            plan(&r, Some(&tags)).unwrap(),
            ImportPlan::Reimport {
                tags: vec!["v1".into()],
                set_policy: true
            }
        );
    }

    #[test]
    fn loops_and_inline_policies_are_refused() {
        let tags = vec![
            known("a", SourceKind::ImageStreamTag, "b"),
            known("b", SourceKind::ImageStreamTag, "app:a"),
            KnownTag {
                inline: true,
                ..known("c", SourceKind::DockerImage, "reg/x:c")
            },
        ];
        let r = request("app:a", None, false, false, false, false).unwrap();
        assert!(
            plan(&r, Some(&tags))
                .unwrap_err()
                .to_string()
                .contains("alias loop")
        );
        let r = request("app:c", None, false, false, true, false).unwrap();
        assert!(plan(&r, Some(&tags)).unwrap_err().to_string().contains("inline"));
        let r = request("app:c", None, false, false, false, false).unwrap();
        assert!(plan(&r, Some(&tags)).is_ok());
    }
}
