//! The version policy over tag lists like those the peers' issues name: semver with `v` prefixes and
//! pre-releases (Flux, Argo CD Image Updater), calendar versions (Keel, Renovate's calver users), regex
//! extraction ordered numerically or alphabetically (Flux's `filterTags`), exclusions, and a repository of
//! more than 9,000 tags.

use berth_api::image::ImageStreamTag;
use berth_api::version_policy::{OrderPolicy, SemverPolicy, SortOrder, TagFilter, VersionPolicy};

use super::*;

fn tags(list: &[&str]) -> Vec<String> {
    list.iter().map(|t| (*t).to_owned()).collect()
}

fn semver(range: &str) -> VersionPolicy {
    VersionPolicy {
        semver: Some(SemverPolicy { range: range.into() }),
        ..Default::default()
    }
}

fn numerical(order: SortOrder) -> VersionPolicy {
    VersionPolicy {
        numerical: Some(OrderPolicy { order: Some(order) }),
        ..Default::default()
    }
}

fn alphabetical() -> VersionPolicy {
    VersionPolicy {
        alphabetical: Some(OrderPolicy::default()),
        ..Default::default()
    }
}

fn filtered(mut policy: VersionPolicy, pattern: &str, extract: Option<&str>) -> VersionPolicy {
    policy.filter_tags = Some(TagFilter {
        pattern: pattern.into(),
        extract: extract.map(Into::into),
    });
    policy
}

/// The chosen tag, or the failure's message.
fn choose(policy: &VersionPolicy, list: &[String]) -> Result<Choice, String> {
    Policy::compile(policy).expect("a valid policy").choose(Listed {
        tags: list,
        truncated: false,
    })
}

fn chosen(policy: &VersionPolicy, list: &[&str]) -> String {
    choose(policy, &tags(list)).expect("a choice").tag
}

/// Tags of a project that prefixes `v`, ships pre-releases, and keeps a few moving tags.
const RELEASES: &[&str] = &[
    "latest",
    "v1.0.0",
    "v1.1.0-rc.1",
    "v1.1.0",
    "v1.1.1",
    "v1.2.0-beta.1",
    "v1.2.0-rc.1",
    "v1.2.0",
    "v1.2.1",
    "v1.3.0-alpha.0",
    "v2.0.0-rc.1",
    "sha-3f2a9c1",
    "main",
    "v1",
    "v1.2",
];

#[test]
fn semver_ranges_as_masterminds_writes_them() {
    for (range, expected) in [
        (">=1.0.0 <2.0.0", "v1.2.1"),
        (">=1.0.0, <2.0.0", "v1.2.1"),
        (">= 1.0, < 2", "v1.2.1"),
        ("~1.1", "v1.1.1"),
        ("~1.1.0", "v1.1.1"),
        ("^1.1", "v1.2.1"),
        ("1.x", "v1.2.1"),
        ("1.1.x", "v1.1.1"),
        ("1.1", "v1.1.1"),
        ("1.1.0", "v1.1.0"),
        ("=v1.1.0", "v1.1.0"),
        ("1.0 - 1.1", "v1.1.1"),
        ("~1.1 || ^3", "v1.1.1"),
        ("<1.1.0 || >=1.2.1", "v1.2.1"),
        ("*", "v1.2.1"),
        // `<2` excludes 2.0.0's pre-releases too (Masterminds would admit v2.0.0-rc.1): see `range.rs`.
        (">=1.2.0-0 <2", "v1.3.0-alpha.0"),
        (">=1.2.0-0 <2.0.0-rc.2", "v2.0.0-rc.1"),
        (">=1.0.0-0", "v2.0.0-rc.1"),
        (">=2.0.0-rc.0", "v2.0.0-rc.1"),
    ] {
        assert_eq!(chosen(&semver(range), RELEASES), expected, "range {range}");
    }
}

#[test]
fn pre_releases_are_skipped_unless_the_range_names_one_and_the_message_says_how_many() {
    let list = tags(RELEASES);
    let choice = choose(&semver("^1"), &list).unwrap();
    assert_eq!(choice.tag, "v1.2.1");
    assert_eq!(
        choice.why,
        "v1.2.1 is the highest of 7 tags in semver range \"^1\" (of 15 listed: 3 not semantic versions, \
         4 pre-releases, 1 out of range)"
    );
    // Only pre-releases ahead: still the release.
    assert_eq!(
        chosen(&semver(">=1.2.1"), &["v1.2.1", "v1.3.0-rc.1", "v2.0.0-beta.1"]),
        "v1.2.1"
    );
    let none = choose(&semver(">=3"), &list).unwrap_err();
    assert!(
        none.starts_with("no tag is in semver range \">=3\": none of 15 listed:"),
        "{none}"
    );
    assert!(
        none.contains("push a matching tag or change importPolicy.versionPolicy"),
        "{none}"
    );
}

#[test]
fn partial_and_prefixed_versions_of_one_release_are_chosen_the_same_whatever_the_listing_order() {
    let mut list = tags(&["1.25", "v1.25.3", "1.25.3", "1", "1.24.9"]);
    let first = choose(&semver("^1"), &list).unwrap().tag;
    list.reverse();
    assert_eq!(choose(&semver("^1"), &list).unwrap().tag, first);
    assert_eq!(first, "v1.25.3");
    // Docker Hub's variants read as pre-releases (`1.25.3-alpine`): not chosen by a plain range.
    assert_eq!(chosen(&semver("^1"), &["1.25.3-alpine", "1.25.2"]), "1.25.2");
    // ... and followed with a filter that extracts the version.
    let alpine = filtered(semver("^1"), r"^(?P<v>[0-9.]+)-alpine$", Some("$v"));
    assert_eq!(
        chosen(
            &alpine,
            &["1.25.3-alpine", "1.25.4", "1.25.2-alpine", "1.26.0-bookworm"]
        ),
        "1.25.3-alpine"
    );
}

#[test]
fn calendar_versions_order_numerically() {
    let asc = numerical(SortOrder::Asc);
    assert_eq!(
        chosen(
            &asc,
            &["2024.01.15", "2023.12.31", "2024.1.9", "2024.01.02", "latest"]
        ),
        "2024.01.15"
    );
    assert_eq!(
        chosen(&asc, &["22.04", "24.04", "23.10", "20.04", "24.04"]),
        "24.04"
    );
    assert_eq!(
        chosen(&asc, &["2023-10-01", "2023-09-30", "2023-10-1_2"]),
        "2023-10-1_2"
    );
    assert_eq!(chosen(&asc, &["v2024.10", "v2024.9"]), "v2024.10");
    assert_eq!(
        chosen(&asc, &["1.9", "1.10", "1.2"]),
        "1.10",
        "numbers, not decimals"
    );
    assert_eq!(
        chosen(&asc, &["99999999999999999999999", "100000000000000000000000"]),
        "100000000000000000000000",
        "longer than any integer type"
    );
    assert_eq!(
        chosen(&numerical(SortOrder::Desc), &["24.04", "22.04", "23.10"]),
        "22.04"
    );
    // Semver reads calendar versions too (leading zeros dropped), so a range can bound them.
    assert_eq!(
        chosen(&semver("<2024.2"), &["2024.01.15", "2024.02.01", "2023.12.31"]),
        "2024.01.15"
    );
    // Ubuntu-style tags: the date extracted from `jammy-20240111`.
    let jammy = filtered(
        numerical(SortOrder::Asc),
        r"^jammy-(?P<date>\d{8})$",
        Some("$date"),
    );
    assert_eq!(
        chosen(
            &jammy,
            &["jammy-20240111", "jammy-20231211", "noble-20240801", "jammy"]
        ),
        "jammy-20240111"
    );
}

#[test]
fn an_extract_orders_numerically_or_alphabetically() {
    // Flux's example: branch, commit, timestamp.
    let list = tags(&[
        "main-3f2a9c1-1700000100",
        "main-bb01ff2-999",
        "dev-aaaaaaa-1800000000",
        "main-x",
    ]);
    let pattern = r"^main-[a-fA-F0-9]+-(?P<ts>.*)";
    let by_number = filtered(numerical(SortOrder::Asc), pattern, Some("$ts"));
    assert_eq!(choose(&by_number, &list).unwrap().tag, "main-3f2a9c1-1700000100");
    let by_text = filtered(alphabetical(), pattern, Some("${ts}"));
    assert_eq!(
        choose(&by_text, &list).unwrap().tag,
        "main-bb01ff2-999",
        "\"999\" > \"1700000100\""
    );
    let why = choose(&by_number, &list).unwrap().why;
    assert!(why.contains("2 not matching filterTags"), "{why}");
    // Alphabetical over MinIO-style release names, and its reverse.
    let minio = [
        "RELEASE.2024-01-16T16-07-38Z",
        "RELEASE.2023-12-23T07-19-11Z",
        "RELEASE.2024-01-05T22-17-24Z",
    ];
    assert_eq!(chosen(&alphabetical(), &minio), "RELEASE.2024-01-16T16-07-38Z");
    let first = VersionPolicy {
        alphabetical: Some(OrderPolicy {
            order: Some(SortOrder::Desc),
        }),
        ..Default::default()
    };
    assert_eq!(chosen(&first, &minio), "RELEASE.2023-12-23T07-19-11Z");
}

#[test]
fn exclusions_are_never_chosen() {
    let mut policy = semver(">=1.0.0-0");
    policy.exclude = vec!["-rc".into(), "^v1\\.2\\.1$".into()];
    assert_eq!(chosen(&policy, RELEASES), "v1.3.0-alpha.0");
    policy.exclude.push("alpha".into());
    let choice = choose(&policy, &tags(RELEASES)).unwrap();
    assert_eq!(choice.tag, "v1.2.0");
    assert!(choice.why.contains("5 excluded"), "{}", choice.why);
    let mut dated = numerical(SortOrder::Asc);
    dated.exclude = vec!["^2024\\.".into()];
    assert_eq!(chosen(&dated, &["2024.01.15", "2023.12.31"]), "2023.12.31");
}

#[test]
fn more_than_nine_thousand_tags() {
    // 4 majors x 30 minors x 40 patches, each with two release candidates, plus commit tags: 14,400 +
    // 500, in a scrambled order.
    let mut list = Vec::new();
    for major in 0..4 {
        for minor in 0..30 {
            for patch in 0..40 {
                list.push(format!("v{major}.{minor}.{patch}"));
                list.push(format!("v{major}.{minor}.{patch}-rc.1"));
                list.push(format!("v{major}.{minor}.{patch}-rc.2"));
            }
        }
    }
    list.extend((0..500).map(|i| format!("sha-{:07x}", i * 7919)));
    // A fixed shuffle: a multiplicative step co-prime with the length.
    let n = list.len();
    assert!(n > 9_000);
    let step = (1..n).rev().find(|s| gcd(*s, n) == 1 && *s < n / 2).unwrap();
    let scrambled: Vec<String> = (0..n).map(|i| list[(i * step) % n].clone()).collect();

    let started = std::time::Instant::now();
    let choice = choose(&semver(">=2.5 <3"), &scrambled).unwrap();
    assert_eq!(choice.tag, "v2.29.39");
    assert_eq!(
        choice.why,
        "v2.29.39 is the highest of 1,000 tags in semver range \">=2.5 <3\" (of 14,900 listed: 500 not \
         semantic versions, 2,000 pre-releases, 11,400 out of range)"
    );
    assert_eq!(choose(&semver("~1.7"), &scrambled).unwrap().tag, "v1.7.39");
    assert_eq!(
        choose(&semver(">=3.29.39-0"), &scrambled).unwrap().tag,
        "v3.29.39"
    );
    assert_eq!(
        choose(&semver(">=3.29.39-rc.1 <3.29.39"), &scrambled)
            .unwrap()
            .tag,
        "v3.29.39-rc.2"
    );
    assert_eq!(
        choose(&numerical(SortOrder::Asc), &scrambled).unwrap().tag,
        "v3.29.39"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // A capped listing says so.
    let capped = Policy::compile(&semver("^0")).unwrap().choose(Listed {
        tags: &scrambled[..10],
        truncated: true,
    });
    let message = match capped {
        Ok(c) => c.why,
        Err(e) => e,
    };
    assert!(message.contains("more tags than one listing reads"), "{message}");
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[test]
fn the_webhook_asks_whether_a_pushed_tag_could_be_chosen() {
    let mut policy = semver("^1.2");
    policy.exclude = vec!["-debug$".into()];
    let policy = Policy::compile(&policy).unwrap();
    assert!(policy.admits("v1.4.0"));
    assert!(policy.admits("1.2"));
    for no in ["v2.0.0", "v1.4.0-rc.1", "latest", "v1.1.9", "1.4.0-debug", "-bad"] {
        assert!(!policy.admits(no), "{no}");
    }
}

#[test]
fn invalid_policies_name_their_field() {
    let error = |p: &VersionPolicy| Policy::compile(p).expect_err("invalid").to_string();
    let e = error(&VersionPolicy::default());
    assert!(
        e.starts_with("importPolicy.versionPolicy: set one of semver"),
        "{e}"
    );
    let mut both = semver("^1");
    both.numerical = Some(OrderPolicy::default());
    assert!(error(&both).contains("set only one of"), "{}", error(&both));

    for (range, says) in [
        (">=1.2 <<2", "\"<<2\""),
        ("!=1.2.3", "skip in importPolicy.versionPolicy.exclude"),
        ("", "the range is empty"),
        (">=", "has no version"),
        ("1.2 -", "no upper bound"),
        ("banana", "does not parse"),
    ] {
        let e = error(&semver(range));
        assert!(
            e.starts_with("importPolicy.versionPolicy.semver.range: "),
            "{range}: {e}"
        );
        assert!(e.contains(says), "{range}: {e}");
    }

    let e = error(&filtered(alphabetical(), "^main-(?P<ts>[0-9]+", None));
    assert!(e.starts_with("importPolicy.versionPolicy.filterTags.pattern: \"^main-(?P<ts>[0-9]+\" is not a regular expression: unclosed group"), "{e}");
    let e = error(&filtered(alphabetical(), "^main-(?P<ts>[0-9]+)$", Some("$tss")));
    assert!(
        e.starts_with("importPolicy.versionPolicy.filterTags.extract: \"$tss\" names the group \"tss\""),
        "{e}"
    );
    assert!(e.contains("its named groups: ts"), "{e}");
    let e = error(&filtered(alphabetical(), "^main-([0-9]+)$", Some("${2}")));
    assert!(e.contains("\"2\""), "{e}");
    assert!(Policy::compile(&filtered(alphabetical(), "^main-([0-9]+)$", Some("$1 $$"))).is_ok());
    let mut excluded = alphabetical();
    excluded.exclude = vec!["ok".into(), "(?<=x)".into()];
    assert!(
        error(&excluded).starts_with("importPolicy.versionPolicy.exclude[1]: "),
        "{}",
        error(&excluded)
    );
    let mut huge = alphabetical();
    huge.exclude = vec!["\\w{1000}\\w{1000}\\w{1000}".into()];
    assert!(error(&huge).contains("exclude[0]"), "{}", error(&huge));
}

#[test]
fn tags_the_registry_should_not_list_are_skipped() {
    let choice = choose(&alphabetical(), &tags(&["b", "-x", "", "a b", "a"])).unwrap();
    assert_eq!(choice.tag, "b");
    assert!(choice.why.contains("3 invalid tags"), "{}", choice.why);
}

#[test]
fn versions_read_from_tags() {
    let v = |t: &str| parse_version(t).map(|v| v.to_string());
    assert_eq!(v("v1.2.3").as_deref(), Some("1.2.3"));
    assert_eq!(v("V1").as_deref(), Some("1.0.0"));
    assert_eq!(v("1.2-rc.1").as_deref(), Some("1.2.0-rc.1"));
    assert_eq!(v("1.2.3+build.5").as_deref(), Some("1.2.3+build.5"));
    assert_eq!(v("1.2.3-rc.1+b").as_deref(), Some("1.2.3-rc.1+b"));
    assert_eq!(v("2024.01.15").as_deref(), Some("2024.1.15"));
    for not in [
        "latest", "1.2.3.4", "v", "1..2", "1.2.3-", "1.2.3-01", "x1.2", "1.2.3_4",
    ] {
        assert_eq!(v(not), None, "{not}");
    }
}

#[test]
fn counts_have_thousands_separators() {
    assert_eq!(count(0), "0");
    assert_eq!(count(999), "999");
    assert_eq!(count(9_214), "9,214");
    assert_eq!(count(1_234_567), "1,234,567");
}

#[test]
fn a_tag_with_a_policy_names_a_repository_of_a_registry() {
    use crate::testing::fixtures::{NS, TagFixture, istag};
    use berth_api::image::SourceKind;

    let with_policy = |t: ImageStreamTag| {
        let mut t = t.import_policy(true, true);
        t.spec.import_policy.as_mut().unwrap().version_policy = Some(semver("^1"));
        t
    };
    let refusal = |t: &ImageStreamTag| match source(t) {
        Some(Source::Known(Outcome::Failed { reason, message })) => {
            assert_eq!(reason, REASON_INVALID);
            message
        }
        other => panic!("expected a refusal, got {other:?}"),
    };
    let t = with_policy(istag(NS, "demo", "v1").follows_image("reg.example:5000/berth/demo"));
    assert!(matches!(
        source(&t),
        Some(Source::Versions { repository, .. }) if repository.repository() == "berth/demo"
    ));
    assert_eq!(
        source(&istag(NS, "demo", "v1").follows_image("reg/demo:v1")),
        None,
        "no policy"
    );

    let tagged = with_policy(istag(NS, "demo", "v1").follows_image("reg.example:5000/berth/demo:v1"));
    let message = refusal(&tagged);
    assert!(
        message.contains("write the repository alone (reg.example:5000/berth/demo)"),
        "{message}"
    );

    let pinned =
        with_policy(istag(NS, "demo", "v1").follows_image(&format!("reg/demo@sha256:{}", "1".repeat(64))));
    assert_eq!(
        source(&pinned),
        None,
        "a pinned digest (a rollback) wins over the policy"
    );

    let mut recorded = t.clone();
    recorded.spec.reference = true;
    assert!(refusal(&recorded).contains("`reference: true`"));
    let alias = with_policy(istag(NS, "demo", "v1").follows(SourceKind::ImageStreamTag, "demo:v2"));
    assert!(refusal(&alias).contains("needs from.kind DockerImage"));
    let mut invalid = t.clone();
    invalid.spec.import_policy.as_mut().unwrap().version_policy = Some(semver("!=1"));
    assert!(refusal(&invalid).starts_with("importPolicy.versionPolicy.semver.range: "));
}
