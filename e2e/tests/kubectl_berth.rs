//! `kubectl berth` (the `kubectl-berth` binary) against the local cluster: the real API server, registry and
//! berth-controller. Every subcommand, its error paths and exit codes, and its `-o` outputs.
//!
//! The binary is found as [`berth_e2e::plugin::binary`] says (`$BERTH_BIN_DIR`, as hack/test.sh sets it); build it
//! with `cargo build --workspace --bins`.

use std::process::Command;
use std::time::Duration;

use berth_api::image::{ImageStreamTag, SourceKind};
use berth_e2e::api::{TestNamespace, admin_client, copy_image, kubectl_apply, unique, wait_for};
use berth_e2e::cluster::LocalCluster;
use berth_e2e::http::registry_digest;
use berth_e2e::k8s::setup;
use berth_e2e::plugin::{Plugin, binary};
use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use kube::api::Api;
use serde_json::{Value, json};

/// One scenario: the cluster, an admin client, a fresh namespace, and a fresh repository `berth/e2e-PREFIX-RANDOM`
/// whose tag `live` is the demo image v1 (digest `v1`).
struct Scenario {
    cluster: LocalCluster,
    client: kube::Client,
    ns: TestNamespace,
    repo: String,
    v1: String,
}

impl Scenario {
    /// `None` only when `BERTH_E2E=skip`.
    async fn start(prefix: &str) -> anyhow::Result<Option<Self>> {
        let Some((cluster, ns)) = setup(prefix).await? else {
            return Ok(None);
        };
        let client = admin_client(&cluster).await?;
        let repo = format!("berth/e2e-{prefix}-{}", unique());
        copy_image(&cluster.registry, "berth/demo:v1", &format!("{repo}:live"))?;
        let v1 = registry_digest(&cluster.registry, &repo, "live").await?;
        Ok(Some(Self {
            cluster,
            client,
            ns,
            repo,
            v1,
        }))
    }

    /// The plugin run in this scenario's namespace.
    fn plugin(&self) -> Plugin<'_> {
        Plugin {
            cluster: &self.cluster,
            namespace: &self.ns.name,
        }
    }
}

const TIMEOUT: Duration = Duration::from_secs(60);

async fn tag_of(api: &Api<ImageStreamTag>, name: &str) -> anyhow::Result<ImageStreamTag> {
    Ok(api.get(name).await?)
}

async fn wait_digest(api: &Api<ImageStreamTag>, name: &str, digest: &str) -> anyhow::Result<()> {
    wait_for(&format!("{name} at {digest}"), TIMEOUT, || async {
        let t = api.get_opt(name).await?;
        let seen = t.and_then(|t| t.status).and_then(|s| s.digest);
        Ok(if seen.as_deref() == Some(digest) {
            Ok(())
        } else {
            Err(format!("digest {seen:?}"))
        })
    })
    .await
}

#[tokio::test]
async fn e2e_kubectl_berth_import_tag_history_rollback_describe() -> anyhow::Result<()> {
    let Some(s) = Scenario::start("kb").await? else {
        return Ok(());
    };
    let (cluster, client, n, k) = (&s.cluster, &s.client, s.ns.name.as_str(), s.plugin());
    let (reg, repo, v1) = (&cluster.registry, s.repo.clone(), s.v1.clone());
    let source = format!("{reg}/{repo}:live");
    let api: Api<ImageStreamTag> = Api::namespaced(client.clone(), n);

    // import-image: refuses to create without --confirm, creates and waits with it.
    k.fails(
        &["import-image", "app:live", "--from", &source, "--insecure"],
        1,
        "pass --confirm",
    );
    let out = k.ok(&[
        "import-image",
        "app:live",
        "--from",
        &source,
        "--insecure",
        "--confirm",
    ]);
    assert!(out.contains(&format!("app:live imported: {v1}")), "{out}");

    // A new version: an import now shows it.
    copy_image(reg, "berth/demo:v2", &format!("{repo}:live"))?;
    let v2 = registry_digest(reg, &repo, "live").await?;
    let out = k.ok(&["import-image", "app:live", "-o", "json"]);
    let answered: Value = serde_json::from_str(&out)?;
    assert_eq!(answered["status"]["digest"], json!(v2), "{out}");

    // history: a table, newest first with the current marked; json and yaml.
    let out = k.ok(&["history", "app:live"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("#") && lines.len() == 3, "{out}");
    assert!(
        lines[1].starts_with("0   *") && lines[1].contains(&v2[..19]),
        "{out}"
    );
    let history: Value = serde_json::from_str(&k.ok(&["history", "app:live", "-o", "json"]))?;
    assert_eq!(history[0]["digest"], json!(v2));
    assert_eq!(history[1]["digest"], json!(v1));
    assert!(
        k.ok(&["history", "app:live", "-o", "yaml"])
            .contains(&format!("digest: {v1}"))
    );

    // tag: a copy pins the current digest, an alias follows, a registry source with -o name.
    let out = k.ok(&["tag", "app:live", "app:prod"]);
    assert_eq!(out, format!("Tag app:prod set to {reg}/{repo}@{v2}.\n"));
    let prod = tag_of(&api, "app.prod").await?;
    assert_eq!(
        (prod.spec.from.kind, prod.spec.from.name.as_str()),
        (SourceKind::DockerImage, format!("{reg}/{repo}@{v2}").as_str())
    );
    wait_digest(&api, "app.prod", &v2).await?;
    let out = k.ok(&["tag", "--alias", "app:live", "app:follow"]);
    assert_eq!(out, "Tag app:follow set up to track app:live.\n");
    assert_eq!(
        tag_of(&api, "app.follow").await?.spec.from.kind,
        SourceKind::ImageStreamTag
    );
    wait_digest(&api, "app.follow", &v2).await?;
    let out = k.ok(&[
        "tag",
        "--source=docker",
        "--insecure",
        "--scheduled",
        &source,
        "other:x",
        "-o",
        "name",
    ]);
    assert_eq!(out, "imagestreamtag.image.berth.dev/other.x\n");
    let other = tag_of(&api, "other.x").await?;
    assert!(other.spec.import_policy.clone().unwrap_or_default().scheduled);
    assert_eq!(
        other
            .managed_fields()
            .iter()
            .filter(|m| m.manager.as_deref() == Some("kubectl-berth"))
            .count(),
        1
    );

    // rollback: to the previous image, pinned; an import does not undo it; the undo command does.
    let out = k.ok(&["rollback", "app:live"]);
    assert!(out.contains(&format!("to history entry 1: {v1}")), "{out}");
    let undo = format!("kubectl berth tag --source=docker --insecure {source} app:live");
    assert!(out.contains(&undo), "{out}");
    let pinned = tag_of(&api, "app.live").await?;
    assert_eq!(pinned.spec.from.name, format!("{reg}/{repo}@{v1}"));
    assert!(
        pinned
            .annotations()
            .contains_key("image.berth.dev/rolled-back-from")
    );
    wait_digest(&api, "app.live", &v1).await?;
    let out = k.ok(&["import-image", "app:live"]);
    assert!(
        out.contains(&format!("app:live imported: {v1}")),
        "the pin holds: {out}"
    );
    // Status says so: the ImportSuccess message names the pin and what it followed before.
    let pinned = tag_of(&api, "app.live").await?;
    let message = berth_e2e::api::import_condition(&pinned)
        .map(|c| c.2)
        .unwrap_or_default();
    assert!(
        message.contains(&format!("(pinned by a rollback from {source})")),
        "{message}"
    );
    let described = k.ok(&["describe", "app:live"]);
    assert!(
        described.contains("Pinned:") && described.contains(&undo),
        "{described}"
    );
    // --to a digest prefix, then -o yaml.
    let out = k.ok(&["rollback", "app:live", "--to", &v2[7..19], "-o", "yaml"]);
    let pinned: Value = serde_saphyr::from_str(&out)?;
    assert_eq!(
        pinned["spec"]["from"]["name"],
        json!(format!("{reg}/{repo}@{v2}")),
        "{out}"
    );
    // Tagged back: it follows the registry again and the pin's annotation is gone.
    k.ok(&["tag", "--source=docker", "--insecure", &source, "app:live"]);
    let back = tag_of(&api, "app.live").await?;
    assert_eq!(back.spec.from.name, source);
    assert!(
        !back
            .annotations()
            .contains_key("image.berth.dev/rolled-back-from"),
        "{:?}",
        back.annotations()
    );
    assert!(back.spec.import_policy.unwrap_or_default().insecure);
    wait_digest(&api, "app.live", &v2).await?;

    // describe a tag and a stream.
    let out = k.ok(&["describe", "app:live"]);
    for needle in [
        "Stream:         app",
        "Tag:            live",
        &format!("Digest:         {v2}"),
        "ImportSuccess",
        "History:",
    ] {
        assert!(out.contains(needle), "describe lacks {needle:?}: {out}");
    }
    let out = k.ok(&["describe", "app"]);
    for needle in ["Name:           app", "live", "prod", "follow"] {
        assert!(out.contains(needle), "describe lacks {needle:?}: {out}");
    }

    // tag -d: gone, and again is an error naming it.
    assert_eq!(k.ok(&["tag", "-d", "app:prod"]), "Deleted tag app:prod.\n");
    assert!(api.get_opt("app.prod").await?.is_none());
    k.fails(
        &["tag", "-d", "app:prod"],
        1,
        &format!("imagestreamtag app:prod not found in namespace {n}"),
    );

    // A failed import exits 1 with the condition's reason.
    let missing = format!("{reg}/berth/e2e-kb-none-{}:v1", unique());
    k.fails(
        &[
            "import-image",
            "gone:v1",
            "--from",
            &missing,
            "--insecure",
            "--confirm",
        ],
        1,
        "import of gone:v1 failed: NotFound",
    );

    // The kubeconfig as kubectl finds it: $KUBECONFIG, and --context (an unknown one is an error).
    let env = Command::new(binary())
        .env("KUBECONFIG", &cluster.kubeconfig)
        .args(["-n", n, "history", "app:live", "-o", "json"])
        .output()?;
    assert!(env.status.success(), "KUBECONFIG: {env:?}");
    let context = kube::config::Kubeconfig::read_from(&cluster.kubeconfig)?
        .current_context
        .unwrap_or_default();
    k.ok(&["--context", &context, "history", "app:live"]);
    k.fails(
        &["--context", "nope", "history", "app:live"],
        1,
        "cannot load the kubeconfig",
    );

    // Errors: missing objects exit 1 naming them; usage exits 2.
    k.fails(
        &["history", "app:nope"],
        1,
        &format!("imagestreamtag app:nope not found in namespace {n}"),
    );
    k.fails(&["rollback", "app:nope"], 1, "imagestreamtag app:nope not found");
    k.fails(&["describe", "nope"], 1, "imagestream nope not found");
    k.fails(
        &["tag", "app:nope", "app:x"],
        1,
        "imagestreamtag app:nope not found",
    );
    k.fails(
        &["rollback", "other:x", "--to", "7"],
        1,
        "other:x has no history entry 7",
    );
    k.fails(
        &["import-image", "app:missing"],
        1,
        "does not exist on the image stream",
    );
    for usage in [
        vec!["tag", "app:live"],
        vec!["tag", "--alias", "-d", "app:live"],
        vec!["tag", "--scheduled", "app:live", "app:y"],
        vec!["history"],
        vec!["history", "app:live", "-o", "name"],
        vec!["import-image", "app@sha256:0000000"],
        vec!["bogus"],
    ] {
        let run = k.run(&usage);
        assert_eq!(run.code, 2, "{usage:?}: {run:?}");
    }
    Ok(())
}

#[tokio::test]
async fn e2e_kubectl_berth_set_triggers_writes_what_the_controller_follows() -> anyhow::Result<()> {
    let Some(s) = Scenario::start("kbtrig").await? else {
        return Ok(());
    };
    let (cluster, client, n, k) = (&s.cluster, &s.client, s.ns.name.as_str(), s.plugin());
    let (reg, repo, v1) = (&cluster.registry, s.repo.clone(), s.v1.clone());
    k.ok(&[
        "import-image",
        "app:live",
        "--from",
        &format!("{reg}/{repo}:live"),
        "--insecure",
        "--confirm",
    ]);

    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "t"}}, "template": {
            "metadata": {"labels": {"app": "t"}},
            "spec": {"nodeSelector": {"berth.dev/e2e-none": "true"},
                     "containers": [{"name": "web", "image": "placeholder"}, {"name": "side", "image": "placeholder"}]}}},
    });
    kubectl_apply(cluster, n, &deployment.to_string()).map_err(anyhow::Error::msg)?;

    let out = k.ok(&[
        "set",
        "triggers",
        "deployment/web",
        "--from-image",
        "app:live",
        "-c",
        "web",
    ]);
    assert_eq!(out, "deployments/web triggers updated\n");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), n);
    let annotation = deployments
        .get("web")
        .await?
        .annotations()
        .get("image.openshift.io/triggers")
        .cloned();
    assert_eq!(
        annotation.as_deref(),
        Some(
            r#"[{"from":{"kind":"ImageStreamTag","name":"app:live"},"fieldPath":"spec.template.spec.containers[?(@.name==\"web\")].image"}]"#
        )
    );
    // The controller reads it: the container gets the tag's pull spec.
    let want = format!("{reg}/{repo}@{v1}");
    wait_for("web's image from the trigger", TIMEOUT, || async {
        let d = deployments.get("web").await?;
        let image = d
            .spec
            .and_then(|s| s.template.spec)
            .map(|s| s.containers[0].image.clone().unwrap_or_default());
        Ok(if image.as_deref() == Some(want.as_str()) {
            Ok(())
        } else {
            Err(format!("{image:?}"))
        })
    })
    .await?;

    let table = k.ok(&["set", "triggers", "deploy/web"]);
    assert!(
        table.lines().nth(1).is_some_and(|l| l.contains("deployments/web")
            && l.contains("app:live (web)")
            && l.ends_with("true")),
        "{table}"
    );
    let out = k.ok(&["set", "triggers", "deployment/web", "--manual", "-o", "json"]);
    let object: Value = serde_json::from_str(&out)?;
    let value = object["metadata"]["annotations"]["image.openshift.io/triggers"]
        .as_str()
        .unwrap_or_default();
    assert!(value.contains(r#""paused":true"#), "{value}");
    assert!(k.ok(&["set", "triggers", "deploy/web"]).contains("false"));
    k.ok(&["set", "triggers", "deployment/web", "--auto"]);
    k.fails(
        &[
            "set",
            "triggers",
            "deployment/web",
            "--from-image",
            "app:live",
            "-c",
            "nope",
        ],
        1,
        "not all container names exist: nope",
    );
    k.fails(
        &[
            "set",
            "triggers",
            "deployment/web",
            "--from-image",
            "app:v9",
            "-c",
            "web",
        ],
        1,
        "only one trigger may reference each container: web",
    );
    k.fails(
        &[
            "set",
            "triggers",
            "deployment/missing",
            "--from-image",
            "app:live",
            "-c",
            "web",
        ],
        1,
        &format!("deployment missing not found in namespace {n}"),
    );
    k.fails(
        &["set", "triggers", "deployment/web", "--from-image", "app:live"],
        2,
        "several containers",
    );
    let run = k.run(&["set", "triggers", "pod/x", "--from-image", "app:live"]);
    assert_eq!(run.code, 2, "{run:?}");
    let out = k.ok(&[
        "set",
        "triggers",
        "deployment/web",
        "--remove",
        "--from-image",
        "app:live",
        "-o",
        "name",
    ]);
    assert_eq!(out, "deployment.apps/web\n");
    assert!(
        !deployments
            .get("web")
            .await?
            .annotations()
            .contains_key("image.openshift.io/triggers")
    );
    k.ok(&[
        "set",
        "triggers",
        "deployment/web",
        "--from-image",
        "app:live",
        "-c",
        "web,side",
    ]);
    k.ok(&["set", "triggers", "deployment/web", "--remove-all"]);
    assert!(
        !deployments
            .get("web")
            .await?
            .annotations()
            .contains_key("image.openshift.io/triggers")
    );

    // A CronJob, in whichever batch version the server serves (1.20: v1beta1 only).
    let cron = json!({
        "apiVersion": "batch/v1beta1", "kind": "CronJob", "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 0 1 1 *", "suspend": true, "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "job", "image": "placeholder"}]}}}}},
    });
    kubectl_apply(cluster, n, &cron.to_string()).map_err(anyhow::Error::msg)?;
    let out = k.ok(&[
        "set",
        "triggers",
        "cronjob/nightly",
        "--from-image",
        "app:live",
        "-o",
        "json",
    ]);
    let object: Value = serde_json::from_str(&out)?;
    let value = object["metadata"]["annotations"]["image.openshift.io/triggers"]
        .as_str()
        .unwrap_or_default();
    assert!(
        value.contains(r#"spec.jobTemplate.spec.template.spec.containers[?(@.name==\"job\")].image"#),
        "{value}"
    );
    Ok(())
}

#[tokio::test]
async fn e2e_kubectl_berth_stream_images_policies_and_inline_tags() -> anyhow::Result<()> {
    let Some(s) = Scenario::start("kbsrc").await? else {
        return Ok(());
    };
    let (cluster, client, n, k) = (&s.cluster, &s.client, s.ns.name.as_str(), s.plugin());
    let (reg, repo, v1) = (&cluster.registry, s.repo.clone(), s.v1.clone());
    let source = format!("{reg}/{repo}:live");
    let api: Api<ImageStreamTag> = Api::namespaced(client.clone(), n);
    k.ok(&[
        "import-image",
        "app:live",
        "--from",
        &source,
        "--insecure",
        "--confirm",
    ]);

    // STREAM@DIGEST is an ImageStreamImage, resolved from the stream's history.
    let out = k.ok(&["tag", &format!("app@{v1}"), "app:old"]);
    assert_eq!(out, format!("Tag app:old set to app@{v1}.\n"));
    assert_eq!(
        tag_of(&api, "app.old").await?.spec.from.kind,
        SourceKind::ImageStreamImage
    );
    wait_digest(&api, "app.old", &v1).await?;

    // --reference records without importing; the reference policy is written as given.
    k.ok(&[
        "tag",
        "--source=docker",
        "--reference",
        "--reference-policy=local",
        &source,
        "app:ref",
    ]);
    let recorded = tag_of(&api, "app.ref").await?;
    assert!(recorded.spec.reference);
    assert_eq!(
        recorded.spec.reference_policy.map(|p| p.type_),
        Some(berth_api::image::ReferencePolicyType::Local)
    );
    k.ok(&[
        "tag",
        "--source=docker",
        "--insecure",
        "--import-mode",
        "PreserveOriginal",
        &source,
        "app:index",
    ]);
    let index = tag_of(&api, "app.index")
        .await?
        .spec
        .import_policy
        .unwrap_or_default();
    assert_eq!(
        index.import_mode,
        Some(berth_api::image::ImportMode::PreserveOriginal)
    );

    // import-image --all asks every registry tag of the stream; --scheduled adds to the policy.
    let out = k.ok(&["import-image", "app", "--all", "--scheduled"]);
    for tag in ["app:live imported", "app:index imported"] {
        assert!(out.contains(tag), "{out}");
    }
    assert!(
        tag_of(&api, "app.live")
            .await?
            .spec
            .import_policy
            .unwrap_or_default()
            .scheduled
    );

    // A tag defined inline in its stream is changed in the stream: refused by rollback, removed from it by -d.
    let stream = json!({
        "apiVersion": "image.berth.dev/v1alpha1", "kind": "ImageStream", "metadata": {"name": "web"},
        "spec": {"tags": [{"name": "v1", "from": {"kind": "DockerImage", "name": source},
                           "importPolicy": {"insecure": true}}]},
    });
    kubectl_apply(cluster, n, &stream.to_string()).map_err(anyhow::Error::msg)?;
    wait_digest(&api, "web.v1", &v1).await?;
    k.fails(&["rollback", "web:v1"], 1, "is defined inline in ImageStream web");
    k.fails(
        &["tag", "app:live", "web:v1"],
        1,
        "is defined inline in ImageStream web",
    );
    assert_eq!(k.ok(&["tag", "-d", "web:v1"]), "Deleted tag web:v1.\n");
    let streams: Api<berth_api::image::ImageStream> = Api::namespaced(client.clone(), n);
    assert!(streams.get("web").await?.spec.tags.is_empty());
    Ok(())
}

#[test]
fn e2e_kubectl_berth_completion_scripts() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(binary())
            .args(["completion", shell])
            .output()
            .expect("kubectl-berth runs");
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("kubectl-berth") && script.contains("import-image"),
            "{shell}: {script}"
        );
    }
    let out = Command::new(binary())
        .args(["completion", "tcsh"])
        .output()
        .expect("kubectl-berth runs");
    assert_eq!(out.status.code(), Some(2));
}
