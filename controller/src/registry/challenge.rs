//! The `WWW-Authenticate` challenge of a registry's 401 (RFC 9110 §11.6.1): a scheme, then
//! comma-separated `name=value` parameters whose values are tokens or quoted strings, e.g.
//! `Bearer realm="https://auth.example/token",service="registry.example",scope="repository:app:pull"`.
//!
//! Parsed strictly: a parameter named twice, an unterminated quoted string or text that is not a
//! parameter is an error, not a guess. Ambiguity about where the token service is must not be resolved
//! in favour of whoever wrote the header.

/// One challenge: its scheme (lower case) and parameters (names lower case, values unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `bearer`, `basic`, ...
    pub scheme: String,
    params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of parameter `name` (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A `tchar` of RFC 9110: what names and unquoted values are made of.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Parses the first challenge of a `WWW-Authenticate` value. Parsing stops where a second challenge
/// begins (a scheme after a complete parameter list), so `Bearer realm="a", Basic realm="b"` gives the
/// Bearer challenge.
pub fn parse_challenge(value: &str) -> Result<Challenge, String> {
    let value = value.trim();
    let scheme_end = value.find(|c: char| !is_tchar(c)).unwrap_or(value.len());
    let scheme = &value[..scheme_end];
    if scheme.is_empty() {
        return Err("the challenge names no authentication scheme".into());
    }
    let mut params: Vec<(String, String)> = Vec::new();
    let mut rest = &value[scheme_end..];
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return Err(format!("unexpected {:?} after the scheme", first_char(rest)));
    }
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        let name_end = rest.find(|c: char| !is_tchar(c)).unwrap_or(rest.len());
        let name = &rest[..name_end];
        if name.is_empty() {
            return Err(format!(
                "unexpected {:?} where a parameter name was expected",
                first_char(rest)
            ));
        }
        let after_name = rest[name_end..].trim_start_matches([' ', '\t']);
        let Some(after_equals) = after_name.strip_prefix('=') else {
            if params.is_empty() {
                // A token68 (`Basic dXNlcg==`-like credentials in a challenge): no parameters to read.
                return Err(format!("{name:?} is not a name=value parameter"));
            }
            // The scheme of the next challenge.
            break;
        };
        let after_equals = after_equals.trim_start_matches([' ', '\t']);
        let (parsed, remainder) = match after_equals.strip_prefix('"') {
            Some(quoted) => {
                read_quoted(quoted).ok_or_else(|| format!("the value of {name} is not closed by '\"'"))?
            }
            None => {
                let end = after_equals
                    .find(|c: char| !is_tchar(c))
                    .unwrap_or(after_equals.len());
                (after_equals[..end].to_string(), &after_equals[end..])
            }
        };
        let name = name.to_ascii_lowercase();
        if params.iter().any(|(n, _)| *n == name) {
            return Err(format!("parameter {name} appears twice"));
        }
        params.push((name, parsed));
        rest = remainder.trim_start_matches([' ', '\t']);
        if !rest.is_empty() && !rest.starts_with(',') {
            return Err(format!("unexpected {:?} after a parameter", first_char(rest)));
        }
    }
    Ok(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

/// The content of a quoted string (after its opening quote) with `\` escapes undone, and what follows its
/// closing quote; `None` when it is not closed.
fn read_quoted(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[i + 1..])),
            '\\' => value.push(chars.next()?.1),
            c => value.push(c),
        }
    }
    None
}

fn first_char(text: &str) -> char {
    text.chars().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(value: &str) -> (String, Vec<(String, String)>) {
        let c = parse_challenge(value).unwrap_or_else(|e| panic!("{value}: {e}"));
        (c.scheme, c.params)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn challenges_as_registries_send_them() {
        assert_eq!(
            parsed(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#
            ),
            (
                "bearer".into(),
                pairs(&[
                    ("realm", "https://auth.docker.io/token"),
                    ("service", "registry.docker.io"),
                    ("scope", "repository:library/busybox:pull"),
                ])
            )
        );
        // Case of scheme and names, spaces around '=' and ',', unquoted tokens, empty values.
        assert_eq!(
            parsed(r#"  bEaReR  Realm = "https://r.example/t?a=1,b=2" , Service=r.example ,error="""#),
            (
                "bearer".into(),
                pairs(&[
                    ("realm", "https://r.example/t?a=1,b=2"),
                    ("service", "r.example"),
                    ("error", ""),
                ])
            )
        );
        assert_eq!(parsed(r#"Basic realm="Registry Realm""#).0, "basic");
        assert_eq!(parsed("Basic"), ("basic".into(), vec![]));
        let c = parse_challenge(r#"Bearer realm="x",service="y""#).unwrap();
        assert_eq!((c.param("REALM"), c.param("scope")), (Some("x"), None));
    }

    #[test]
    fn quoted_values_keep_commas_and_undo_escapes() {
        let c = parse_challenge(r#"Bearer realm="https://a.example/\"t\"",scope="repository:a:pull,push""#)
            .unwrap();
        assert_eq!(c.param("realm"), Some(r#"https://a.example/"t""#));
        assert_eq!(c.param("scope"), Some("repository:a:pull,push"));
    }

    #[test]
    fn a_second_challenge_ends_the_first() {
        let c = parse_challenge(r#"Bearer realm="https://a.example/t", Basic realm="b""#).unwrap();
        assert_eq!(
            (c.scheme.as_str(), c.param("realm")),
            ("bearer", Some("https://a.example/t"))
        );
    }

    #[test]
    fn ambiguous_or_broken_challenges_are_errors() {
        for (bad, says) in [
            ("", "no authentication scheme"),
            (r#"Bearer realm="https://a.example/t"#, "not closed"),
            (
                r#"Bearer realm="https://a.example/",realm="https://b.example/""#,
                "twice",
            ),
            (r#"Bearer realm="a" service="b""#, "after a parameter"),
            ("Bearer dG9rZW42OA", "not a name=value"),
            ("Bearer dG9rZW42OA==", "after a parameter"),
            (r#"Bearer ="x""#, "parameter name"),
            (r#"Bearer;realm="x""#, "after the scheme"),
        ] {
            let e = parse_challenge(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
