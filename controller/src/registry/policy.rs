//! Which registries tenants may make the controller import from, in the shape of OpenShift's
//! `image.config.openshift.io/cluster` spec: `allowedRegistriesForImport` (`domainName`, `insecure`) and
//! `registrySources.blockedRegistries`.
//!
//! Without a policy every registry is allowed, as in OpenShift without `allowedRegistriesForImport`. With one,
//! a reference to a registry outside the list, or on the blocked list, fails `RegistryNotAllowed` before any
//! connection is made, so a namespace user cannot make the controller probe arbitrary hosts and read the
//! error back; a tag asking `importPolicy.insecure` needs an entry with `insecure: true`. A domain is a host,
//! with its port when it has one (`registry.local:5000`), or `*.example.com` for every host under it;
//! matching ignores case.
//!
//! Berth adds a section OpenShift does not have, `berth.registries`: what each registry gets from this
//! controller (requests per second, burst, requests at once), so a private registry can be given more than
//! Docker Hub. A registry it does not name gets the controller's flags (`--registry-qps`,
//! `--registry-burst`, `--registry-max-concurrency`); an exact `domainName` wins over a `*.domain`, and the
//! longest `*.domain` over a shorter one.

use serde::Deserialize;

use super::admission::WindowConfig;
use super::error::ResolveError;
use super::gate::RegistryLimits;
use super::ratelimit::RateLimit;

/// One allowed registry, as OpenShift's `RegistryLocation`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistryLocation {
    /// `host[:port]` or `*.domain`.
    pub domain_name: String,
    /// Whether tags may import from it over plain HTTP or unverified TLS (`importPolicy.insecure`).
    #[serde(default)]
    pub insecure: bool,
}

/// `registrySources`, of which imports read the blocked list. Its other fields (`allowedRegistries`,
/// `insecureRegistries`, ...) are refused by name rather than ignored: an administrator who writes them
/// expects a restriction Berth would not make.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistrySources {
    /// Never imported from, whatever the allowed list says.
    #[serde(default)]
    pub blocked_registries: Vec<String>,
}

/// What one registry gets from this controller (`berth.registries[]`); a field left out keeps the
/// controller's default.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistryTuning {
    /// `host[:port]` or `*.domain`, as in `allowedRegistriesForImport`.
    pub domain_name: String,
    /// Sustained requests per second.
    #[serde(default)]
    pub qps: Option<f64>,
    /// Requests that may go at once after a quiet period (the token bucket's size).
    #[serde(default)]
    pub burst: Option<u32>,
    /// The most requests in flight at once; the adaptive window stays between 1 and this.
    #[serde(default)]
    pub max_concurrency: Option<u32>,
}

/// Berth's own section of the policy file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BerthSettings {
    /// Per-registry limits.
    #[serde(default)]
    pub registries: Vec<RegistryTuning>,
}

/// The policy: the `spec` of an `image.config.openshift.io` `Image`, and Berth's section. Fields of that spec
/// Berth does not honour (`additionalTrustedCA`, `externalRegistryHostnames`, ...) are refused by name.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistryPolicy {
    /// When set, the only registries imported from.
    #[serde(default)]
    pub allowed_registries_for_import: Option<Vec<RegistryLocation>>,
    /// Blocked registries.
    #[serde(default)]
    pub registry_sources: RegistrySources,
    /// What is Berth's own: per-registry limits.
    #[serde(default)]
    pub berth: BerthSettings,
}

/// A whole `Image` object (`apiVersion`, `kind`, `metadata`, `spec`), as `oc get image.config cluster -o yaml`
/// prints it.
#[derive(Deserialize)]
struct ImageConfig {
    spec: RegistryPolicy,
}

impl RegistryPolicy {
    /// Reads a policy file: an `image.config.openshift.io` `Image` object, or just its `spec`, in YAML or JSON.
    pub fn parse(text: &str) -> Result<Self, String> {
        let value: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        let policy = if value.get("spec").is_some() {
            serde_json::from_value::<ImageConfig>(value).map(|c| c.spec)
        } else {
            serde_json::from_value(value)
        }
        .map_err(|e| e.to_string())?;
        for domain in policy.domains() {
            check_domain(domain)?;
        }
        for (i, tuning) in policy.berth.registries.iter().enumerate() {
            check_tuning(tuning)?;
            let same = |t: &&RegistryTuning| t.domain_name.eq_ignore_ascii_case(&tuning.domain_name);
            if policy.berth.registries[..i].iter().any(|t| same(&t)) {
                return Err(format!(
                    "berth.registries: domainName {:?} is listed twice",
                    tuning.domain_name
                ));
            }
        }
        Ok(policy)
    }

    /// What `registry` gets: the `berth.registries` entry that names it best over `defaults`.
    pub fn limits_for(&self, registry: &str, defaults: RegistryLimits) -> RegistryLimits {
        // Exact names first (no `*.`), then the longest wildcard.
        let specificity = |t: &RegistryTuning| match t.domain_name.strip_prefix("*.") {
            None => usize::MAX,
            Some(domain) => domain.len(),
        };
        let Some(tuning) = self
            .berth
            .registries
            .iter()
            .filter(|t| matches(&t.domain_name, registry))
            .max_by_key(|t| specificity(t))
        else {
            return defaults;
        };
        RegistryLimits {
            rate: RateLimit {
                per_second: tuning.qps.unwrap_or(defaults.rate.per_second),
                burst: tuning.burst.unwrap_or(defaults.rate.burst),
            },
            window: WindowConfig {
                max: tuning.max_concurrency.unwrap_or(defaults.window.max),
                ..defaults.window
            },
        }
    }

    fn domains(&self) -> impl Iterator<Item = &str> {
        self.allowed_registries_for_import
            .iter()
            .flatten()
            .map(|l| l.domain_name.as_str())
            .chain(
                self.registry_sources
                    .blocked_registries
                    .iter()
                    .map(String::as_str),
            )
            .chain(self.berth.registries.iter().map(|t| t.domain_name.as_str()))
    }

    /// Whether `registry` (`host[:port]` as in the reference) may be imported from, `insecure` or not.
    pub fn check(&self, registry: &str, insecure: bool) -> Result<(), ResolveError> {
        let not_allowed = |detail: String| ResolveError::RegistryNotAllowed {
            registry: registry.to_owned(),
            detail,
        };
        match self.verdict(registry, insecure) {
            Verdict::Allowed => Ok(()),
            Verdict::Blocked(blocked) => Err(not_allowed(format!(
                "it is blocked by the registry policy (registrySources.blockedRegistries: {blocked})"
            ))),
            Verdict::NotListed => Err(not_allowed(
                "it is not in the registry policy's allowedRegistriesForImport: ask a cluster administrator to add it"
                    .to_owned(),
            )),
            Verdict::InsecureNotAllowed(entry) => Err(not_allowed(format!(
                "importPolicy.insecure asks for plain HTTP or unverified TLS, and the registry policy's \
                 allowedRegistriesForImport entry {entry} does not allow it (insecure: true)"
            ))),
        }
    }

    /// Which rule decides about contacting `host` (`host[:port]`), over plain HTTP or unverified TLS when
    /// `insecure`: the blocked list first, then the allowed list when there is one.
    pub fn verdict(&self, host: &str, insecure: bool) -> Verdict {
        if let Some(blocked) = self
            .registry_sources
            .blocked_registries
            .iter()
            .find(|d| matches(d, host))
        {
            return Verdict::Blocked(blocked.clone());
        }
        let Some(allowed) = &self.allowed_registries_for_import else {
            return Verdict::Allowed;
        };
        match allowed.iter().find(|l| matches(&l.domain_name, host)) {
            None => Verdict::NotListed,
            Some(l) if insecure && !l.insecure => Verdict::InsecureNotAllowed(l.domain_name.clone()),
            Some(_) => Verdict::Allowed,
        }
    }
}

/// What the policy says about contacting a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It may be contacted.
    Allowed,
    /// It is on `registrySources.blockedRegistries` (the matching entry).
    Blocked(String),
    /// There is an `allowedRegistriesForImport` and it does not name the host.
    NotListed,
    /// Plain HTTP or unverified TLS was asked for, and the matching entry does not say `insecure: true`.
    InsecureNotAllowed(String),
}

/// A domain is `host[:port]` or `*.domain`, without scheme or path.
fn check_domain(domain: &str) -> Result<(), String> {
    let bare = domain.strip_prefix("*.").unwrap_or(domain);
    if bare.is_empty() || bare.contains(['/', '*', ' ']) || bare.contains("://") {
        return Err(format!(
            "domainName {domain:?}: write host, host:port or *.domain (no scheme, path or other wildcard)"
        ));
    }
    Ok(())
}

/// The most requests at once a registry may be given.
pub const MAX_CONCURRENCY: u32 = 1024;

/// Limits that mean something: a positive rate, a burst and a concurrency of at least one.
fn check_tuning(t: &RegistryTuning) -> Result<(), String> {
    let name = &t.domain_name;
    if t.qps.is_some_and(|q| !q.is_finite() || q <= 0.0) {
        return Err(format!(
            "berth.registries {name}: qps must be a positive number of requests per second"
        ));
    }
    if t.burst == Some(0) {
        return Err(format!("berth.registries {name}: burst must be at least 1"));
    }
    if t.max_concurrency.is_some_and(|m| m == 0 || m > MAX_CONCURRENCY) {
        return Err(format!(
            "berth.registries {name}: maxConcurrency must be between 1 and {MAX_CONCURRENCY}"
        ));
    }
    Ok(())
}

/// Whether `registry` is `pattern`: the same `host[:port]`, or a host under `*.domain`.
fn matches(pattern: &str, registry: &str) -> bool {
    let (pattern, registry) = (pattern.to_ascii_lowercase(), registry.to_ascii_lowercase());
    match pattern.strip_prefix("*.") {
        Some(domain) => {
            let host = registry.split(':').next().unwrap_or_default();
            host.ends_with(&format!(".{domain}"))
        }
        None => pattern == registry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENSHIFT_SHAPE: &str = r#"
apiVersion: config.openshift.io/v1
kind: Image
metadata: {name: cluster}
spec:
  allowedRegistriesForImport:
  - domainName: quay.io
  - domainName: "*.corp.example"
  - domainName: 10.213.0.1:5000
    insecure: true
  registrySources:
    blockedRegistries: [bad.corp.example]
"#;

    fn refused(policy: &RegistryPolicy, registry: &str, insecure: bool) -> Option<String> {
        policy.check(registry, insecure).err().map(|e| e.to_string())
    }

    #[test]
    fn without_a_policy_every_registry_is_allowed() {
        let open = RegistryPolicy::default();
        assert_eq!(refused(&open, "anything.example:1234", true), None);
    }

    #[test]
    fn the_openshift_shape_reads_and_decides() {
        let policy = RegistryPolicy::parse(OPENSHIFT_SHAPE).expect("parses");
        assert_eq!(refused(&policy, "quay.io", false), None);
        assert_eq!(refused(&policy, "QUAY.io", false), None);
        assert_eq!(refused(&policy, "registry.corp.example:8443", false), None);
        assert_eq!(refused(&policy, "10.213.0.1:5000", true), None);
        let outside = refused(&policy, "169.254.169.254", false).expect("refused");
        assert!(
            outside.contains("169.254.169.254") && outside.contains("allowedRegistriesForImport"),
            "{outside}"
        );
        assert!(
            refused(&policy, "10.213.0.1:5001", false).is_some(),
            "another port is another registry"
        );
        assert!(
            refused(&policy, "corp.example", false).is_some(),
            "*.domain is hosts under it"
        );
        let blocked = refused(&policy, "bad.corp.example", false).expect("blocked wins");
        assert!(blocked.contains("blockedRegistries"), "{blocked}");
        let insecure = refused(&policy, "quay.io", true).expect("insecure needs insecure: true");
        assert!(insecure.contains("importPolicy.insecure"), "{insecure}");
    }

    #[test]
    fn a_bare_spec_reads_too_and_bad_domains_are_refused_by_name() {
        let policy = RegistryPolicy::parse("allowedRegistriesForImport: [{domainName: quay.io}]").unwrap();
        assert!(policy.check("docker.io", false).is_err());
        for bad in ["https://quay.io", "quay.io/org", "*quay.io", ""] {
            let text = format!("allowedRegistriesForImport: [{{domainName: {bad:?}}}]");
            let err = RegistryPolicy::parse(&text).expect_err(bad);
            assert!(err.contains("domainName"), "{bad}: {err}");
        }
        let err = RegistryPolicy::parse("allowedRegistriesForImport: [{domain: quay.io}]").unwrap_err();
        assert!(err.contains("domain"), "{err}");
        // What OpenShift's spec has and Berth does not honour is refused, naming the field.
        for unhonoured in [
            "registrySources: {allowedRegistries: [quay.io]}",
            "registrySources: {insecureRegistries: [r.local]}",
            "additionalTrustedCA: {name: ca}",
            "spec: {externalRegistryHostnames: [r.example]}",
        ] {
            let err = RegistryPolicy::parse(unhonoured).expect_err(unhonoured);
            let field = unhonoured
                .trim_start_matches("spec: {")
                .trim_start_matches("registrySources: {")
                .split(':')
                .next()
                .unwrap();
            assert!(err.contains(field), "{unhonoured}: {err}");
        }
    }

    #[test]
    fn berth_registries_give_each_registry_its_limits() {
        let policy = RegistryPolicy::parse(
            r#"
apiVersion: config.openshift.io/v1
kind: Image
metadata: {name: cluster}
spec:
  registrySources: {blockedRegistries: [bad.example]}
  berth:
    registries:
    - domainName: registry.corp.example:5000
      qps: 200
      burst: 400
      maxConcurrency: 64
    - domainName: "*.corp.example"
      maxConcurrency: 8
    - domainName: "*.example"
      qps: 1
"#,
        )
        .expect("parses");
        let defaults = RegistryLimits {
            rate: RateLimit::default(),
            window: WindowConfig::default(),
        };
        let private = policy.limits_for("registry.corp.example:5000", defaults);
        assert_eq!(
            (private.rate.per_second, private.rate.burst, private.window.max),
            (200.0, 400, 64)
        );
        assert_eq!(private.window.initial, defaults.window.initial, "the rest stays");
        // The longest wildcard wins; what it leaves out keeps the default.
        let other = policy.limits_for("mirror.corp.example", defaults);
        assert_eq!((other.rate, other.window.max), (defaults.rate, 8));
        assert_eq!(policy.limits_for("docker.io", defaults), defaults);
        assert_eq!(policy.limits_for("x.example", defaults).rate.per_second, 1.0);
        assert_eq!(
            policy.check("docker.io", false),
            Ok(()),
            "limits allow nothing by themselves"
        );
    }

    #[test]
    fn meaningless_limits_are_refused_naming_the_registry() {
        for (bad, field) in [
            ("{domainName: r.example, qps: 0}", "qps"),
            ("{domainName: r.example, qps: -1}", "qps"),
            ("{domainName: r.example, burst: 0}", "burst"),
            ("{domainName: r.example, maxConcurrency: 0}", "maxConcurrency"),
            ("{domainName: r.example, maxConcurrency: 5000}", "maxConcurrency"),
            ("{domainName: r.example, rate: 5}", "rate"),
            ("{domainName: https://r.example}", "domainName"),
        ] {
            let err = RegistryPolicy::parse(&format!("berth: {{registries: [{bad}]}}")).expect_err(bad);
            assert!(err.contains(field), "{bad}: {err}");
        }
        let twice = "berth: {registries: [{domainName: r.example}, {domainName: R.example}]}";
        assert!(RegistryPolicy::parse(twice).unwrap_err().contains("twice"));
    }

    #[tokio::test]
    async fn a_refused_registry_is_never_contacted() {
        use crate::registry::{ResolveRequest, Resolver, ResolverConfig};
        crate::registry::install_crypto_provider();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let resolver = Resolver::new(ResolverConfig {
            policy: RegistryPolicy::parse("allowedRegistriesForImport: [{domainName: quay.io}]").unwrap(),
            ..ResolverConfig::default()
        })
        .unwrap();
        let err = resolver
            .resolve(&ResolveRequest {
                reference: format!("{addr}/probe/me:v1"),
                insecure: true,
                ..Default::default()
            })
            .await
            .expect_err("refused");
        assert_eq!(err.reason(), "RegistryNotAllowed");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
        assert_eq!(
            listener.accept().map_err(|e| e.kind()).err(),
            Some(std::io::ErrorKind::WouldBlock),
            "no connection was made"
        );
    }
}
