//! The CEL rules of the CRD schemas (`x-kubernetes-validations`).
//!
//! Each rule carries the message the API server shows when it fails; `validate` checks the same
//! condition in Rust and reports the same message, so `prism plan`, the controller and
//! `kubectl apply` agree word for word.

use kube::core::Rule;

#[derive(Clone, Copy, Debug)]
pub(crate) struct CelRule {
    pub rule: &'static str,
    pub message: &'static str,
    /// Where the API server reports a failure, relative to the node the rule is on.
    pub field: Option<&'static str>,
}

impl From<CelRule> for Rule {
    fn from(cel: CelRule) -> Rule {
        let rule = Rule::new(cel.rule).message(cel.message);
        match cel.field {
            Some(field) => rule.field_path(field),
            None => rule,
        }
    }
}

const fn rule(rule: &'static str, message: &'static str) -> CelRule {
    CelRule {
        rule,
        message,
        field: None,
    }
}

const fn rule_at(field: &'static str, rule: &'static str, message: &'static str) -> CelRule {
    CelRule {
        rule,
        message,
        field: Some(field),
    }
}

// Pipelines and steps.

pub(crate) const STEPS_NOT_EMPTY: CelRule = rule(
    "size(self) >= 1",
    "a strategy needs at least one step: add a step whose capacity.contender is \"100%\"",
);

pub(crate) const STEP_NAMES_UNIQUE: CelRule = rule(
    "self.all(s, self.exists_one(t, t.name == s.name))",
    "step names must be unique within a strategy: rename one of the steps that share a name",
);

pub(crate) const STEP_NAME_IS_DNS_LABEL: CelRule = rule(
    "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
    "a step name must be a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters",
);

pub(crate) const SURGE_STEP_KEEPS_TRAFFIC: CelRule = rule_at(
    ".traffic",
    "!has(self.capacity) || !has(self.capacity.maxSurge) || !has(self.traffic)",
    "a step with capacity.maxSurge moves capacity a few pods at a time, so it must not change traffic: move this traffic sub-step into a step of its own",
);

// Versions.

pub(crate) const VERSION_NAME_HAS_REVISION: CelRule = rule(
    "self.contains('{revision}')",
    "versions.name must contain {revision}, or two versions could go by one name: e.g. \"v{revision}\"",
);

pub(crate) const VERSION_NAME_IS_DNS_LABEL: CelRule = rule(
    "self.replace('{revision}', '1').replace('{app}', 'a').matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
    "versions.name must make a DNS label: lowercase letters, digits, '-' and the placeholders {revision} and {app}, starting and ending with a letter, a digit or a placeholder",
);

// Traffic.

pub(crate) const WEIGHTS_SUM_TO_100: CelRule = rule(
    "!has(self.contender) || !has(self.incumbent) || self.contender + self.incumbent == 100",
    "contender and incumbent weights must sum to 100: give only one of them and the other gets the rest",
);

pub(crate) const ROUTE_NAMES_UNIQUE: CelRule = rule(
    "self.all(r, self.exists_one(s, s.name == r.name))",
    "route names must be unique within a step: rename one of the routes that share a name",
);

pub(crate) const EACH_ROUTE_HAS_PLACEHOLDER: CelRule = rule_at(
    ".match",
    "self.to != 'each' || (has(self.match.header) && self.match.header.value.contains('{version}')) || (has(self.match.pathPrefix) && self.match.pathPrefix.contains('{version}')) || (has(self.match.queryParam) && self.match.queryParam.value.contains('{version}')) || (has(self.match.subdomain) && self.match.subdomain.contains('{version}'))",
    "a route to `each` version must contain {version} in its match, replaced by each version's name: e.g. subdomain: \"{version}\" or pathPrefix: \"/{version}\"",
);

pub(crate) const PLACEHOLDER_ONLY_IN_EACH_ROUTE: CelRule = rule_at(
    ".match",
    "self.to == 'each' || !((has(self.match.header) && self.match.header.value.contains('{version}')) || (has(self.match.pathPrefix) && self.match.pathPrefix.contains('{version}')) || (has(self.match.queryParam) && self.match.queryParam.value.contains('{version}')) || (has(self.match.subdomain) && self.match.subdomain.contains('{version}')))",
    "{version} is replaced only in routes to `each`: set to: each, or write the match out",
);

pub(crate) const ONE_ROUTE_MATCH: CelRule = rule(
    "(has(self.header) ? 1 : 0) + (has(self.pathPrefix) ? 1 : 0) + (has(self.queryParam) ? 1 : 0) + (has(self.subdomain) ? 1 : 0) == 1",
    "a route matches on exactly one of header, pathPrefix, queryParam or subdomain: keep one, and give each other match a route of its own",
);

pub(crate) const PATH_PREFIX_IS_ABSOLUTE: CelRule = rule_at(
    ".pathPrefix",
    "!has(self.pathPrefix) || self.pathPrefix.startsWith('/')",
    "a pathPrefix starts with '/': e.g. \"/beta\"",
);

// Analysis.

pub(crate) const METRIC_NAMES_UNIQUE: CelRule = rule(
    "self.all(m, self.exists_one(n, n.name == m.name))",
    "metric names must be unique within a step: rename one of the metrics that share a name",
);

pub(crate) const THRESHOLD_JUDGE_NEEDS_THRESHOLDS: CelRule = rule_at(
    ".metrics",
    "(has(self.judge) && self.judge != 'threshold') || self.metrics.all(m, has(m.threshold) || has(m.templateRef))",
    "the threshold judge needs a threshold on every metric: add threshold.min or threshold.max, or set judge: mannWhitney",
);

pub(crate) const ONE_METRIC_SOURCE: CelRule = rule(
    "has(self.templateRef) != has(self.query)",
    "a metric takes its query from exactly one of templateRef or query",
);

pub(crate) const THRESHOLD_HAS_BOUND: CelRule = rule(
    "has(self.min) || has(self.max)",
    "a threshold needs min, max or both",
);

pub(crate) const THRESHOLD_MIN_NOT_ABOVE_MAX: CelRule = rule(
    "!has(self.min) || !has(self.max) || self.min <= self.max",
    "threshold.min must not be greater than threshold.max",
);

// Gates and cluster scopes.

pub(crate) const ONE_GATE: CelRule = rule(
    "((has(self.manual) && self.manual) ? 1 : 0) + (has(self.pause) ? 1 : 0) + (has(self.webhook) ? 1 : 0) <= 1",
    "a gate is one of manual, pause or webhook: keep one, and put the others on steps of their own",
);

pub(crate) const PROMETHEUS_ADDRESS_IS_HTTP: CelRule = rule_at(
    ".address",
    "self.address.startsWith('http://') || self.address.startsWith('https://')",
    "a Prometheus address starts with http:// or https://",
);

pub(crate) const SCORE_MARGINAL_NOT_ABOVE_PASS: CelRule = rule(
    "self.marginal <= self.pass",
    "score.marginal must not be greater than score.pass",
);

pub(crate) const WEBHOOK_URL_IS_HTTP: CelRule = rule_at(
    ".url",
    "self.url.startsWith('http://') || self.url.startsWith('https://')",
    "a webhook url starts with http:// or https://",
);

pub(crate) const ONE_CLUSTER_SCOPE: CelRule = rule(
    "(has(self.first) ? 1 : 0) + (has(self.names) ? 1 : 0) + (has(self.region) ? 1 : 0) <= 1",
    "a step's clusters are chosen by one of first, names or region: keep one, and give the others steps of their own",
);

// Applications.

pub(crate) const ONE_STRATEGY: CelRule = rule(
    "(has(self.name) ? 1 : 0) + (has(self.clusterStrategyName) ? 1 : 0) + (has(self.steps) ? 1 : 0) == 1",
    "give exactly one of name (a Strategy in this namespace), clusterStrategyName (a ClusterStrategy) or steps (an inline strategy)",
);

pub(crate) const NO_TRAFFIC_STEPS_WITHOUT_PROVIDER: CelRule = rule_at(
    ".strategy.steps",
    "!has(self.traffic) || !has(self.traffic.provider) || self.traffic.provider != 'none' || !has(self.strategy.steps) || self.strategy.steps.all(s, !has(s.traffic))",
    "spec.traffic.provider is none, so no step may shift traffic: remove the step's traffic sub-step, or choose a traffic provider",
);

pub(crate) const SELECTOR_SWITCH_WEIGHTS: CelRule = rule_at(
    ".strategy.steps",
    "!has(self.traffic) || !has(self.traffic.provider) || self.traffic.provider != 'serviceSelector' || !has(self.strategy.steps) || self.strategy.steps.all(s, !has(s.traffic) || ((!has(s.traffic.contender) || s.traffic.contender in [0, 100]) && (!has(s.traffic.incumbent) || s.traffic.incumbent in [0, 100])))",
    "provider serviceSelector switches the Service from one version to the other, so weights are 0 or 100: for a weighted canary choose gatewayAPI, istio or podLabels",
);

pub(crate) const ROUTES_NEED_MATCHING_PROVIDER: CelRule = rule_at(
    ".strategy.steps",
    "!has(self.strategy.steps) || (has(self.traffic) && has(self.traffic.provider) && self.traffic.provider in ['none', 'gatewayAPI', 'istio']) || self.strategy.steps.all(s, !has(s.traffic) || !has(s.traffic.routes) || size(s.traffic.routes) == 0)",
    "routes match requests, which only providers gatewayAPI and istio can do: choose one of them, or remove the routes",
);

pub(crate) const TRAFFIC_NEEDS_SERVICE: CelRule = rule_at(
    ".template.manifests",
    "!has(self.template) || !has(self.template.manifests) || (has(self.traffic) && has(self.traffic.provider) && self.traffic.provider == 'none') || self.template.manifests.exists(m, m.kind == 'Service')",
    "a traffic provider shifts the traffic of a Service: add the application's Service to spec.template.manifests, or set spec.traffic.provider: none for a workload that serves no requests",
);

pub(crate) const TEMPLATE_OR_TARGET: CelRule = rule(
    "has(self.template) != has(self.target)",
    "give exactly one of spec.template (the objects Prism installs in each cluster) and spec.target.service (an existing Service whose traffic Prism shifts)",
);

pub(crate) const TARGET_NEEDS_GATEWAY_API: CelRule = rule_at(
    ".traffic.provider",
    "!has(self.target) || (has(self.traffic) && has(self.traffic.provider) && self.traffic.provider == 'gatewayAPI')",
    "spec.target.service shifts traffic between <service>-primary and <service>-canary through HTTPRoutes: set spec.traffic.provider: gatewayAPI",
);

pub(crate) const TARGET_HAS_TWO_VERSIONS: CelRule = rule_at(
    ".versions.max",
    "!has(self.target) || !has(self.versions) || !has(self.versions.max) || self.versions.max == 2",
    "spec.target.service keeps two versions, primary and canary: remove versions.max, or set it to 2",
);

pub(crate) const TARGET_STEPS_SET_NO_CAPACITY: CelRule = rule_at(
    ".strategy.steps",
    "!has(self.target) || !has(self.strategy.steps) || self.strategy.steps.all(s, !has(s.capacity))",
    "with spec.target.service Prism scales nothing (the Service's owner runs its pods): remove the step's capacity sub-step, and shift traffic only",
);

pub(crate) const MANIFESTS_OR_CHART: CelRule = rule(
    "(has(self.manifests) && size(self.manifests) > 0) != has(self.chart)",
    "give exactly one of spec.template.manifests (the objects, inline) and spec.template.chart (a Helm chart that renders them)",
);

pub(crate) const NO_INLINE_SECRETS: CelRule = rule_at(
    ".manifests",
    "!has(self.manifests) || self.manifests.all(m, m.kind != 'Secret')",
    "a template never inlines a Secret, since every Release keeps a copy of its template: create the Secret in each cluster and reference it by name",
);

// A Secret fails NO_INLINE_SECRETS alone, whose message says what to do instead.
pub(crate) const TEMPLATE_KINDS: CelRule = rule_at(
    ".manifests",
    "!has(self.manifests) || self.manifests.all(m, m.kind in ['Deployment', 'StatefulSet', 'DaemonSet', 'Service', 'ConfigMap', 'HorizontalPodAutoscaler', 'ServiceAccount', 'Role', 'RoleBinding', 'PodDisruptionBudget', 'Ingress', 'NetworkPolicy', 'Secret'])",
    "a template holds one workload (Deployment, StatefulSet or DaemonSet), its Service, ConfigMaps, a HorizontalPodAutoscaler, and ServiceAccount, Role, RoleBinding, PodDisruptionBudget, Ingress and NetworkPolicy objects: create other kinds in each cluster outside the Application",
);

// Only the kinds TEMPLATE_KINDS allows, so that an unknown kind fails that rule alone.
pub(crate) const TEMPLATE_API_VERSIONS: CelRule = rule_at(
    ".manifests",
    "!has(self.manifests) || self.manifests.all(m, m.kind in ['Deployment', 'StatefulSet', 'DaemonSet'] ? m.apiVersion == 'apps/v1' : m.kind == 'HorizontalPodAutoscaler' ? m.apiVersion == 'autoscaling/v2' : m.kind in ['Role', 'RoleBinding'] ? m.apiVersion == 'rbac.authorization.k8s.io/v1' : m.kind == 'PodDisruptionBudget' ? m.apiVersion == 'policy/v1' : m.kind in ['Ingress', 'NetworkPolicy'] ? m.apiVersion == 'networking.k8s.io/v1' : !(m.kind in ['Service', 'ConfigMap', 'ServiceAccount']) || m.apiVersion == 'v1')",
    "set each object's apiVersion to the one of its kind: apps/v1 for a Deployment, StatefulSet or DaemonSet, v1 for a Service, ConfigMap or ServiceAccount, autoscaling/v2 for a HorizontalPodAutoscaler, rbac.authorization.k8s.io/v1 for a Role or RoleBinding, policy/v1 for a PodDisruptionBudget, networking.k8s.io/v1 for an Ingress or NetworkPolicy",
);

pub(crate) const ONE_WORKLOAD: CelRule = rule_at(
    ".manifests",
    "!has(self.manifests) || self.manifests.exists_one(m, m.kind in ['Deployment', 'StatefulSet', 'DaemonSet'])",
    "a template needs exactly one workload, the Deployment, StatefulSet or DaemonSet Prism scales: keep one (give other workloads an Application of their own)",
);

pub(crate) const AT_MOST_ONE_HPA: CelRule = rule_at(
    ".manifests",
    "!has(self.manifests) || self.manifests.filter(m, m.kind == 'HorizontalPodAutoscaler').size() <= 1",
    "a template has at most one HorizontalPodAutoscaler, the one that scales its workload",
);

pub(crate) const GATEWAY_API_NEEDS_HTTP_ROUTE: CelRule = rule_at(
    ".httpRoutes",
    "self.provider != 'gatewayAPI' || (has(self.httpRoutes) && size(self.httpRoutes) > 0) || (has(self.grpcRoutes) && size(self.grpcRoutes) > 0)",
    "provider gatewayAPI shifts traffic in HTTPRoutes or GRPCRoutes: name them in httpRoutes or grpcRoutes, e.g. httpRoutes: [web]",
);

pub(crate) const ISTIO_NEEDS_VIRTUAL_SERVICE: CelRule = rule_at(
    ".virtualService",
    "self.provider != 'istio' || has(self.virtualService)",
    "provider istio shifts traffic in a VirtualService: name it in virtualService",
);

pub(crate) const ONE_CLUSTER_COUNT: CelRule = rule(
    "!has(self.regions) || !has(self.clusters)",
    "give clusters per region (regions) or a total count (clusters), not both",
);

pub(crate) const REGION_NAMES_UNIQUE: CelRule = rule(
    "self.all(r, self.exists_one(s, s.name == r.name))",
    "each region is listed once: add up the counts of the entries that share a name",
);

// Releases.

pub(crate) const IMMUTABLE: CelRule = rule(
    "self == oldSelf",
    "is immutable: a Release is a snapshot; change the Application to make a new Release",
);

pub(crate) const ABORT_IS_FINAL: CelRule = rule(
    "!oldSelf || self",
    "an aborted Release stays aborted: change the Application to make a new Release",
);

pub(crate) const TARGET_STEP_EXISTS: CelRule = rule_at(
    ".targetStep",
    "!has(self.targetStep) || self.targetStep <= size(self.strategy.steps)",
    "targetStep is the index of a step, or the number of steps to pass the last gate too (prism promote --full): it must not exceed the number of steps",
);

// Side versions.

pub(crate) const SIDE_ROUTE_NAMES_UNIQUE: CelRule = rule(
    "self.all(r, self.exists_one(s, s.name == r.name))",
    "route names must be unique within a side version: rename one of the routes that share a name",
);

pub(crate) const SIDE_APPLICATION_IMMUTABLE: CelRule = rule(
    "self == oldSelf",
    "is immutable: delete this SideVersion and make one for the other Application",
);

// DaemonSets: one pod per node, so a share is a share of the nodes, and no traffic is shifted.

/// True for an Application whose template holds no DaemonSet; `{}` is the rest of the rule.
macro_rules! unless_daemon_set {
    ($rule:literal) => {
        concat!(
            "!has(self.template) || !has(self.template.manifests) || !self.template.manifests.exists(m, m.kind == 'DaemonSet') || ",
            $rule
        )
    };
}

pub(crate) const DAEMON_SET_HAS_NO_TRAFFIC: CelRule = rule_at(
    ".traffic.provider",
    unless_daemon_set!(
        "(has(self.traffic) && has(self.traffic.provider) && self.traffic.provider == 'none')"
    ),
    "a DaemonSet runs one pod per node and serves no traffic that Prism shifts: set spec.traffic.provider: none, and give its steps capacity alone",
);

pub(crate) const DAEMON_SET_SHARES_OF_NODES: CelRule = rule_at(
    ".strategy.steps",
    unless_daemon_set!(
        "!has(self.strategy.steps) || self.strategy.steps.all(s, !has(s.capacity) || !has(s.capacity.contender) || string(s.capacity.contender).endsWith('%'))"
    ),
    "a DaemonSet runs one pod per node: give its share of the nodes as a percentage, e.g. \"33%\"",
);

/// The engine asks an incumbent to keep its capacity unless a step says otherwise, but a
/// DaemonSet's incumbent runs only on the nodes the contender does not: its share can only be
/// "0%", once the contender has every node, and it must be, or the last step is never reached.
pub(crate) const DAEMON_SET_INCUMBENT_FOLLOWS: CelRule = rule_at(
    ".strategy.steps",
    unless_daemon_set!(
        "!has(self.strategy.steps) || size(self.strategy.steps) == 0 || (self.strategy.steps.all(s, !has(s.capacity) || !has(s.capacity.incumbent) || (string(s.capacity.incumbent) == '0%' && has(s.capacity.contender) && string(s.capacity.contender) == '100%')) && has(self.strategy.steps[size(self.strategy.steps) - 1].capacity) && has(self.strategy.steps[size(self.strategy.steps) - 1].capacity.incumbent))"
    ),
    "a DaemonSet's incumbent runs on every node the contender does not: give capacity.incumbent only as \"0%\", on the last step, whose contender is \"100%\"",
);
