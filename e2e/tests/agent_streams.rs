//! End-to-end tests of `kubectl exec`, `attach` and `port-forward` through the API server to
//! Berth nodes (the agent proxies the upgraded stream to containerd's streaming server), and
//! of the kubelet port's authentication and authorisation (client certificate or bearer
//! token, then a SubjectAccessReview of `nodes/proxy`, `nodes/log`, ... per request).
//!
//! Run: `cargo test -p berth-e2e --test agent_streams -- --nocapture`

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, ensure};
use berth_e2e::api::wait_for;
use berth_e2e::cluster::LocalCluster;
use berth_e2e::k8s::{create_pod, phase, setup, wait_pod};
use k8s_openapi::api::core::v1::Pod;
use tokio::io::AsyncWriteExt;

fn kubectl(cluster: &LocalCluster, ns: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("kubectl");
    c.arg("--kubeconfig").arg(&cluster.kubeconfig).args(["-n", ns]);
    c.kill_on_drop(true);
    c
}

/// Output of a kubectl command that must end within 60 s: (exit code, stdout, stderr).
async fn run(mut cmd: tokio::process::Command) -> anyhow::Result<(i32, String, String)> {
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .context("kubectl did not end within 60 s")??;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A running pod of the demo image (httpd on :8080) on the first host.
async fn demo_pod(cluster: &LocalCluster, api: &kube::Api<Pod>, name: &str) -> anyhow::Result<()> {
    let image = format!("{}/berth/demo:v1", cluster.registry);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"nodeName": cluster.nodes[0].name, "automountServiceAccountToken": false,
                 "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "app", "image": image}]}
    }))?;
    create_pod(api, &pod).await?;
    wait_pod(api, name, Duration::from_secs(60), |p| {
        (phase(p) == Some("Running")).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_kubectl_exec_runs_in_the_container_with_stdin_and_exit_codes() -> anyhow::Result<()> {
    let Some((cluster, ns)) = setup("e2e-exec").await? else {
        return Ok(());
    };
    demo_pod(&cluster, &ns.pods(), "web").await?;

    // Output of a command in the container's own filesystem and namespaces.
    let mut cmd = kubectl(&cluster, &ns.name);
    cmd.args([
        "exec",
        "web",
        "-c",
        "app",
        "--",
        "sh",
        "-c",
        "hostname; cat /www/index.html",
    ]);
    let (code, out, err) = run(cmd).await?;
    ensure!(code == 0, "kubectl exec exited {code}: {err}");
    ensure!(
        out == "web\nberth-demo v1\n",
        "kubectl exec printed {out:?} (stderr {err:?})"
    );

    // Standard input reaches the process; its exit code reaches kubectl.
    let mut cmd = kubectl(&cluster, &ns.name);
    cmd.args(["exec", "-i", "web", "--", "sh", "-c", "tr a-z A-Z; exit 3"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(b"through the agent\n").await?;
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .context("kubectl exec -i did not end")??;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(text == "THROUGH THE AGENT\n", "kubectl exec -i printed {text:?}");
    ensure!(
        out.status.code() == Some(3),
        "kubectl exec -i exited {:?}, the command exited 3 ({})",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );

    // A container that does not exist is an error naming it, not a hang.
    let mut cmd = kubectl(&cluster, &ns.name);
    cmd.args(["exec", "web", "-c", "nope", "--", "true"]);
    let (code, _, err) = run(cmd).await?;
    ensure!(
        code != 0 && err.contains("nope"),
        "exec into a missing container: {code} {err}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_kubectl_attach_and_port_forward() -> anyhow::Result<()> {
    let Some((cluster, ns)) = setup("e2e-attach").await? else {
        return Ok(());
    };
    let api = ns.pods();
    demo_pod(&cluster, &api, "web").await?;

    // port-forward: the pod's :8080 on a local port, answered by the container's httpd.
    let port = 18000 + (std::process::id() % 1000) as u16;
    let mut forward = kubectl(&cluster, &ns.name);
    forward
        .args(["port-forward", "pod/web", &format!("{port}:8080")])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = forward.spawn()?;
    let body = wait_for("the forwarded port answers", Duration::from_secs(30), || async {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "3", &format!("http://127.0.0.1:{port}/")])
            .output()?;
        Ok(if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        })
    })
    .await;
    let _ = child.kill().await;
    let body = body?;
    ensure!(body.trim() == "berth-demo v1", "through port-forward: {body:?}");

    // attach: the main process's output from the moment of attaching.
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "ticker"},
        "spec": {"nodeName": cluster.nodes[0].name, "automountServiceAccountToken": false,
                 "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "app", "image": format!("{}/berth/demo:v1", cluster.registry),
                                 "command": ["sh", "-c", "sleep 3; for i in 1 2 3; do echo tick $i; sleep 1; done"]}]}
    }))?;
    create_pod(&api, &pod).await?;
    wait_pod(&api, "ticker", Duration::from_secs(60), |p| {
        (phase(p) == Some("Running")).then_some(())
    })
    .await?;
    let mut cmd = kubectl(&cluster, &ns.name);
    cmd.args(["attach", "ticker", "-c", "app"]);
    let (_, out, err) = run(cmd).await?;
    ensure!(out.contains("tick 3"), "kubectl attach printed {out:?} ({err})");
    Ok(())
}

fn curl_status(args: &[&str]) -> anyhow::Result<(u16, String)> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "-o",
            "/dev/stderr",
            "-w",
            "%{http_code}",
        ])
        .args(args)
        .output()
        .context("running curl")?;
    let code = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    Ok((code, String::from_utf8_lossy(&out.stderr).into_owned()))
}

/// A client certificate of the cluster CA for user `cn`, made in `dir` with openssl.
fn client_cert(pki: &Path, dir: &Path, cn: &str) -> anyhow::Result<(String, String)> {
    let (key, csr, crt) = (
        dir.join(format!("{cn}.key")),
        dir.join(format!("{cn}.csr")),
        dir.join(format!("{cn}.crt")),
    );
    let ext = dir.join("ext.cnf");
    std::fs::write(&ext, "extendedKeyUsage=clientAuth\n")?;
    let steps: [Vec<String>; 3] = [
        [
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([key.display().to_string()])
        .collect(),
        vec![
            "req".into(),
            "-new".into(),
            "-key".into(),
            key.display().to_string(),
            "-subj".into(),
            format!("/O=e2e-streams/CN={cn}"),
            "-out".into(),
            csr.display().to_string(),
        ],
        vec![
            "x509".into(),
            "-req".into(),
            "-in".into(),
            csr.display().to_string(),
            "-CA".into(),
            pki.join("ca.crt").display().to_string(),
            "-CAkey".into(),
            pki.join("ca.key").display().to_string(),
            "-CAcreateserial".into(),
            "-CAserial".into(),
            dir.join("ca.srl").display().to_string(),
            "-days".into(),
            "1".into(),
            "-extfile".into(),
            ext.display().to_string(),
            "-out".into(),
            crt.display().to_string(),
        ],
    ];
    for args in steps {
        let out = Command::new("openssl").args(&args).output()?;
        ensure!(
            out.status.success(),
            "openssl {}: {}",
            args[0],
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((crt.display().to_string(), key.display().to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_kubelet_port_authorises_each_request_by_subject_access_review() -> anyhow::Result<()> {
    let Some((cluster, ns)) = setup("e2e-nodeauthz").await? else {
        return Ok(());
    };
    let node = &cluster.nodes[0];
    let pki = cluster.state.join("pki");
    let p = |f: &str| pki.join(f).display().to_string();
    let base = format!("https://{}:10250", node.ip);
    let logs = format!("{base}/containerLogs/{}/none/app", ns.name);
    let tls = ["--cacert".to_string(), p("ca.crt")];

    // No certificate, no token: 401.
    let (code, body) = curl_status(&[&tls[0], &tls[1], &logs])?;
    ensure!(code == 401, "{}: anonymous got {code} {body}", node.name);

    // The API server's kubelet client (bound to system:kubelet-api-admin) passes authorisation:
    // the pod does not exist, so the handler's 404.
    let (code, body) = curl_status(&[
        &tls[0],
        &tls[1],
        "--cert",
        &p("apiserver-kubelet-client.crt"),
        "--key",
        &p("apiserver-kubelet-client.key"),
        &logs,
    ])?;
    ensure!(
        code == 404 && body.contains("not on this node"),
        "kubelet client: {code} {body}"
    );

    // A certificate of the cluster CA whose user holds only nodes/log: container logs and exec
    // (nodes/proxy) are refused with the kubelet's message naming the user and subresource.
    let user = format!("e2e-log-reader-{}", ns.name);
    let dir = tempfile_dir(&ns.name)?;
    let (crt, key) = client_cert(&pki, &dir, &user)?;
    let role = user.clone();
    let grant = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .args([
            "create",
            "clusterrole",
            &role,
            "--verb=get",
            "--resource=nodes/log",
        ])
        .output()?;
    ensure!(
        grant.status.success(),
        "{}",
        String::from_utf8_lossy(&grant.stderr)
    );
    let bind = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .args([
            "create",
            "clusterrolebinding",
            &role,
            &format!("--clusterrole={role}"),
            &format!("--user={user}"),
        ])
        .output()?;
    let result = async {
        ensure!(bind.status.success(), "{}", String::from_utf8_lossy(&bind.stderr));
        let (code, body) = curl_status(&[&tls[0], &tls[1], "--cert", &crt, "--key", &key, &logs])?;
        ensure!(
            code == 403
                && body.contains(&format!(
                    "Forbidden (user={user}, verb=get, resource=nodes, subresource=proxy)"
                )),
            "log reader on containerLogs: {code} {body}"
        );
        let exec = format!("{base}/exec/{}/none/app?command=true&output=1", ns.name);
        let (code, body) = curl_status(&[
            &tls[0], &tls[1], "--cert", &crt, "--key", &key, "-X", "POST", &exec,
        ])?;
        ensure!(
            code == 403 && body.contains("verb=create") && body.contains("subresource=proxy"),
            "log reader on exec: {code} {body}"
        );
        // nodes/log is granted: /logs/ passes authorisation (the agent serves no node logs: 404).
        let (code, body) = curl_status(&[
            &tls[0],
            &tls[1],
            "--cert",
            &crt,
            "--key",
            &key,
            &format!("{base}/logs/"),
        ])?;
        ensure!(code == 404, "log reader on /logs/: {code} {body}");

        // A bearer token is asked of the API server: the controller's identity holds no
        // nodes/proxy; the admin's does.
        let token = |name: &str| {
            std::fs::read_to_string(cluster.state.join("tokens").join(name)).map(|t| t.trim().to_string())
        };
        let controller = token("berth-controller").context("the controller's token file")?;
        let (code, body) = curl_status(&[
            &tls[0],
            &tls[1],
            "-H",
            &format!("Authorization: Bearer {controller}"),
            &logs,
        ])?;
        ensure!(
            code == 403 && body.contains("user=berth-controller"),
            "controller token: {code} {body}"
        );
        ensure!(!body.contains(&controller), "the token was echoed");
        let admin = token("admin").context("the admin token file")?;
        let (code, body) = curl_status(&[
            &tls[0],
            &tls[1],
            "-H",
            &format!("Authorization: Bearer {admin}"),
            &logs,
        ])?;
        ensure!(code == 404, "admin token: {code} {body}");
        let (code, body) =
            curl_status(&[&tls[0], &tls[1], "-H", "Authorization: Bearer not-a-token", &logs])?;
        ensure!(code == 401, "unknown token: {code} {body}");
        Ok(())
    }
    .await;
    for kind in ["clusterrolebinding", "clusterrole"] {
        let _ = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&cluster.kubeconfig)
            .args(["delete", kind, &role])
            .output();
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn tempfile_dir(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("berth-e2e-{name}"));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
