//! The parser over config shapes as registries serve them.

use berth_api::image_metadata::{MAX_LABEL_VALUE_BYTES, MAX_LABELS};

use super::*;

const D: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const C: &str = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn manifest(layers: &[(&str, i64)]) -> ImageManifest {
    ImageManifest {
        config: Descriptor {
            digest: C.into(),
            size: 0,
        },
        layers: layers
            .iter()
            .map(|(d, size)| Descriptor {
                digest: format!("sha256:{}", d.repeat(64)),
                size: *size,
            })
            .collect(),
    }
}

/// A Docker schema 2 config as `docker build` wrote it for nginx (trimmed history, same keys and nulls).
const NGINX_DOCKER: &str = r#"{"architecture":"amd64","config":{"Hostname":"","Domainname":"","User":"",
"AttachStdin":false,"ExposedPorts":{"80/tcp":{}},"Tty":false,"Env":["PATH=/usr/local/sbin:/usr/bin","NGINX_VERSION=1.25.3"],
"Cmd":["nginx","-g","daemon off;"],"Image":"sha256:0a","Volumes":null,"WorkingDir":"","Entrypoint":["/docker-entrypoint.sh"],
"OnBuild":null,"Labels":{"maintainer":"NGINX Docker Maintainers <docker-maint@nginx.com>"},"StopSignal":"SIGQUIT"},
"container":"3c1","container_config":{"Hostname":"3c1","Labels":{"maintainer":"x"}},"created":"2023-11-01T05:33:30.143467813Z",
"docker_version":"20.10.23","history":[{"created":"2023-11-01T00:00:00Z","created_by":"ADD file:abc in / "}],"os":"linux",
"rootfs":{"type":"layers","diff_ids":["sha256:aa","sha256:bb"]}}"#;

/// An OCI config as BuildKit writes it for an arm64 image with a user and several ports.
const BUILDKIT_OCI_ARM64: &str = r#"{"architecture":"arm64","variant":"v8","created":"2024-05-02T10:20:30Z",
"config":{"User":"1001:0","ExposedPorts":{"8443/tcp":{},"8080/tcp":{},"9090/udp":{}},"Env":["A=b"],
"Labels":{"org.opencontainers.image.source":"https://github.com/org/app","org.opencontainers.image.version":"1.4.2"},
"WorkingDir":"/app","ArgsEscaped":true},"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:cc"]},
"history":[{"created":"2024-05-02T10:20:30Z","created_by":"COPY . /app # buildkit","comment":"buildkit.dockerfile.v0"}]}"#;

#[test]
fn a_docker_schema2_config() {
    let m = manifest(&[("a", 31_403_516), ("b", 25_584_344), ("e", 626)]);
    let meta = describe_image(D, DOCKER_MANIFEST, &m, NGINX_DOCKER.as_bytes()).expect("parses");
    assert_eq!(meta.digest, D);
    assert_eq!(meta.media_type.as_deref(), Some(DOCKER_MANIFEST));
    assert_eq!(meta.platform.as_deref(), Some("linux/amd64"));
    assert_eq!(
        (meta.os.as_deref(), meta.architecture.as_deref()),
        (Some("linux"), Some("amd64"))
    );
    assert_eq!(meta.variant, None);
    assert_eq!(
        meta.created.as_ref().map(|t| t.0.to_string()),
        Some("2023-11-01T05:33:30.143467813Z".into())
    );
    assert_eq!(meta.layers, Some(3));
    // OpenShift's size: the config's bytes and every distinct layer.
    let size = 31_403_516 + 25_584_344 + 626 + NGINX_DOCKER.len() as i64;
    assert_eq!(meta.size, Some(size));
    assert_eq!(meta.display_size.as_deref(), Some("54MiB"));
    assert_eq!(meta.user, None, "an empty user is no user");
    assert_eq!(meta.exposed_ports, ["80/tcp"]);
    assert_eq!(
        meta.labels.get("maintainer").map(String::as_str),
        Some("NGINX Docker Maintainers <docker-maint@nginx.com>")
    );
    assert_eq!(
        meta.labels.len(),
        1,
        "container_config's labels are not the image's"
    );
    assert_eq!((meta.truncated, meta.unreadable), (None, None));
}

#[test]
fn an_oci_config_with_a_variant_user_and_ports() {
    let m = manifest(&[("d", 1000)]);
    let meta = describe_image(D, OCI_MANIFEST, &m, BUILDKIT_OCI_ARM64.as_bytes()).expect("parses");
    assert_eq!(meta.platform.as_deref(), Some("linux/arm64/v8"));
    assert_eq!(meta.variant.as_deref(), Some("v8"));
    assert_eq!(meta.user.as_deref(), Some("1001:0"));
    assert_eq!(meta.exposed_ports, ["8080/tcp", "8443/tcp", "9090/udp"], "sorted");
    assert_eq!(meta.labels.len(), 2);
    assert_eq!(meta.layers, Some(1));
}

#[test]
fn configs_that_say_little() {
    let m = manifest(&[]);
    for config in [
        // umoci's minimal config, and what `hack/images.sh` pushes.
        r#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#,
        // nulls where Go writes them.
        r#"{"architecture":"amd64","os":"linux","config":{"User":null,"ExposedPorts":null,"Labels":null}}"#,
        // no config section at all.
        r#"{"architecture":"amd64","os":"linux"}"#,
    ] {
        let meta = describe_image(D, OCI_MANIFEST, &m, config.as_bytes()).expect(config);
        assert_eq!(meta.platform.as_deref(), Some("linux/amd64"), "{config}");
        assert!(meta.labels.is_empty() && meta.exposed_ports.is_empty() && meta.user.is_none());
        assert_eq!(meta.created, None);
        assert_eq!(meta.layers, Some(0));
        assert_eq!(meta.size, Some(config.len() as i64));
    }
    // Not even a platform: still metadata (size, layers), no platform column.
    let meta = describe_image(D, OCI_MANIFEST, &m, b"{}").expect("an empty object");
    assert_eq!((meta.platform, meta.size), (None, Some(2)));
}

#[test]
fn go_zero_times_and_unparsable_times_are_left_out_and_epoch_kept() {
    let m = manifest(&[]);
    let at = |created: &str| {
        let config = format!(r#"{{"created":"{created}"}}"#);
        describe_image(D, OCI_MANIFEST, &m, config.as_bytes())
            .expect("parses")
            .created
            .map(|t| t.0.as_second())
    };
    assert_eq!(at("0001-01-01T00:00:00Z"), None);
    assert_eq!(at("yesterday"), None);
    assert_eq!(
        at("1970-01-01T00:00:00Z"),
        Some(0),
        "reproducible builds (SOURCE_DATE_EPOCH=0)"
    );
    assert_eq!(at("2024-05-02T12:20:30+02:00"), Some(1_714_645_230));
}

#[test]
fn shared_layers_count_once_and_the_config_is_not_counted_twice() {
    let mut m = manifest(&[("a", 100), ("b", 50), ("a", 100)]);
    m.layers.push(Descriptor {
        digest: C.into(),
        size: 7,
    });
    assert_eq!(image_size(&m, 10), 160);
    assert_eq!(image_size(&manifest(&[("a", i64::MAX), ("b", 1)]), 1), i64::MAX);
}

#[test]
fn huge_label_maps_are_bounded_and_said_so() {
    let mut labels = serde_json::Map::new();
    for i in 0..5000 {
        labels.insert(format!("label.{i:05}"), "v".repeat(10).into());
    }
    labels.insert("a.long.value".into(), "é".repeat(1000).into());
    labels.insert("k".repeat(300), "key too long".into());
    labels.insert("a.number".into(), 42.into());
    let config = serde_json::json!({"os": "linux", "architecture": "amd64", "config": {"Labels": labels}});
    let meta =
        describe_image(D, OCI_MANIFEST, &manifest(&[]), config.to_string().as_bytes()).expect("parses");
    assert_eq!(meta.labels.len(), MAX_LABELS);
    let long = &meta.labels["a.long.value"];
    assert!(
        long.len() <= MAX_LABEL_VALUE_BYTES && long.ends_with("..."),
        "{long}"
    );
    assert!(!meta.labels.contains_key("a.number"));
    let note = meta.truncated.expect("said");
    assert!(note.contains("4939 of 5003 labels left out"), "{note}");
    assert!(note.contains("1 label values cut to 256 bytes"), "{note}");
    // What a status may hold stays small whatever the image says.
    let bytes = serde_json::to_vec(&meta.labels).unwrap().len();
    assert!(bytes < 64 * (253 + 256 + 8), "{bytes}");
}

#[test]
fn many_ports_and_long_users_are_bounded() {
    let ports: serde_json::Map<String, serde_json::Value> = (1000..1100)
        .map(|p| (format!("{p}/tcp"), serde_json::json!({})))
        .collect();
    let config = serde_json::json!({"config": {"ExposedPorts": ports, "User": "u".repeat(1000)}});
    let meta =
        describe_image(D, OCI_MANIFEST, &manifest(&[]), config.to_string().as_bytes()).expect("parses");
    assert_eq!(meta.exposed_ports.len(), 32);
    assert_eq!(meta.user.as_deref().map(str::len), Some(256));
    let note = meta.truncated.expect("said");
    assert!(
        note.contains("user cut to 256 bytes") && note.contains("68 of 100 exposed ports left out"),
        "{note}"
    );
}

#[test]
fn what_is_not_a_config_or_manifest_is_refused_with_the_reason() {
    let e = describe_image(D, OCI_MANIFEST, &manifest(&[]), b"<html>").unwrap_err();
    assert!(e.contains("the config blob does not parse"), "{e}");
    let e = describe_image(D, OCI_MANIFEST, &manifest(&[]), br#"{"config":{"Labels":["a"]}}"#).unwrap_err();
    assert!(e.contains("does not parse"), "{e}");
    let e = parse_manifest(br#"{"schemaVersion":2,"config":{"digest":"md5:x","size":1},"layers":[]}"#)
        .unwrap_err();
    assert!(e.contains("not a sha256 digest"), "{e}");
    let e = parse_manifest(format!(r#"{{"config":{{"digest":"{C}","size":-1}}}}"#).as_bytes()).unwrap_err();
    assert!(e.contains("negative"), "{e}");
    let m = parse_manifest(format!(r#"{{"config":{{"digest":"{C}","size":2}},"layers":null}}"#).as_bytes())
        .expect("layers may be null");
    assert_eq!((m.config.size, m.layers.len()), (2, 0));
}

#[test]
fn an_index_kept_whole_lists_its_platforms() {
    let entry = |os: &str, arch: &str, n: char| {
        format!(
            r#"{{"mediaType":"{OCI_MANIFEST}","digest":"sha256:{}","size":1,"platform":{{"os":"{os}","architecture":"{arch}"}}}}"#,
            n.to_string().repeat(64)
        )
    };
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{},{},{}]}}"#,
        entry("linux", "amd64", 'a'),
        entry("linux", "arm64", 'b'),
        entry("unknown", "unknown", 'c')
    );
    let meta =
        describe_index(D, "application/vnd.oci.image.index.v1+json", index.as_bytes()).expect("parses");
    assert_eq!(meta.platforms, ["linux/amd64", "linux/arm64"]);
    assert_eq!((meta.size, meta.layers, meta.platform), (None, None, None));
}
