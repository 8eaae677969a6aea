//! Image references as `oc` reads them: `[REGISTRY/][NAMESPACE/]NAME[:TAG][@DIGEST]`.
//!
//! The first path component is a registry host when it holds a `.` or a `:` or is `localhost`, as in the Docker
//! reference grammar; otherwise `NAMESPACE/NAME` names a stream of another namespace (`openshift/ruby:2.0`).

use berth_api::validation::is_registry_host;

/// A reference taken apart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageRef {
    /// The registry host (and port), when the reference names one.
    pub registry: Option<String>,
    /// The path before the last component (a namespace, for stream references).
    pub namespace: Option<String>,
    /// The last path component (a stream's name, for stream references).
    pub name: String,
    /// The tag after `:`.
    pub tag: Option<String>,
    /// The digest after `@`.
    pub id: Option<String>,
}

impl ImageRef {
    /// Takes `input` apart; only empty parts are errors here (the API server and the controller check the rest).
    pub fn parse(input: &str) -> Result<ImageRef, String> {
        let input = input.trim();
        if input.is_empty() {
            return Err("an empty image reference".to_owned());
        }
        let (rest, id) = match input.split_once('@') {
            Some((rest, id)) if !id.is_empty() => (rest, Some(id.to_owned())),
            Some(_) => return Err(format!("{input:?} has nothing after '@'")),
            None => (input, None),
        };
        let (path, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(rest[i + 1..].to_owned())),
            _ => (rest, None),
        };
        if tag.as_deref() == Some("") {
            return Err(format!("{input:?} has nothing after ':'"));
        }
        let mut parts: Vec<&str> = path.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(format!("{input:?} has an empty path component"));
        }
        let registry = (parts.len() > 1 && is_registry_host(parts[0])).then(|| parts.remove(0).to_owned());
        let name = parts.pop().unwrap_or_default().to_owned();
        let namespace = (!parts.is_empty()).then(|| parts.join("/"));
        Ok(ImageRef {
            registry,
            namespace,
            name,
            tag,
            id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(
        registry: Option<&str>,
        namespace: Option<&str>,
        name: &str,
        tag: Option<&str>,
        id: Option<&str>,
    ) -> ImageRef {
        ImageRef {
            registry: registry.map(Into::into),
            namespace: namespace.map(Into::into),
            name: name.into(),
            tag: tag.map(Into::into),
            id: id.map(Into::into),
        }
    }

    #[test]
    fn references_as_oc_reads_them() {
        let d = "sha256:0123";
        assert_eq!(
            ImageRef::parse("app:live").unwrap(),
            r(None, None, "app", Some("live"), None)
        );
        assert_eq!(
            ImageRef::parse("openshift/ruby:2.0").unwrap(),
            r(None, Some("openshift"), "ruby", Some("2.0"), None)
        );
        assert_eq!(
            ImageRef::parse(&format!("app@{d}")).unwrap(),
            r(None, None, "app", None, Some(d))
        );
        assert_eq!(
            ImageRef::parse("10.213.0.1:5000/berth/demo:v1").unwrap(),
            r(Some("10.213.0.1:5000"), Some("berth"), "demo", Some("v1"), None)
        );
        assert_eq!(
            ImageRef::parse("localhost/demo").unwrap(),
            r(Some("localhost"), None, "demo", None, None)
        );
        assert_eq!(
            ImageRef::parse("quay.io/a/b/c:1").unwrap(),
            r(Some("quay.io"), Some("a/b"), "c", Some("1"), None)
        );
        assert_eq!(
            ImageRef::parse("registry:5000/demo").unwrap(),
            r(Some("registry:5000"), None, "demo", None, None)
        );
        assert_eq!(
            ImageRef::parse("nginx").unwrap(),
            r(None, None, "nginx", None, None)
        );
    }

    #[test]
    fn empty_parts_are_errors() {
        for bad in ["", "app:", "app@", "a//b", "/a"] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }
}
