//! Whether the token service (`realm`) a registry's Bearer challenge names may be asked for a token, and
//! whether it may get the tag's pull secret.
//!
//! The realm is written by the registry, so a hostile or compromised registry can name any URL. Container
//! runtimes trust it: containerd (`core/remotes/docker/authorizer.go`) looks the credentials up by the
//! registry's host and sends them to whatever realm the challenge names, on any host and over any scheme,
//! and Docker does the same. Berth's controller imports for every tenant with the tenants' pull secrets, so
//! it is stricter:
//!
//! - A realm on the registry's own host and port (the host requests went to) gets the credentials. Docker
//!   Hub's token service, `auth.docker.io`, counts as Docker Hub's own: every Docker Hub challenge names it.
//! - A realm on another host is treated as if it were a registry: it is contacted, and gets the
//!   credentials, only if the registry policy allows importing from it (`allowedRegistriesForImport`, and
//!   not `registrySources.blockedRegistries`). A same-host rule alone would break registries whose token
//!   service lives elsewhere (OpenShift allows them: `registry.redhat.io` names `sso.redhat.com`), so the
//!   policy decides; without a policy every host is allowed, as for registries.
//! - A realm that the policy does not allow is not contacted at all, not even for an anonymous token: the
//!   policy exists so that tenants cannot make the controller send requests to hosts of their choosing.
//! - A realm over plain `http://` is contacted only when the tag allows plain HTTP
//!   (`importPolicy.insecure`), and gets the credentials only on the registry's own host; on another host
//!   (allowed by an `insecure: true` policy entry) it is asked for an anonymous token.
//! - A realm that is not an absolute `http`/`https` URL with a host, or that carries a user name or
//!   password, is refused.

use reqwest::Url;

use super::policy::{RegistryPolicy, Verdict};
use super::reference::DOCKER_HUB;
use super::transport::Scheme;

/// Docker Hub's token service.
pub const DOCKER_HUB_TOKEN_SERVICE: &str = "auth.docker.io";

/// The registry's side of a token negotiation.
#[derive(Debug, Clone, Copy)]
pub struct RegistryEnd<'a> {
    /// The registry as the tag names it (`docker.io`, `r.example:5000`), for messages.
    pub registry: &'a str,
    /// The `host[:port]` the registry's requests went to (`index.docker.io` for Docker Hub).
    pub api_host: &'a str,
    /// The scheme the registry answered the challenge on.
    pub scheme: Scheme,
    /// Whether the tag allows plain HTTP and unverified TLS (`importPolicy.insecure`).
    pub insecure: bool,
    /// Whether there is a pull secret to send, for messages.
    pub with_credentials: bool,
}

/// What to do with a realm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RealmDecision {
    /// Ask it for a token with the credentials (HTTP Basic), if there are any.
    SendCredentials,
    /// Ask it for a token without credentials.
    Anonymous {
        /// Why the credentials are withheld.
        why: String,
    },
    /// Do not contact it.
    Refuse {
        /// Why, naming the realm's host and what to change.
        why: String,
        /// Whether the registry policy refused it (else the realm itself is unusable).
        by_policy: bool,
    },
}

/// The realm as a URL: absolute, `http` or `https`, with a host and without user name or password.
pub fn realm_url(realm: &str) -> Result<Url, String> {
    let url = Url::parse(realm.trim()).map_err(|e| format!("it is not an absolute URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("its scheme is {:?}, not https or http", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("it names no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("it carries a user name or password".into());
    }
    Ok(url)
}

/// `host[:port]` of a URL, the port only when it is not the scheme's default: what a policy `domainName`
/// names.
pub fn authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// Whether `realm` is on the registry's own host and port (ports compared after defaults: a registry named
/// without a port answers on 443, or 80 over plain HTTP), or is Docker Hub's token service for Docker Hub.
pub fn is_registry_host(end: &RegistryEnd<'_>, realm: &Url) -> bool {
    let (Some(host), Some(port)) = (realm.host_str(), realm.port_or_known_default()) else {
        return false;
    };
    if end.registry == DOCKER_HUB
        && realm.scheme() == "https"
        && host == DOCKER_HUB_TOKEN_SERVICE
        && port == 443
    {
        return true;
    }
    let Ok(registry) = Url::parse(&format!("{}://{}/", end.scheme.as_str(), end.api_host)) else {
        return false;
    };
    registry.host_str() == Some(host) && registry.port_or_known_default() == Some(port)
}

/// Decides about `realm` (the challenge's `realm` parameter); see the module's documentation.
pub fn decide(end: &RegistryEnd<'_>, realm: &str, policy: &RegistryPolicy) -> RealmDecision {
    let registry = end.registry;
    let url = match realm_url(realm) {
        Ok(url) => url,
        Err(problem) => {
            return RealmDecision::Refuse {
                why: format!(
                    "the token service {:?} named by registry {registry} is not usable: {problem}",
                    shortened(realm)
                ),
                by_policy: false,
            };
        }
    };
    let host = authority(&url);
    let plain = url.scheme() == "http";
    if plain && !end.insecure {
        return RealmDecision::Refuse {
            why: format!(
                "registry {registry} names a token service on plain HTTP (http://{host}), and the tag does not \
                 allow plain HTTP (importPolicy.insecure)"
            ),
            by_policy: false,
        };
    }
    if is_registry_host(end, &url) {
        return RealmDecision::SendCredentials;
    }
    let service = format!("the token service {host} named by registry {registry}");
    match policy.verdict(&host, plain) {
        Verdict::Allowed if plain => RealmDecision::Anonymous {
            why: format!("{service} is on another host over plain HTTP, where the pull secret is never sent"),
        },
        Verdict::Allowed => RealmDecision::SendCredentials,
        Verdict::Blocked(entry) => RealmDecision::Refuse {
            why: format!(
                "{service} is blocked by the registry policy (registrySources.blockedRegistries: {entry}), so \
                 Berth does not contact it"
            ),
            by_policy: true,
        },
        Verdict::NotListed => RealmDecision::Refuse {
            why: format!(
                "{service} is not allowed by the registry policy; allow it in allowedRegistriesForImport to {}",
                if end.with_credentials {
                    "send the pull secret there"
                } else {
                    "let Berth ask it for a token"
                }
            ),
            by_policy: true,
        },
        Verdict::InsecureNotAllowed(entry) => RealmDecision::Refuse {
            why: format!(
                "{service} is on plain HTTP, and the registry policy's allowedRegistriesForImport entry {entry} \
                 does not allow plain HTTP (insecure: true)"
            ),
            by_policy: true,
        },
    }
}

/// At most 100 characters of text written by the registry, for a message.
fn shortened(text: &str) -> String {
    match text.char_indices().nth(100) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(registry: &'static str, scheme: Scheme, insecure: bool) -> RegistryEnd<'static> {
        RegistryEnd {
            registry,
            api_host: if registry == DOCKER_HUB {
                "index.docker.io"
            } else {
                registry
            },
            scheme,
            insecure,
            with_credentials: true,
        }
    }

    fn policy(text: &str) -> RegistryPolicy {
        RegistryPolicy::parse(text).expect("policy")
    }

    fn refusal(decision: RealmDecision) -> (String, bool) {
        match decision {
            RealmDecision::Refuse { why, by_policy } => (why, by_policy),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    const SECURE: Scheme = Scheme::Https;

    #[test]
    fn the_registry_s_own_host_gets_the_credentials() {
        let strict = policy("allowedRegistriesForImport: [{domainName: r.example}]");
        let r = end("r.example", SECURE, false);
        for realm in [
            "https://r.example/token",
            "https://R.EXAMPLE:443/v2/token?x=1",
            " https://r.example/token ",
        ] {
            assert_eq!(
                decide(&r, realm, &strict),
                RealmDecision::SendCredentials,
                "{realm}"
            );
        }
        let ported = end("r.example:5000", SECURE, false);
        assert_eq!(
            decide(
                &ported,
                "https://r.example:5000/token",
                &RegistryPolicy::default()
            ),
            RealmDecision::SendCredentials
        );
        // Another port is another host: the policy (which names only r.example:5000) decides.
        let other_port = policy("allowedRegistriesForImport: [{domainName: \"r.example:5000\"}]");
        for realm in ["https://r.example/token", "https://r.example:5001/token"] {
            let (why, by_policy) = refusal(decide(&ported, realm, &other_port));
            assert!(by_policy && why.contains("allowedRegistriesForImport"), "{why}");
        }
    }

    #[test]
    fn docker_hub_s_token_service_is_docker_hub_s_own() {
        let only_hub = policy("allowedRegistriesForImport: [{domainName: docker.io}]");
        let hub = end(DOCKER_HUB, SECURE, false);
        assert_eq!(
            decide(&hub, "https://auth.docker.io/token", &only_hub),
            RealmDecision::SendCredentials
        );
        // Only for Docker Hub, and only over HTTPS on 443.
        assert!(matches!(
            decide(
                &end("r.example", SECURE, false),
                "https://auth.docker.io/token",
                &only_hub
            ),
            RealmDecision::Refuse { by_policy: true, .. }
        ));
        assert!(matches!(
            decide(&hub, "https://auth.docker.io:8443/token", &only_hub),
            RealmDecision::Refuse { by_policy: true, .. }
        ));
    }

    #[test]
    fn another_host_gets_them_only_when_the_policy_allows_it() {
        let r = end("r.example", SECURE, false);
        let sso = "https://sso.example.com/auth/realms/rhcc/protocol/docker-v2/auth";
        let allowed =
            policy("allowedRegistriesForImport: [{domainName: r.example}, {domainName: sso.example.com}]");
        assert_eq!(decide(&r, sso, &allowed), RealmDecision::SendCredentials);
        let wildcard =
            policy("allowedRegistriesForImport: [{domainName: r.example}, {domainName: \"*.example.com\"}]");
        assert_eq!(decide(&r, sso, &wildcard), RealmDecision::SendCredentials);
        // Without a policy every host is allowed, as for registries.
        assert_eq!(
            decide(&r, sso, &RegistryPolicy::default()),
            RealmDecision::SendCredentials
        );

        let only_registry = policy("allowedRegistriesForImport: [{domainName: r.example}]");
        let (why, by_policy) = refusal(decide(&r, sso, &only_registry));
        assert!(by_policy);
        assert_eq!(
            why,
            "the token service sso.example.com named by registry r.example is not allowed by the registry \
             policy; allow it in allowedRegistriesForImport to send the pull secret there"
        );
        let anonymous = RegistryEnd {
            with_credentials: false,
            ..r
        };
        let (why, _) = refusal(decide(&anonymous, sso, &only_registry));
        assert!(why.ends_with("to let Berth ask it for a token"), "{why}");

        let blocked = policy("registrySources: {blockedRegistries: [sso.example.com]}");
        let (why, by_policy) = refusal(decide(&r, sso, &blocked));
        assert!(
            by_policy && why.contains("blockedRegistries: sso.example.com"),
            "{why}"
        );
        let metadata = "https://169.254.169.254/latest/meta-data/";
        assert!(matches!(
            decide(&r, metadata, &only_registry),
            RealmDecision::Refuse { by_policy: true, .. }
        ));
    }

    #[test]
    fn plain_http_realms() {
        let open = RegistryPolicy::default();
        // A tag that does not allow plain HTTP never makes a plain HTTP request, on any host.
        for realm in ["http://r.example/token", "http://sso.example.com/token"] {
            let (why, by_policy) = refusal(decide(&end("r.example", SECURE, false), realm, &open));
            assert!(!by_policy && why.contains("importPolicy.insecure"), "{why}");
        }
        // An insecure registry's own host gets them over plain HTTP.
        let local = end("r.local:5000", Scheme::Http, true);
        assert_eq!(
            decide(&local, "http://r.local:5000/token", &open),
            RealmDecision::SendCredentials
        );
        // Another host over plain HTTP: an anonymous token at most, when the policy allows plain HTTP there.
        match decide(&local, "http://127.0.0.1:9999/token", &open) {
            RealmDecision::Anonymous { why } => {
                assert!(
                    why.contains("127.0.0.1:9999") && why.contains("plain HTTP"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
        let listed = policy(
            "allowedRegistriesForImport: [{domainName: \"r.local:5000\", insecure: true}, {domainName: sso.local}]",
        );
        let (why, by_policy) = refusal(decide(&local, "http://sso.local/token", &listed));
        assert!(by_policy && why.contains("insecure: true"), "{why}");
        assert_eq!(
            decide(&local, "https://sso.local/token", &listed),
            RealmDecision::SendCredentials
        );
    }

    #[test]
    fn realms_that_are_not_http_urls_are_refused() {
        let r = end("r.example", SECURE, true);
        for (realm, says) in [
            ("/token", "not an absolute URL"),
            ("", "not an absolute URL"),
            ("r.example/token", "not an absolute URL"),
            ("ftp://r.example/token", "scheme"),
            ("file:///etc/passwd", "scheme"),
            ("https://user:pw@r.example/token", "user name or password"),
        ] {
            let (why, by_policy) = refusal(decide(&r, realm, &RegistryPolicy::default()));
            assert!(!by_policy && why.contains(says), "{realm}: {why}");
        }
        let long = format!("https://{}", "a".repeat(300));
        let (why, _) = refusal(decide(&r, &format!("{long} x"), &RegistryPolicy::default()));
        assert!(why.len() < 250, "{why}");
    }
}
