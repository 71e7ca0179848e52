//! A metric's query for one version in one cluster.

/// Whose metric a query asks for.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub app: &'a str,
    pub namespace: &'a str,
    /// The Release's name: the value of the pods' `prism.dev/release` label.
    pub version: &'a str,
    pub cluster: &'a str,
}

/// `query` with `{{app}}`, `{{namespace}}`, `{{version}}` and `{{cluster}}` replaced.
pub fn render(query: &str, subject: Subject<'_>) -> String {
    query
        .replace("{{app}}", subject.app)
        .replace("{{namespace}}", subject.namespace)
        .replace("{{version}}", subject.version)
        .replace("{{cluster}}", subject.cluster)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variable_is_replaced_wherever_it_occurs() {
        let subject = Subject {
            app: "shop",
            namespace: "web",
            version: "shop-2",
            cluster: "eu-1",
        };
        assert_eq!(
            render(
                r#"rate(x{app="{{app}}",ns="{{namespace}}",v="{{version}}",c="{{cluster}}"}[1m]) / rate(y{v="{{version}}"}[1m])"#,
                subject
            ),
            r#"rate(x{app="shop",ns="web",v="shop-2",c="eu-1"}[1m]) / rate(y{v="shop-2"}[1m])"#
        );
    }
}
