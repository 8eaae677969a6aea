use super::*;

fn pod(container: serde_json::Value, links: Option<bool>) -> Pod {
    let mut spec = serde_json::json!({"containers": [container]});
    if let Some(l) = links {
        spec["enableServiceLinks"] = l.into();
    }
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "shop", "uid": "u1"},
        "spec": spec
    }))
    .expect("pod")
}

fn cm(name: &str, data: serde_json::Value) -> ConfigMap {
    serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "data": data})).expect("cm")
}

fn secret(name: &str, data: serde_json::Value) -> Secret {
    serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "data": data})).expect("secret")
}

fn svc(ns: &str, name: &str, ip: &str, ports: serde_json::Value) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"clusterIP": ip, "ports": ports}
    }))
    .expect("service")
}

fn vars(b: &Built) -> HashMap<&str, &str> {
    b.vars
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_str()))
        .collect()
}

fn sources() -> Sources {
    let mut s = Sources {
        node_name: "n1".into(),
        host_ip: "10.0.0.1".into(),
        pod_ip: "10.1.0.5".into(),
        ..Default::default()
    };
    s.config_maps.insert(
        "app".into(),
        Some(cm(
            "app",
            serde_json::json!({"mode": "fast", "1bad": "x", "LEVEL": "3"}),
        )),
    );
    s.config_maps.insert("gone".into(), None);
    // "hunter2" base64
    s.secrets.insert(
        "db".into(),
        Some(secret("db", serde_json::json!({"password": "aHVudGVyMg=="}))),
    );
    s.secrets.insert("nope".into(), None);
    s
}

#[test]
fn env_from_key_refs_and_expansion() {
    let c = serde_json::json!({"name": "app",
    "envFrom": [{"configMapRef": {"name": "app"}, "prefix": "CFG_"}, {"secretRef": {"name": "db"}},
                {"configMapRef": {"name": "gone", "optional": true}}],
    "env": [
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "mode"}}},
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
        {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "x", "optional": true}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "MSG", "value": "$(MODE)-$(CFG_LEVEL)-$(UNKNOWN)-$$(MODE)"},
        {"name": "CFG_LEVEL", "value": "override"}
    ]});
    let p = pod(c, None);
    let b = build(&p, &p.spec.as_ref().unwrap().containers[0], &sources()).expect("built");
    let v = vars(&b);
    assert_eq!(v["CFG_mode"], "fast");
    assert_eq!(v["CFG_LEVEL"], "override");
    assert_eq!(v["password"], "hunter2");
    assert_eq!(v["MODE"], "fast");
    assert_eq!(v["PW"], "hunter2");
    assert_eq!(v["NODE"], "n1");
    assert_eq!(v["MSG"], "fast-3-$(UNKNOWN)-$(MODE)");
    assert!(!v.contains_key("OPT"));
    // "CFG_1bad" is a valid name with the prefix; without a prefix "1bad" would not be.
    assert!(v.contains_key("CFG_1bad"));
    assert!(b.invalid.is_empty());
}

#[test]
fn invalid_keys_are_skipped_and_reported_without_values() {
    let c = serde_json::json!({"name": "app", "envFrom": [{"configMapRef": {"name": "app"}}, {"secretRef": {"name": "db"}}]});
    let p = pod(c, None);
    let b = build(&p, &p.spec.as_ref().unwrap().containers[0], &sources()).expect("built");
    assert!(!vars(&b).contains_key("1bad"));
    assert_eq!(
        b.invalid,
        vec![
            "Keys [1bad] from the EnvFrom configMap shop/app were skipped since they are considered invalid environment variable names."
        ]
    );
}

#[test]
fn missing_objects_and_keys_are_the_kubelets_errors() {
    let cases = [
        (
            serde_json::json!({"configMapKeyRef": {"name": "gone", "key": "k"}}),
            "configmap \"gone\" not found",
        ),
        (
            serde_json::json!({"secretKeyRef": {"name": "nope", "key": "k"}}),
            "secret \"nope\" not found",
        ),
        (
            serde_json::json!({"configMapKeyRef": {"name": "app", "key": "k"}}),
            "couldn't find key k in ConfigMap shop/app",
        ),
        (
            serde_json::json!({"secretKeyRef": {"name": "db", "key": "k"}}),
            "couldn't find key k in Secret shop/db",
        ),
        (
            serde_json::json!({"fieldRef": {"fieldPath": "spec.hostname"}}),
            "unsupported fieldPath: spec.hostname",
        ),
    ];
    for (from, want) in cases {
        let p = pod(
            serde_json::json!({"name": "app", "env": [{"name": "X", "valueFrom": from}]}),
            None,
        );
        let err = build(&p, &p.spec.as_ref().unwrap().containers[0], &sources())
            .err()
            .expect("an error");
        assert_eq!(err.to_string(), want);
    }
    let p = pod(
        serde_json::json!({"name": "app", "envFrom": [{"secretRef": {"name": "nope"}}]}),
        None,
    );
    let err = build(&p, &p.spec.as_ref().unwrap().containers[0], &sources())
        .err()
        .expect("an error");
    assert_eq!(err.to_string(), "secret \"nope\" not found");
}

#[test]
fn resource_field_ref_of_the_container_itself() {
    let c = serde_json::json!({"name": "app", "resources": {"limits": {"memory": "128Mi"}},
        "env": [{"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]});
    let p = pod(c, None);
    let mut src = sources();
    src.allocatable.cpu_millis = 2000;
    let b = build(&p, &p.spec.as_ref().unwrap().containers[0], &src).expect("built");
    assert_eq!(vars(&b)["MEM"], "128");
    assert_eq!(vars(&b)["CPU"], "2");
}

#[test]
fn service_variables_as_the_kubelet_injects_them() {
    let services = vec![
        svc(
            "default",
            "kubernetes",
            "10.215.0.1",
            serde_json::json!([{"name": "https", "port": 443}]),
        ),
        svc(
            "shop",
            "redis-master",
            "10.215.0.9",
            serde_json::json!([{"port": 6379}, {"name": "metrics", "port": 9121, "protocol": "TCP"}]),
        ),
        svc("shop", "headless", "None", serde_json::json!([{"port": 80}])),
        svc("other", "db", "10.215.0.7", serde_json::json!([{"port": 5432}])),
    ];
    let m = service_vars("shop", true, &services);
    assert_eq!(m["KUBERNETES_SERVICE_HOST"], "10.215.0.1");
    assert_eq!(m["KUBERNETES_SERVICE_PORT"], "443");
    assert_eq!(m["KUBERNETES_SERVICE_PORT_HTTPS"], "443");
    assert_eq!(m["KUBERNETES_PORT"], "tcp://10.215.0.1:443");
    assert_eq!(m["KUBERNETES_PORT_443_TCP"], "tcp://10.215.0.1:443");
    assert_eq!(m["KUBERNETES_PORT_443_TCP_PROTO"], "tcp");
    assert_eq!(m["KUBERNETES_PORT_443_TCP_PORT"], "443");
    assert_eq!(m["KUBERNETES_PORT_443_TCP_ADDR"], "10.215.0.1");
    assert_eq!(m["REDIS_MASTER_SERVICE_HOST"], "10.215.0.9");
    assert_eq!(m["REDIS_MASTER_SERVICE_PORT"], "6379");
    assert_eq!(m["REDIS_MASTER_SERVICE_PORT_METRICS"], "9121");
    assert_eq!(m["REDIS_MASTER_PORT_9121_TCP_ADDR"], "10.215.0.9");
    assert!(!m.contains_key("HEADLESS_SERVICE_HOST"));
    assert!(!m.contains_key("DB_SERVICE_HOST"));
    let off = service_vars("shop", false, &services);
    assert!(off.contains_key("KUBERNETES_SERVICE_HOST"));
    assert!(!off.contains_key("REDIS_MASTER_SERVICE_HOST"));

    // In the environment: usable in $(...) and never overriding the container's own.
    let c = serde_json::json!({"name": "app", "env": [
        {"name": "URL", "value": "https://$(KUBERNETES_SERVICE_HOST)"},
        {"name": "REDIS_MASTER_SERVICE_PORT", "value": "1"}]});
    let p = pod(c, Some(true));
    let mut src = sources();
    src.services = services;
    let b = build(&p, &p.spec.as_ref().unwrap().containers[0], &src).expect("built");
    let v = vars(&b);
    assert_eq!(v["URL"], "https://10.215.0.1");
    assert_eq!(v["REDIS_MASTER_SERVICE_PORT"], "1");
    assert_eq!(
        b.vars
            .iter()
            .filter(|kv| kv.key == "REDIS_MASTER_SERVICE_PORT")
            .count(),
        1
    );
}

#[test]
fn variable_names() {
    assert!(is_env_var_name("A_b.c-1"));
    assert!(is_env_var_name("_x"));
    assert!(!is_env_var_name("1a"));
    assert!(!is_env_var_name(""));
    assert!(!is_env_var_name("a b"));
}
