//! Hosts: which Service a destination's `host` names, and the authorities of a subdomain route.
//!
//! A destination names a Service of the VirtualService's namespace in one of the forms Istio
//! resolves there: `web`, `web.shop`, `web.shop.svc` or `web.shop.svc.cluster.local`. Prism
//! writes a version's Service in the form of the host it replaces (`web-2.shop.svc`), so that a
//! user who spells hosts out fully keeps reading them so.
//!
//! A subdomain route becomes an `authority` match: Istio matches the request's authority in a
//! rule (the Gateway API cannot, hence its own routes there). A request reaches the
//! VirtualService only if one of its `spec.hosts` covers the authority, so the subdomain's
//! authorities are those of `<subdomain>.<host>` (a wildcard host's `*` replaced) that a host of
//! the VirtualService covers: `v3.example.com` for a host `*.example.com`; `v3.docs.example.com`
//! for a host `docs.example.com` only if the VirtualService also has `*.docs.example.com` (or
//! that name itself). Prism never adds hosts: `spec.hosts` is the user's.

use crate::traffic::is_hostname;

/// The Service a destination host names in `namespace`, and the rest of the host after its
/// name (`("web", ".shop.svc")`); None for a host of another namespace, an external one or a
/// wildcard.
pub fn service_of<'h>(host: &'h str, namespace: Option<&str>) -> Option<(&'h str, &'h str)> {
    let split = host.find('.').unwrap_or(host.len());
    let (name, rest) = host.split_at(split);
    let in_namespace = rest.is_empty()
        || namespace.is_some_and(|namespace| {
            rest.strip_prefix('.')
                .and_then(|rest| rest.strip_prefix(namespace))
                .is_some_and(|tail| ["", ".svc", ".svc.cluster.local"].contains(&tail))
        });
    (in_namespace && !name.is_empty() && name != "*").then_some((name, rest))
}

/// The authorities a subdomain route matches, in the order of `hosts`, as the module doc says;
/// empty when no host of the VirtualService covers any.
pub fn subdomain_authorities(subdomain: &str, hosts: &[&str]) -> Vec<String> {
    let mut authorities: Vec<String> = Vec::new();
    for host in hosts {
        let parent = host.strip_prefix("*.").unwrap_or(host);
        // A Service's short name, or `*`, is no domain to take a subdomain of.
        if !parent.contains('.') || parent.contains('*') {
            continue;
        }
        let authority = format!("{subdomain}.{parent}");
        if is_hostname(&authority)
            && hosts.iter().any(|host| covers(host, &authority))
            && !authorities.contains(&authority)
        {
            authorities.push(authority);
        }
    }
    authorities
}

/// Whether a VirtualService host takes requests for `authority`: the same name, or a wildcard
/// whose suffix it ends with (Istio's wildcards span any number of labels).
fn covers(host: &str, authority: &str) -> bool {
    host == "*"
        || host == authority
        || host
            .strip_prefix('*')
            .is_some_and(|suffix| suffix.starts_with('.') && authority.ends_with(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_is_named_in_each_form_istio_resolves_in_the_namespace() {
        let ns = Some("shop");
        assert_eq!(service_of("docs", ns), Some(("docs", "")));
        assert_eq!(service_of("docs.shop", ns), Some(("docs", ".shop")));
        assert_eq!(service_of("docs.shop.svc", ns), Some(("docs", ".shop.svc")));
        assert_eq!(
            service_of("docs.shop.svc.cluster.local", ns),
            Some(("docs", ".shop.svc.cluster.local"))
        );
        for elsewhere in [
            "docs.other",
            "docs.other.svc.cluster.local",
            "docs.shop.svc.corp.local",
            "docs.example.com",
            "docs.shopping",
            "*.shop.svc.cluster.local",
            "",
        ] {
            assert_eq!(service_of(elsewhere, ns), None, "{elsewhere}");
        }
    }

    #[test]
    fn a_subdomain_is_matched_where_a_host_of_the_virtual_service_covers_it() {
        assert_eq!(
            subdomain_authorities("v3", &["*.example.com"]),
            ["v3.example.com"]
        );
        assert_eq!(
            subdomain_authorities("v3", &["docs.example.com", "*.docs.example.com"]),
            ["v3.docs.example.com"]
        );
        assert_eq!(
            subdomain_authorities("v3", &["docs.example.com"]),
            Vec::<String>::new(),
            "no host takes v3.docs.example.com"
        );
        assert_eq!(
            subdomain_authorities("v3", &["docs", "*", "docs.example.com"]),
            ["v3.docs.example.com"],
            "* covers it; a short name is no domain"
        );
        assert_eq!(
            subdomain_authorities("V3", &["*.example.com"]),
            Vec::<String>::new(),
            "not a hostname"
        );
    }

    #[test]
    fn wildcards_span_any_number_of_labels() {
        assert!(covers("*.example.com", "a.b.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(!covers("*.example.com", "badexample.com"));
    }
}
