//! Names of what Prism writes: managed rules (a sectionName) and its own HTTPRoutes (an object
//! name), both lowercase RFC 1123 subdomains of at most 253 characters, derived from the route
//! names users give (which are free text up to 63 characters) and release names.

use prism_api::labels::MANAGED_RULE_PREFIX;

/// The longest sectionName and object name.
const MAX_NAME: usize = 253;

/// The name of a managed rule: `prism-<route>`, then `-<version>` when the route reaches
/// several versions (a route to `each`), then `-<n>` when it copies several rules.
pub(super) fn rule_name(route: &str, version: Option<&str>, copy: Option<usize>) -> String {
    let mut raw = format!("{MANAGED_RULE_PREFIX}{route}");
    if let Some(version) = version {
        raw.push('-');
        raw.push_str(version);
    }
    if let Some(copy) = copy {
        raw.push_str(&format!("-{copy}"));
    }
    dns_name(&raw)
}

/// The name of the HTTPRoute Prism owns for a subdomain route: `<user's route>-<route>-<version>`.
pub fn object_name(user_route: &str, route: &str, version: &str) -> String {
    dns_name(&format!("{user_route}-{route}-{version}"))
}

/// `raw` as a DNS subdomain: lowercase, other characters than letters, digits and `-` made `-`.
/// A name that had to change, or is too long, ends in a hash of `raw` so that two raw names
/// never give one name.
fn dns_name(raw: &str) -> String {
    let name: String = raw
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name == raw && name.len() <= MAX_NAME && name.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        return name;
    }
    with_hash(&name, raw)
}

/// `name` ending in a hash of `origin`, within the length limit.
fn with_hash(name: &str, origin: &str) -> String {
    let hash = format!("{:08x}", fnv1a(origin.as_bytes()) as u32);
    let mut name = name[..name.len().min(MAX_NAME - hash.len() - 1)]
        .trim_end_matches('-')
        .to_owned();
    name.push('-');
    name.push_str(&hash);
    name
}

/// The names made unique: each name that several entries share ends in a hash of its origin
/// (what it was made from, distinct for each entry). Two routes can give one name (`beta` to
/// each version gives `prism-beta-docs-2`, and so does a route named `beta-docs-2`).
pub(super) fn unique(names: &[String], origins: &[String]) -> Vec<String> {
    names
        .iter()
        .zip(origins)
        .map(|(name, origin)| {
            if names.iter().filter(|other| *other == name).count() > 1 {
                with_hash(name, origin)
            } else {
                name.clone()
            }
        })
        .collect()
}

/// FNV-1a, 64 bits: stable across builds and platforms, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_section_name(name: &str) -> bool {
        let label = |l: &str| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        name.len() <= MAX_NAME && name.split('.').all(label)
    }

    #[test]
    fn plain_names_stay_readable() {
        assert_eq!(rule_name("beta", None, None), "prism-beta");
        assert_eq!(
            rule_name("by-version", Some("docs-3"), Some(2)),
            "prism-by-version-docs-3-2"
        );
        assert_eq!(
            object_name("docs", "by-version", "docs-3"),
            "docs-by-version-docs-3"
        );
    }

    #[test]
    fn other_names_become_valid_and_stay_distinct() {
        let upper = rule_name("Beta", None, None);
        let lower = rule_name("beta", None, None);
        let spaced = rule_name("beta test!", None, None);
        assert!(
            is_section_name(&upper) && is_section_name(&spaced),
            "{upper} {spaced}"
        );
        assert_ne!(upper, lower);
        assert!(spaced.starts_with("prism-beta-test-"), "{spaced}");
        let long = object_name(&"r".repeat(253), "beta", "docs-3");
        assert!(is_section_name(&long) && long.len() == MAX_NAME, "{long}");
        assert_ne!(long, object_name(&"r".repeat(253), "beta", "docs-4"));
    }

    #[test]
    fn names_two_routes_share_are_told_apart() {
        let names = [
            rule_name("beta", Some("docs-2"), None),
            rule_name("beta-docs-2", None, None),
        ];
        let origins = ["beta\0docs-2".to_owned(), "beta-docs-2\0".to_owned()];
        let unique = unique(&names, &origins);
        assert_ne!(unique[0], unique[1]);
        assert!(
            unique
                .iter()
                .all(|name| name.starts_with("prism-beta-docs-2-") && is_section_name(name))
        );
        assert_eq!(
            super::unique(&names[..1], &origins[..1]),
            ["prism-beta-docs-2"]
        );
    }

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
