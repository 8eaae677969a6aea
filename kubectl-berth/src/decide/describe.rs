//! What `history` and `describe` print, from the objects as read: pure functions of the objects and the time.

use berth_api::image::{IMPORT_SUCCESS, ImageMetadata, ImageStream, ImageStreamTag, TagEvent, TagSource};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use super::rollback::{ROLLED_BACK_FROM, undo_command};
use super::table::{age, render, short_digest};

fn since(t: &Time, now: i64) -> String {
    format!("{} ({} ago)", t.0, age(now - t.0.as_second()))
}

fn source_text(from: &TagSource) -> String {
    match &from.namespace {
        Some(ns) => format!("{:?} {ns}/{}", from.kind, from.name),
        None => format!("{:?} {}", from.kind, from.name),
    }
}

/// The history table of a tag, newest first, the current image marked.
pub fn history_table(history: &[TagEvent], current: Option<&str>, now: i64) -> String {
    let rows: Vec<Vec<String>> = history
        .iter()
        .enumerate()
        .map(|(i, e)| {
            vec![
                i.to_string(),
                if Some(e.digest.as_str()) == current {
                    "*".into()
                } else {
                    String::new()
                },
                short_digest(&e.digest),
                age(now - e.created.0.as_second()),
                e.generation.map(|g| g.to_string()).unwrap_or_default(),
                e.pull_spec.clone(),
            ]
        })
        .collect();
    render(&["#", "CURRENT", "DIGEST", "AGE", "GENERATION", "IMAGE"], &rows)
}

fn conditions_table(conditions: &[Condition], now: i64) -> String {
    let rows: Vec<Vec<String>> = conditions
        .iter()
        .map(|c| {
            vec![
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                age(now - c.last_transition_time.0.as_second()),
                c.message.clone(),
            ]
        })
        .collect();
    render(&["TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"], &rows)
}

fn indent(block: &str) -> String {
    block.lines().map(|l| format!("  {l}\n")).collect()
}

/// `describe STREAM:TAG`.
pub fn describe_tag(tag: &ImageStreamTag, now: i64) -> String {
    let spec = &tag.spec;
    let status = tag.status.clone().unwrap_or_default();
    let policy = spec.import_policy.clone().unwrap_or_default();
    let mut out = String::new();
    let mut field = |name: &str, value: String| out.push_str(&format!("{:<16}{value}\n", format!("{name}:")));
    field("Name", tag.name_any());
    field("Namespace", tag.namespace().unwrap_or_default());
    field("Stream", spec.stream.clone());
    field("Tag", spec.tag.clone());
    field("From", source_text(&spec.from));
    field(
        "Import policy",
        format!(
            "scheduled={} insecure={} mode={:?}",
            policy.scheduled,
            policy.insecure,
            policy.import_mode.unwrap_or_default()
        ),
    );
    field(
        "Reference",
        format!(
            "{} (pull from {:?})",
            if spec.reference {
                "recorded as given"
            } else {
                "imported"
            },
            spec.reference_policy.clone().unwrap_or_default().type_
        ),
    );
    field("Digest", status.digest.clone().unwrap_or_else(|| "<none>".into()));
    field(
        "Image",
        status.pull_spec.clone().unwrap_or_else(|| "<none>".into()),
    );
    field(
        "Last import",
        status
            .last_import_time
            .as_ref()
            .map(|t| since(t, now))
            .unwrap_or_else(|| "<never>".into()),
    );
    if let Some(previous) = tag
        .annotations()
        .get(ROLLED_BACK_FROM)
        .and_then(|v| serde_json::from_str::<TagSource>(v).ok())
    {
        let dest = format!("{}:{}", spec.stream, spec.tag);
        field(
            "Pinned",
            format!(
                "rolled back from {}; follow it again with: {}",
                source_text(&previous),
                undo_command(&dest, &previous, policy.insecure, policy.scheduled)
            ),
        );
    }
    let import = status.conditions.iter().find(|c| c.type_ == IMPORT_SUCCESS);
    if import.is_some_and(|c| c.status != "True") {
        let c = import.expect("checked");
        field("Import failing", format!("{}: {}", c.reason, c.message));
    }
    out.push_str("Conditions:\n");
    if status.conditions.is_empty() {
        out.push_str("  <none>\n");
    } else {
        out.push_str(&indent(&conditions_table(&status.conditions, now)));
    }
    out.push_str("History:\n");
    if status.history.is_empty() {
        out.push_str("  <none>\n");
    } else {
        out.push_str(&indent(&history_table(
            &status.history,
            status.digest.as_deref(),
            now,
        )));
    }
    out.push_str("Image metadata:\n");
    out.push_str(&indent(&image_metadata(
        status.image.as_ref(),
        status.digest.as_deref(),
        now,
    )));
    out
}

/// The `Image metadata:` block of a tag: what `status.image` says of the current digest.
pub fn image_metadata(image: Option<&ImageMetadata>, digest: Option<&str>, now: i64) -> String {
    let Some(image) = image.filter(|i| Some(i.digest.as_str()) == digest) else {
        return match digest {
            Some(_) => {
                "<none recorded yet: the controller reads it at the next import from a registry>\n".into()
            }
            None => "<none>\n".into(),
        };
    };
    let mut out = String::new();
    let mut field = |name: &str, value: String| out.push_str(&format!("{:<15}{value}\n", format!("{name}:")));
    if let Some(why) = &image.unreadable {
        field("Unreadable", why.clone());
        return out;
    }
    if let Some(media_type) = &image.media_type {
        field("Media type", media_type.clone());
    }
    if !image.platforms.is_empty() {
        field("Platforms", image.platforms.join(", "));
    }
    if let Some(platform) = &image.platform {
        field("Platform", platform.clone());
    }
    if let Some(created) = &image.created {
        field("Created", since(created, now));
    }
    if let (Some(size), Some(text)) = (image.size, &image.display_size) {
        let layers = image
            .layers
            .map(|n| format!(" in {n} layer{}", if n == 1 { "" } else { "s" }))
            .unwrap_or_default();
        field("Size", format!("{text} ({size} bytes{layers})"));
    }
    if let Some(user) = &image.user {
        field("User", user.clone());
    }
    if !image.exposed_ports.is_empty() {
        field("Exposed ports", image.exposed_ports.join(", "));
    }
    if image.labels.is_empty() {
        field("Labels", "<none>".into());
    } else {
        out.push_str("Labels:\n");
        for (key, value) in &image.labels {
            out.push_str(&format!("  {key}={value}\n"));
        }
    }
    if let Some(note) = &image.truncated {
        out.push_str(&format!("{:<15}{note}\n", "Truncated:"));
    }
    out
}

/// `describe STREAM`: the stream and its tags.
pub fn describe_stream(stream: &ImageStream, tags: &[ImageStreamTag], now: i64) -> String {
    let status = stream.status.clone().unwrap_or_default();
    let mut out = String::new();
    let mut field = |name: &str, value: String| out.push_str(&format!("{:<16}{value}\n", format!("{name}:")));
    field("Name", stream.name_any());
    field("Namespace", stream.namespace().unwrap_or_default());
    field(
        "Lookup local",
        stream
            .spec
            .lookup_policy
            .as_ref()
            .is_some_and(|p| p.local)
            .to_string(),
    );
    field(
        "History limit",
        stream
            .spec
            .history_limit
            .unwrap_or(berth_api::image::DEFAULT_HISTORY_LIMIT)
            .to_string(),
    );
    field(
        "Tags",
        format!("{} ({} resolved)", status.tag_count, status.resolved_tags),
    );
    field(
        "Last updated",
        status
            .last_updated
            .as_ref()
            .map(|t| since(t, now))
            .unwrap_or_else(|| "<never>".into()),
    );
    let inline: Vec<&str> = stream.spec.tags.iter().map(|t| t.name.as_str()).collect();
    let mut sorted: Vec<&ImageStreamTag> = tags.iter().collect();
    sorted.sort_by(|a, b| a.spec.tag.cmp(&b.spec.tag));
    let rows: Vec<Vec<String>> = sorted
        .iter()
        .map(|t| {
            let s = t.status.clone().unwrap_or_default();
            let c = s.conditions.iter().find(|c| c.type_ == IMPORT_SUCCESS);
            vec![
                t.spec.tag.clone(),
                source_text(&t.spec.from),
                if inline.contains(&t.spec.tag.as_str()) {
                    "inline".into()
                } else {
                    "object".into()
                },
                s.digest
                    .as_deref()
                    .map(short_digest)
                    .unwrap_or_else(|| "<none>".into()),
                c.map(|c| format!("{} {}", c.status, c.reason))
                    .unwrap_or_default(),
                s.last_import_time
                    .map(|t| age(now - t.0.as_second()))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str("Tags:\n");
    if rows.is_empty() {
        out.push_str("  <none>\n");
    } else {
        out.push_str(&indent(&render(
            &["TAG", "FROM", "DEFINED", "DIGEST", "IMPORTED", "UPDATED"],
            &rows,
        )));
    }
    out.push_str("Conditions:\n");
    if status.conditions.is_empty() {
        out.push_str("  <none>\n");
    } else {
        out.push_str(&indent(&conditions_table(&status.conditions, now)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::image::{ImageStreamTagSpec, ImageStreamTagStatus, SourceKind};
    use k8s_openapi::jiff::Timestamp;

    const NOW: i64 = 1_800_000_000;

    fn t(secs_ago: i64) -> Time {
        Time(Timestamp::from_second(NOW - secs_ago).unwrap())
    }

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn event(c: char, ago: i64) -> TagEvent {
        TagEvent {
            created: t(ago),
            digest: digest(c),
            pull_spec: format!("reg/x@{}", digest(c)),
            tag: None,
            generation: Some(2),
        }
    }

    fn tag() -> ImageStreamTag {
        let mut tag = ImageStreamTag::new(
            "app.live",
            ImageStreamTagSpec {
                stream: "app".into(),
                tag: "live".into(),
                from: TagSource {
                    kind: SourceKind::DockerImage,
                    name: format!("reg/x@{}", digest('a')),
                    namespace: None,
                },
                ..Default::default()
            },
        );
        tag.metadata.namespace = Some("ns".into());
        tag.status = Some(ImageStreamTagStatus {
            digest: Some(digest('a')),
            pull_spec: Some(format!("reg/x@{}", digest('a'))),
            history: vec![event('a', 30), event('b', 7200)],
            conditions: vec![Condition {
                type_: IMPORT_SUCCESS.into(),
                status: "True".into(),
                reason: "Imported".into(),
                message: "resolved".into(),
                last_transition_time: t(30),
                observed_generation: Some(2),
            }],
            ..Default::default()
        });
        tag
    }

    #[test]
    fn history_is_numbered_newest_first_with_the_current_marked() {
        let status = tag().status.unwrap();
        let out = history_table(&status.history, status.digest.as_deref(), NOW);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("#   CURRENT   DIGEST"), "{out}");
        assert!(
            lines[1].starts_with("0   *         sha256:aaaaaaaaaaaa   30s"),
            "{out}"
        );
        assert!(
            lines[2].starts_with("1             sha256:bbbbbbbbbbbb   2h"),
            "{out}"
        );
    }

    #[test]
    fn a_described_tag_shows_its_pin_and_history() {
        let mut pinned = tag();
        pinned.annotations_mut().insert(
            ROLLED_BACK_FROM.into(),
            r#"{"kind":"DockerImage","name":"reg/x:live"}"#.into(),
        );
        let out = describe_tag(&pinned, NOW);
        assert!(out.contains("Stream:         app\n"), "{out}");
        assert!(
            out.contains("Pinned:         rolled back from DockerImage reg/x:live; follow it again with: kubectl berth tag --source=docker reg/x:live app:live"),
            "{out}"
        );
        assert!(out.contains("ImportSuccess   True     Imported"), "{out}");
        assert!(out.contains("History:\n  #   CURRENT"), "{out}");
        assert!(
            out.contains("Image metadata:\n  <none recorded yet: the controller reads it"),
            "{out}"
        );
    }

    #[test]
    fn a_described_tag_shows_its_image_metadata() {
        let mut described = tag();
        let status = described.status.as_mut().unwrap();
        status.image = Some(ImageMetadata {
            digest: digest('a'),
            media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
            created: Some(t(3 * 86_400)),
            architecture: Some("arm64".into()),
            os: Some("linux".into()),
            variant: Some("v8".into()),
            platform: Some("linux/arm64/v8".into()),
            size: Some(3_000_000),
            display_size: Some("2.9MiB".into()),
            layers: Some(3),
            labels: [
                (
                    "org.opencontainers.image.version".to_string(),
                    "1.4.2".to_string(),
                ),
                ("maintainer".to_string(), "team@example.com".to_string()),
            ]
            .into(),
            user: Some("1001".into()),
            exposed_ports: vec!["8080/tcp".into(), "9090/udp".into()],
            truncated: Some("3 of 67 labels left out".into()),
            ..Default::default()
        });
        let out = describe_tag(&described, NOW);
        let block = out.split("Image metadata:\n").nth(1).expect("a block");
        assert_eq!(
            block,
            format!(
                "  Media type:    application/vnd.oci.image.manifest.v1+json\n  Platform:      linux/arm64/v8\n  \
                 Created:       {} (3d ago)\n  Size:          2.9MiB (3000000 bytes in 3 layers)\n  \
                 User:          1001\n  Exposed ports: 8080/tcp, 9090/udp\n  Labels:\n    \
                 maintainer=team@example.com\n    org.opencontainers.image.version=1.4.2\n  \
                 Truncated:     3 of 67 labels left out\n",
                t(3 * 86_400).0
            )
        );

        // Metadata of an earlier digest is not shown as the current image's.
        described.status.as_mut().unwrap().image.as_mut().unwrap().digest = digest('b');
        assert!(describe_tag(&described, NOW).contains("<none recorded yet"));

        // An index kept whole, and an image whose metadata could not be read.
        let index = ImageMetadata {
            digest: digest('a'),
            media_type: Some("application/vnd.oci.image.index.v1+json".into()),
            platforms: vec!["linux/amd64".into(), "linux/arm64".into()],
            ..Default::default()
        };
        let out = image_metadata(Some(&index), Some(&digest('a')), NOW);
        assert!(out.contains("Platforms:     linux/amd64, linux/arm64\n"), "{out}");
        assert!(!out.contains("Size:"), "{out}");
        let unreadable = ImageMetadata::unreadable(&digest('a'), "the config blob is too large".into());
        assert_eq!(
            image_metadata(Some(&unreadable), Some(&digest('a')), NOW),
            "Unreadable:    the config blob is too large\n"
        );
    }

    #[test]
    fn a_described_stream_lists_its_tags() {
        let mut stream = ImageStream::new("app", Default::default());
        stream.metadata.namespace = Some("ns".into());
        let out = describe_stream(&stream, &[tag()], NOW);
        assert!(out.contains("History limit:  10\n"), "{out}");
        assert!(out.contains("live   DockerImage reg/x@sha256"), "{out}");
        assert!(
            out.contains("object    sha256:aaaaaaaaaaaa   True Imported"),
            "{out}"
        );
    }
}
