use super::*;

fn pod() -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "shop", "uid": "u1", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "resources": {"limits": {"memory": "64Mi"}}}]}
    }))
    .expect("pod")
}

fn vol(j: serde_json::Value) -> Volume {
    serde_json::from_value(j).expect("volume")
}

fn inputs() -> Inputs {
    let mut i = Inputs::default();
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "cfg"}, "data": {"a.conf": "A", "b.conf": "B"}, "binaryData": {"bin": "AAE="}
    }))
    .expect("cm");
    i.config_maps.insert("cfg".into(), Some(cm));
    i.config_maps.insert("gone".into(), None);
    let s: Secret = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "db"}, "data": {"password": "aHVudGVyMg=="}}),
    )
    .expect("secret");
    i.secrets.insert("db".into(), Some(s));
    i.secrets.insert("nope".into(), None);
    i.tokens.insert("|3607".into(), "tok-123".into());
    i
}

fn files(p: &Payload) -> Vec<(String, String, u32)> {
    p.iter()
        .map(|(k, f)| (k.clone(), String::from_utf8_lossy(&f.data).into_owned(), f.mode))
        .collect()
}

#[test]
fn config_map_all_keys_items_and_modes() {
    let all = payload(
        &pod(),
        &vol(serde_json::json!({"name": "v", "configMap": {"name": "cfg"}})),
        &inputs(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        files(&all),
        vec![
            ("a.conf".into(), "A".into(), 0o644),
            ("b.conf".into(), "B".into(), 0o644),
            ("bin".into(), "\u{0}\u{1}".into(), 0o644)
        ]
    );
    let items = vol(
        serde_json::json!({"name": "v", "configMap": {"name": "cfg", "defaultMode": 0o600,
        "items": [{"key": "a.conf", "path": "conf/app.conf", "mode": 0o444}, {"key": "b.conf", "path": "b"}]}}),
    );
    assert_eq!(
        files(&payload(&pod(), &items, &inputs()).unwrap().unwrap()),
        vec![
            ("b".into(), "B".into(), 0o600),
            ("conf/app.conf".into(), "A".into(), 0o444)
        ]
    );
}

#[test]
fn missing_objects_and_keys() {
    let cases = [
        (
            serde_json::json!({"configMap": {"name": "gone"}}),
            Err("configmap \"gone\" not found".to_string()),
        ),
        (
            serde_json::json!({"configMap": {"name": "gone", "optional": true}}),
            Ok(0),
        ),
        (
            serde_json::json!({"secret": {"secretName": "nope"}}),
            Err("secret \"nope\" not found".to_string()),
        ),
        (
            serde_json::json!({"configMap": {"name": "cfg", "items": [{"key": "x", "path": "x"}]}}),
            Err("configmap references non-existent config key: x".to_string()),
        ),
        (
            serde_json::json!({"secret": {"secretName": "db", "items": [{"key": "x", "path": "x"}]}}),
            Err("references non-existent secret key: x".to_string()),
        ),
        (
            serde_json::json!({"secret": {"secretName": "db", "optional": true, "items": [{"key": "x", "path": "x"}]}}),
            Ok(0),
        ),
    ];
    for (mut v, want) in cases {
        v["name"] = "v".into();
        let got = payload(&pod(), &vol(v.clone()), &inputs()).map(|p| p.unwrap().len());
        assert_eq!(got, want, "{v}");
    }
}

#[test]
fn the_kube_api_access_volume() {
    // What the 1.21+ ServiceAccount admission adds to every pod.
    let v = vol(
        serde_json::json!({"name": "kube-api-access-x1", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "cfg", "items": [{"key": "a.conf", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
        ]}}),
    );
    let p = payload(&pod(), &v, &inputs()).unwrap().unwrap();
    assert_eq!(
        files(&p),
        vec![
            ("ca.crt".into(), "A".into(), 0o644),
            ("namespace".into(), "shop".into(), 0o644),
            ("token".into(), "tok-123".into(), 0o644)
        ]
    );
    assert_eq!(tokens(&v).len(), 1);
    let mut no_token = inputs();
    no_token.tokens.clear();
    assert!(payload(&pod(), &v, &no_token).is_err());
}

#[test]
fn downward_api_items() {
    let v = vol(serde_json::json!({"name": "d", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "mem", "resourceFieldRef": {"containerName": "app", "resource": "limits.memory", "divisor": "1Mi"}, "mode": 0o400}
    ]}}));
    assert_eq!(
        files(&payload(&pod(), &v, &inputs()).unwrap().unwrap()),
        vec![
            ("labels".into(), "app=\"web\"".into(), 0o644),
            ("mem".into(), "64".into(), 0o400)
        ]
    );
    let bad = vol(
        serde_json::json!({"name": "d", "downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "spec.nodeName"}}]}}),
    );
    assert!(payload(&pod(), &bad, &inputs()).is_err());
    assert!(
        payload(
            &pod(),
            &vol(serde_json::json!({"name": "e", "emptyDir": {}})),
            &inputs()
        )
        .unwrap()
        .is_none()
    );
}
