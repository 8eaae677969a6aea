//! Checks shared by the schema (as patterns) and the controller (as code), so both say the same thing.

/// An OCI tag, as the distribution spec defines it.
pub const OCI_TAG: &str = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$";

/// A Kubernetes object name (DNS subdomain, RFC 1123).
pub const DNS_SUBDOMAIN: &str = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$";

/// A reference as the schema checks it: one word, no white space. The controller parses it further.
pub const REFERENCE: &str = r"^\S+$";

/// Whether `tag` is a valid OCI tag.
pub fn is_oci_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    let Some(first) = chars.next() else { return false };
    tag.len() <= 128
        && (first.is_ascii_alphanumeric() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Whether `name` is a valid Kubernetes object name (DNS subdomain).
pub fn is_dns_subdomain(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= 253
        && bytes.first().is_some_and(edge)
        && bytes.last().is_some_and(edge)
        && bytes.iter().all(|b| edge(b) || matches!(b, b'-' | b'.'))
}

/// Whether the first path component of an image reference names a registry host, as the Docker reference
/// grammar decides: it holds a `.` or a `:` (a port), or is `localhost`. Otherwise the reference is a path
/// on Docker Hub (`library/ruby`), or in `oc`'s reading a stream of another namespace (`openshift/ruby`).
pub fn is_registry_host(component: &str) -> bool {
    component.contains(['.', ':']) || component == "localhost"
}

/// Whether `digest` is `sha256:` followed by 64 lowercase hex digits, the only digest Berth accepts.
pub fn is_sha256_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_tags() {
        for ok in ["latest", "v1.2.3", "_x", "A-b_c.d", &"a".repeat(128)] {
            assert!(is_oci_tag(ok), "{ok}");
        }
        for bad in ["", "-x", ".x", "a b", "a:b", "a/b", &"a".repeat(129)] {
            assert!(!is_oci_tag(bad), "{bad}");
        }
    }

    #[test]
    fn object_names() {
        for ok in ["a", "web", "web.v1", "a-b", &"a".repeat(253)] {
            assert!(is_dns_subdomain(ok), "{ok}");
        }
        for bad in ["", "Web", "-a", "a-", "a_b", "a:b", &"a".repeat(254)] {
            assert!(!is_dns_subdomain(bad), "{bad}");
        }
    }

    #[test]
    fn digests() {
        assert!(is_sha256_digest(&format!("sha256:{}", "a".repeat(64))));
        assert!(!is_sha256_digest(&format!("sha256:{}", "A".repeat(64))));
        assert!(!is_sha256_digest(&format!("sha512:{}", "a".repeat(128))));
        assert!(!is_sha256_digest("sha256:abc"));
    }
}
