//! The syntax Kubernetes requires of names, label keys and values, and port names (the rules of
//! `k8s.io/apimachinery/pkg/util/validation`), each as a check that says what is wrong, or
//! nothing. The messages end with the rule, so that they read as the fix.

/// A DNS label (RFC 1123): a Service's name, a container's, a port's protocol-free name.
pub fn dns_label(text: &str) -> Option<String> {
    if text.is_empty() || text.len() > 63 {
        return Some(format!("{} characters: {DNS_LABEL_RULE}", text.len()));
    }
    (!is_dns_label(text)).then(|| DNS_LABEL_RULE.to_owned())
}

const DNS_LABEL_RULE: &str =
    "use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit";

/// A DNS-1035 label: a Service's name, which must not start with a digit.
pub fn service_name(text: &str) -> Option<String> {
    let rule = "a Service's name is at most 63 lowercase letters, digits and '-', starting with a letter and ending with a letter or digit";
    let starts_with_letter = text.starts_with(|c: char| c.is_ascii_lowercase());
    (!(is_dns_label(text) && starts_with_letter)).then(|| rule.to_owned())
}

/// A DNS subdomain (RFC 1123): most objects' names, and a label key's prefix.
pub fn dns_subdomain(text: &str) -> Option<String> {
    let rule = "use at most 253 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit";
    let valid = !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        });
    (!valid).then(|| rule.to_owned())
}

/// A label's or an annotation's key: an optional DNS subdomain prefix and '/', then a name of at
/// most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit.
pub fn qualified_name(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(problem) = prefix.and_then(dns_subdomain) {
        return Some(format!(
            "the prefix before '/' is not a DNS subdomain: {problem}"
        ));
    }
    (name.is_empty() || name.len() > 63 || !is_label_text(name)).then(|| {
        "a key is an optional DNS subdomain prefix and '/', then at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit".to_owned()
    })
}

/// A label's value: empty, or at most 63 letters, digits, '-', '_' and '.', starting and ending
/// with a letter or digit.
pub fn label_value(value: &str) -> Option<String> {
    (value.len() > 63 || !(value.is_empty() || is_label_text(value))).then(|| {
        "a label value is empty, or at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit".to_owned()
    })
}

/// A named port (IANA_SVC_NAME): at most 15 lowercase letters, digits and '-', with a letter,
/// no '--', starting and ending with a letter or digit.
pub fn port_name(name: &str) -> Option<String> {
    let valid = (1..=15).contains(&name.len())
        && is_dns_label(name)
        && name.chars().any(|c| c.is_ascii_lowercase())
        && !name.contains("--");
    (!valid).then(|| {
        "a port's name is at most 15 lowercase letters, digits and '-', with at least one letter, no '--', starting and ending with a letter or digit".to_owned()
    })
}

/// A ConfigMap's key: at most 253 letters, digits, '-', '_' and '.'.
pub fn config_key(key: &str) -> Option<String> {
    let valid = !key.is_empty()
        && key.len() <= 253
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && key != "."
        && !key.starts_with("..");
    (!valid).then(|| {
        "a ConfigMap's key is at most 253 letters, digits, '-', '_' and '.', and neither . nor starts with .."
            .to_owned()
    })
}

/// Whether `name` is a DNS label (RFC 1123).
pub fn is_dns_label(name: &str) -> bool {
    let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    (1..=63).contains(&name.len())
        && name.chars().all(valid_char)
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn is_label_text(text: &str) -> bool {
    let alphanumeric = |c: char| c.is_ascii_alphanumeric();
    text.starts_with(alphanumeric)
        && text.ends_with(alphanumeric)
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys_take_an_optional_subdomain_prefix() {
        for good in [
            "app",
            "app.kubernetes.io/name",
            "prism.dev/release",
            "A_b.c-9",
        ] {
            assert_eq!(qualified_name(good), None, "{good}");
        }
        let long = "a".repeat(64);
        for bad in [
            "",
            "-app",
            "app-",
            "a b",
            "Example.com/app",
            "x/",
            "/x",
            &long,
        ] {
            assert!(qualified_name(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn label_values_may_be_empty_but_not_long_or_odd() {
        for good in ["", "web", "v1.2_3", "A"] {
            assert_eq!(label_value(good), None, "{good}");
        }
        for bad in ["-web", "web-", "a/b", "has space", &"a".repeat(64)] {
            assert!(label_value(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn names_follow_their_kind_of_dns_name() {
        assert_eq!(dns_subdomain("web.prod-1"), None);
        assert!(dns_subdomain("Web").is_some());
        assert!(dns_subdomain("web..prod").is_some());
        assert!(dns_subdomain(&"a".repeat(254)).is_some());
        assert_eq!(service_name("web"), None);
        assert!(
            service_name("1web").is_some(),
            "a Service starts with a letter"
        );
        assert!(service_name("web.prod").is_some());
        assert_eq!(dns_label("web-1"), None);
        assert!(dns_label("Web").is_some());
        assert!(
            dns_label(&"a".repeat(64))
                .unwrap()
                .starts_with("64 characters")
        );
    }

    #[test]
    fn port_names_are_short_iana_service_names() {
        assert_eq!(port_name("http"), None);
        assert_eq!(port_name("http-2"), None);
        for bad in ["", "8080", "HTTP", "a--b", "-http", "averyveryverylongname"] {
            assert!(port_name(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn config_map_keys() {
        assert_eq!(config_key("app.properties"), None);
        assert_eq!(config_key("LOG_LEVEL"), None);
        for bad in ["", ".", "..", "..a", "a/b", "a b"] {
            assert!(config_key(bad).is_some(), "{bad}");
        }
    }
}
