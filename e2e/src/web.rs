//! The Workload the disruptive scenarios run: three replicas of the demo image following the tag `app:v1`,
//! Ready when :8080 accepts connections.

use std::time::Duration;

use crate::http::get;

/// The manifest (an ImageStreamTag and a Workload); `REGISTRY` stands for the registry's `host:port`.
pub const WEB_WORKLOAD: &str = r#"apiVersion: image.berth.dev/v1alpha1
kind: ImageStreamTag
metadata: {name: app.v1}
spec:
  stream: app
  tag: v1
  from: {kind: DockerImage, name: "REGISTRY/berth/demo:v1"}
  importPolicy: {insecure: true}
---
apiVersion: apps.berth.dev/v1alpha1
kind: Workload
metadata: {name: web}
spec:
  replicas: 3
  template:
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        imageFrom: {kind: ImageStreamTag, name: "app:v1"}
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
"#;

/// Whether the demo pod at `ip` answers its page within a second.
pub async fn answers(ip: &str) -> bool {
    get(&format!("{ip}:8080"), "/", Duration::from_secs(1))
        .await
        .is_ok_and(|r| r.body.contains("berth-demo"))
}
