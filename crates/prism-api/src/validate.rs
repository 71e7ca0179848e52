//! Field-level validation, pure: every CEL rule of the CRD schemas again (so that `prism plan` and
//! the controller give the API server's message without one), and what CEL cannot check in one
//! object: the template's objects (`manifests.rs`: strictly typed, and the values Kubernetes'
//! own validation refuses), and what the application's traffic provider can do.
//!
//! The rules that need the state each step leaves in each cluster (traffic only to roles with
//! pods, a contender complete everywhere at the end) are the engine's:
//! `prism_engine::check_pipeline`, which reports in [`ValidationError`]s too.
//!
//! Every error is collected, not just the first.

use std::fmt;

use serde::Serialize;

use crate::application::{ApplicationSpec, Manifest, Schedule, TrafficProvider, fill_version_name};
use crate::chart::WorkloadKind;
use crate::rules::{self, CelRule};
use crate::strategy::{
    MatchType, Metric, Pipeline, Route, RouteMatch, RouteTo, Share, Step, TrafficStep, Waves,
    Webhook, Webhooks,
};

mod deployment;
mod manifests;
mod stateful_set;
pub mod syntax;

/// One thing wrong with a spec.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message} (value: {value})")]
pub struct ValidationError {
    /// Where, e.g. `spec.strategy.steps[2].traffic.contender`.
    pub path: String,
    /// The value found there, as JSON.
    pub value: String,
    /// What is wrong, and the fix.
    pub message: String,
}

impl ValidationError {
    /// The error at `path`, showing `value` as JSON.
    pub fn new(
        path: impl Into<String>,
        value: &impl Serialize,
        message: impl Into<String>,
    ) -> ValidationError {
        ValidationError {
            path: path.into(),
            value: serde_json::to_string(value).unwrap_or_default(),
            message: message.into(),
        }
    }
}

/// Several errors, in the order they were found, shown one a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Errors<E>(pub Vec<E>);

impl<E: fmt::Display> fmt::Display for Errors<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for Errors<E> {}

/// Every error a spec has, in the order of its fields.
pub type ValidationErrors = Errors<ValidationError>;

/// Whether the application a pipeline rolls out has traffic to shift.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppTraffic {
    /// A Strategy checked on its own: it may serve applications with or without traffic.
    Unknown,
    /// The application's traffic provider is `none`.
    None,
    /// The application's traffic is shifted by this provider (never `none`).
    Shifted(TrafficProvider),
}

impl AppTraffic {
    pub fn of(spec: &ApplicationSpec) -> AppTraffic {
        if spec.has_traffic() {
            AppTraffic::Shifted(spec.traffic.provider)
        } else {
            AppTraffic::None
        }
    }
}

/// Checks an Application's spec, its inline strategy included. A strategy it names is checked
/// with [`pipeline`], given [`AppTraffic::of`] this spec.
pub fn application(spec: &ApplicationSpec) -> Result<(), ValidationErrors> {
    let mut check = Checker::default();
    check.application(spec);
    check.finish()
}

/// Checks a pipeline whose steps are at `path` (e.g. `spec.steps` in a Strategy) for an
/// application with `traffic`; its waves are beside the steps (`spec.waves`).
pub fn pipeline(
    pipeline: &Pipeline,
    path: &str,
    traffic: AppTraffic,
) -> Result<(), ValidationErrors> {
    let mut check = Checker::default();
    check.steps(&pipeline.steps, path, traffic);
    let pipeline_path = path.strip_suffix("steps").unwrap_or_default();
    if let Some(waves) = &pipeline.waves {
        check.waves(waves, &format!("{pipeline_path}waves"));
    }
    if let Some(webhooks) = &pipeline.webhooks {
        check.webhooks(webhooks, &format!("{pipeline_path}webhooks"));
    }
    check.finish()
}

/// Checks a named strategy's steps for the kind of workload the application runs (a
/// DaemonSet's shares are of its nodes); `path` as [`pipeline`]'s.
pub fn workload_steps(
    steps: &[Step],
    path: &str,
    kind: WorkloadKind,
) -> Result<(), ValidationErrors> {
    let mut check = Checker::default();
    check.workload_steps(steps, path, kind);
    check.finish()
}

const MAX_STEPS: usize = 64;
const MAX_ROUTES: usize = 16;
const MAX_METRICS: usize = 16;
const MAX_MANIFESTS: usize = 32;
const MAX_VERSIONS: u32 = 16;
const MAX_REVISION_HISTORY: u32 = 100;
/// 63 less `-primary`.
const MAX_TARGET_NAME: usize = 55;
/// The objects a chart rendered for `spec` (`spec.template.chart`), checked as inline manifests
/// are: the controller's check before it makes a Release of a chart.
pub fn rendered(spec: &ApplicationSpec, manifests: &[Manifest]) -> Result<(), ValidationErrors> {
    let mut checker = Checker::default();
    checker.manifests(manifests, spec, "spec.template.chart");
    checker.finish()
}

/// The kinds a template may hold (besides a Secret, which has a rule of its own):
/// [`rules::TEMPLATE_KINDS`].
const TEMPLATE_KINDS: [&str; 12] = [
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "Service",
    "ConfigMap",
    "HorizontalPodAutoscaler",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "PodDisruptionBudget",
    "Ingress",
    "NetworkPolicy",
];

#[derive(Default)]
struct Checker {
    errors: Vec<ValidationError>,
}

impl Checker {
    fn finish(self) -> Result<(), ValidationErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Errors(self.errors))
        }
    }

    fn fail(
        &mut self,
        path: impl Into<String>,
        value: &impl Serialize,
        message: impl Into<String>,
    ) {
        self.errors.push(ValidationError::new(path, value, message));
    }

    /// Reports `rule` at `path` (the node the rule is on, plus the rule's field) unless `holds`.
    fn rule(&mut self, holds: bool, path: &str, value: &impl Serialize, rule: CelRule) {
        if !holds {
            self.fail(
                format!("{path}{}", rule.field.unwrap_or("")),
                value,
                rule.message,
            );
        }
    }

    fn application(&mut self, spec: &ApplicationSpec) {
        if !spec.template.manifests.is_empty() {
            self.manifests(&spec.template.manifests, spec, "spec.template.manifests");
        }
        self.rule(
            spec.template.manifests.is_empty() || spec.template.chart.is_none(),
            "spec.template",
            &spec.template.chart,
            rules::MANIFESTS_OR_CHART,
        );
        self.rule(
            spec.template.is_empty() == spec.target.is_some(),
            "spec",
            &spec.target,
            rules::TEMPLATE_OR_TARGET,
        );
        self.target(spec);
        self.traffic_policy(spec);

        let strategy = &spec.strategy;
        let given = [
            strategy.name.is_some(),
            strategy.cluster_strategy_name.is_some(),
            strategy.steps.is_some(),
        ];
        self.rule(
            given.iter().filter(|g| **g).count() == 1,
            "spec.strategy",
            strategy,
            rules::ONE_STRATEGY,
        );
        if let Some(steps) = &strategy.steps {
            self.steps(steps, "spec.strategy.steps", AppTraffic::of(spec));
            self.workload_steps(steps, "spec.strategy.steps", spec.template.workload_kind());
            if spec.template.workload_kind() == WorkloadKind::StatefulSet {
                let replicas = spec.template.replicas().unwrap_or(1);
                self.in_place_steps(steps, "spec.strategy.steps", replicas);
            }
        }
        self.rule(
            spec.template.workload_kind() != WorkloadKind::DaemonSet || !spec.has_traffic(),
            "spec",
            &spec.traffic.provider,
            rules::DAEMON_SET_HAS_NO_TRAFFIC,
        );
        if let Some(waves) = &strategy.waves {
            self.waves(waves, "spec.strategy.waves");
        }
        if let Some(webhooks) = &strategy.webhooks {
            self.webhooks(webhooks, "spec.strategy.webhooks");
        }

        self.schedule(&spec.schedule);

        let max = spec.versions.max;
        if !(2..=MAX_VERSIONS).contains(&max) {
            self.fail(
                "spec.versions.max",
                &max,
                format!("max counts the contender and the incumbent, so it is at least 2 (above 2 for a rainbow deployment), and at most {MAX_VERSIONS}"),
            );
        }
        if let Some(name) = &spec.versions.name {
            self.version_name(name);
        }
        if spec.revision_history_limit > MAX_REVISION_HISTORY {
            self.fail(
                "spec.revisionHistoryLimit",
                &spec.revision_history_limit,
                format!("revisionHistoryLimit is at most {MAX_REVISION_HISTORY}"),
            );
        }
    }

    /// The rules of an Application that targets a Service.
    fn target(&mut self, spec: &ApplicationSpec) {
        let Some(target) = &spec.target else {
            return;
        };
        self.rule(
            spec.traffic.provider == TrafficProvider::GatewayApi,
            "spec",
            &spec.traffic.provider,
            rules::TARGET_NEEDS_GATEWAY_API,
        );
        self.rule(
            spec.versions.max == 2,
            "spec",
            &spec.versions.max,
            rules::TARGET_HAS_TWO_VERSIONS,
        );
        if let Some(steps) = &spec.strategy.steps {
            self.rule(
                steps.iter().all(|step| step.capacity.is_none()),
                "spec",
                steps,
                rules::TARGET_STEPS_SET_NO_CAPACITY,
            );
        }
        let name = &target.service.name;
        if !syntax::is_dns_label(name) || name.len() > MAX_TARGET_NAME {
            self.fail(
                "spec.target.service.name",
                name,
                format!("the name of a Service: a DNS label of at most {MAX_TARGET_NAME} characters (so that <name>-primary is one too)"),
            );
        }
    }

    fn version_name(&mut self, name: &str) {
        let path = "spec.versions.name";
        self.rule(
            name.contains("{revision}"),
            path,
            &name,
            rules::VERSION_NAME_HAS_REVISION,
        );
        self.rule(
            syntax::is_dns_label(&fill_version_name(name, "a", 1)),
            path,
            &name,
            rules::VERSION_NAME_IS_DNS_LABEL,
        );
    }

    fn schedule(&mut self, schedule: &Schedule) {
        self.rule(
            schedule.regions.is_none() || schedule.clusters.is_none(),
            "spec.schedule",
            schedule,
            rules::ONE_CLUSTER_COUNT,
        );
        if schedule.clusters == Some(0) {
            self.fail(
                "spec.schedule.clusters",
                &0,
                "a schedule chooses at least 1 cluster: omit clusters to choose every cluster",
            );
        }
        if let Some(regions) = &schedule.regions {
            if regions.is_empty() {
                self.fail(
                    "spec.schedule.regions",
                    regions,
                    "regions lists at least one region: omit it to choose clusters in every region",
                );
            }
            for (i, region) in regions.iter().enumerate() {
                let path = format!("spec.schedule.regions[{i}]");
                if region.name.is_empty() {
                    self.fail(
                        format!("{path}.name"),
                        &region.name,
                        "a region needs a name, as in a Cluster's spec.region",
                    );
                }
                let first = regions.iter().position(|r| r.name == region.name) == Some(i);
                self.rule(
                    first,
                    &format!("{path}.name"),
                    &region.name,
                    rules::REGION_NAMES_UNIQUE,
                );
                if region.clusters == 0 {
                    self.fail(format!("{path}.clusters"), &0, "a region entry chooses at least 1 cluster: remove the entry to leave the region out");
                }
            }
        }
    }

    fn traffic_policy(&mut self, spec: &ApplicationSpec) {
        let traffic = &spec.traffic;
        let path = "spec.traffic";
        let provider = traffic.provider;
        self.rule(
            provider != TrafficProvider::GatewayApi
                || !traffic.http_routes.is_empty()
                || !traffic.grpc_routes.is_empty(),
            path,
            &traffic.http_routes,
            rules::GATEWAY_API_NEEDS_HTTP_ROUTE,
        );
        self.rule(
            provider != TrafficProvider::Istio || traffic.virtual_service.is_some(),
            path,
            &traffic.virtual_service,
            rules::ISTIO_NEEDS_VIRTUAL_SERVICE,
        );

        // A target's Service is the one whose traffic is shifted.
        if !spec.has_traffic() || spec.target.is_some() {
            return;
        }
        let services: Vec<&str> = spec
            .template
            .of_kind("Service")
            .filter_map(Manifest::name)
            .collect();
        match &traffic.service {
            Some(service) if !services.contains(&service.as_str()) => self.fail(
                "spec.traffic.service",
                service,
                format!("names no Service of spec.template.manifests: choose one of {services:?}"),
            ),
            None if services.len() > 1 => self.fail(
                "spec.traffic.service",
                &None::<()>,
                format!("the template has several Services: name the one whose traffic Prism shifts, one of {services:?}"),
            ),
            _ => {}
        }
    }

    fn steps(&mut self, steps: &[Step], path: &str, traffic: AppTraffic) {
        self.rule(!steps.is_empty(), path, &steps, rules::STEPS_NOT_EMPTY);
        if steps.len() > MAX_STEPS {
            self.fail(
                path,
                &steps.len(),
                format!("a strategy has at most {MAX_STEPS} steps"),
            );
        }
        for (i, step) in steps.iter().enumerate() {
            let step_path = format!("{path}[{i}]");
            let first = steps.iter().position(|s| s.name == step.name) == Some(i);
            self.rule(
                first,
                &format!("{step_path}.name"),
                &step.name,
                rules::STEP_NAMES_UNIQUE,
            );
            self.step(step, &step_path);
            if let Some(step_traffic) = &step.traffic {
                self.traffic_for_provider(step_traffic, &format!("{step_path}.traffic"), traffic);
            }
        }
    }

    /// A DaemonSet runs one pod per node: its contender's share is a percentage of the nodes,
    /// and its incumbent runs on the others, so it is given a share only to leave: "0%", on the
    /// last step, with the contender at "100%".
    fn workload_steps(&mut self, steps: &[Step], path: &str, kind: WorkloadKind) {
        if kind != WorkloadKind::DaemonSet {
            return;
        }
        let incumbent_rule = rules::DAEMON_SET_INCUMBENT_FOLLOWS;
        for (i, step) in steps.iter().enumerate() {
            let capacity_path = format!("{path}[{i}].capacity");
            let capacity = step.capacity.as_ref();
            let contender = capacity.and_then(|capacity| capacity.contender);
            let incumbent = capacity.and_then(|capacity| capacity.incumbent);
            if let Some(share @ Share::Replicas(_)) = contender {
                let rule = rules::DAEMON_SET_SHARES_OF_NODES;
                self.fail(format!("{capacity_path}.contender"), &share, rule.message);
            }
            let leaves =
                incumbent == Some(Share::Percent(0)) && contender == Some(Share::Percent(100));
            let last = i + 1 == steps.len();
            if incumbent.is_some() && !leaves || last && incumbent.is_none() {
                self.fail(
                    format!("{capacity_path}.incumbent"),
                    &incumbent,
                    incumbent_rule.message,
                );
            }
        }
    }

    fn waves(&mut self, waves: &Waves, path: &str) {
        if waves.max_concurrency == Some(0) {
            self.fail(
                format!("{path}.maxConcurrency"),
                &0,
                "maxConcurrency is at least 1: the number of clusters that move towards a step at once",
            );
        }
    }

    fn webhooks(&mut self, webhooks: &Webhooks, path: &str) {
        let kinds = [
            ("preRollout", &webhooks.pre_rollout),
            ("postRollout", &webhooks.post_rollout),
            ("rollback", &webhooks.rollback),
            ("event", &webhooks.event),
        ];
        for (kind, hooks) in kinds {
            for (k, webhook) in hooks.iter().enumerate() {
                self.webhook(&format!("{path}.{kind}[{k}]"), webhook);
            }
        }
    }

    fn webhook(&mut self, path: &str, webhook: &Webhook) {
        let http = webhook.url.starts_with("http://") || webhook.url.starts_with("https://");
        self.rule(http, path, &webhook.url, rules::WEBHOOK_URL_IS_HTTP);
    }

    /// A metric check's own fields, or a metric template's.
    fn metric(&mut self, path: &str, metric: &Metric) {
        if let Some(threshold) = &metric.threshold {
            let path = format!("{path}.threshold");
            self.rule(
                threshold.min.is_some() || threshold.max.is_some(),
                &path,
                threshold,
                rules::THRESHOLD_HAS_BOUND,
            );
            let ordered = threshold
                .min
                .zip(threshold.max)
                .is_none_or(|(min, max)| min <= max);
            self.rule(
                ordered,
                &path,
                threshold,
                rules::THRESHOLD_MIN_NOT_ABOVE_MAX,
            );
        }
        if let Some(prometheus) = &metric.prometheus {
            let http = prometheus.address.starts_with("http://")
                || prometheus.address.starts_with("https://");
            self.rule(
                http,
                &format!("{path}.prometheus"),
                &prometheus.address,
                rules::PROMETHEUS_ADDRESS_IS_HTTP,
            );
        }
    }

    fn step(&mut self, step: &Step, path: &str) {
        self.rule(
            syntax::is_dns_label(&step.name),
            &format!("{path}.name"),
            &step.name,
            rules::STEP_NAME_IS_DNS_LABEL,
        );
        let surges = step
            .capacity
            .as_ref()
            .is_some_and(|c| c.max_surge.is_some());
        self.rule(
            !surges || step.traffic.is_none(),
            path,
            &step.traffic,
            rules::SURGE_STEP_KEEPS_TRAFFIC,
        );

        if let Some(capacity) = &step.capacity
            && capacity.max_surge == Some(0)
        {
            self.fail(
                format!("{path}.capacity.maxSurge"),
                &0,
                "maxSurge is at least 1: the number of pods a step may add above the template's replicas",
            );
        }
        if let Some(traffic) = &step.traffic {
            let path = format!("{path}.traffic");
            for (role, weight) in [
                ("contender", traffic.contender),
                ("incumbent", traffic.incumbent),
            ] {
                if let Some(weight) = weight.filter(|w| *w > 100) {
                    self.fail(
                        format!("{path}.{role}"),
                        &weight,
                        "a weight is a percentage of the default route, from 0 to 100",
                    );
                }
            }
            let sum = traffic.contender.zip(traffic.incumbent).map(|(c, i)| c + i);
            self.rule(
                sum.is_none_or(|sum| sum == 100),
                &path,
                traffic,
                rules::WEIGHTS_SUM_TO_100,
            );
            if let Some(routes) = &traffic.routes {
                self.routes(routes, &format!("{path}.routes"));
            }
        }
        if let Some(analysis) = &step.analysis {
            let path = format!("{path}.analysis");
            let metrics = &analysis.metrics;
            if metrics.is_empty() {
                self.fail(
                    format!("{path}.metrics"),
                    metrics,
                    "an analysis needs at least one metric: add one, or remove the analysis",
                );
            }
            if metrics.len() > MAX_METRICS {
                self.fail(
                    format!("{path}.metrics"),
                    &metrics.len(),
                    format!("an analysis has at most {MAX_METRICS} metrics"),
                );
            }
            let thresholds_judged = analysis
                .judge
                .is_none_or(|j| j == crate::strategy::Judge::Threshold);
            self.rule(
                !thresholds_judged
                    || metrics
                        .iter()
                        .all(|m| m.metric.threshold.is_some() || m.template_ref.is_some()),
                &path,
                &analysis.judge,
                rules::THRESHOLD_JUDGE_NEEDS_THRESHOLDS,
            );
            if analysis.count == Some(0) {
                self.fail(format!("{path}.count"), &0, "count is at least 1: the measurements that must pass before the step may advance");
            }
            for (k, metric) in metrics.iter().enumerate() {
                let path = format!("{path}.metrics[{k}]");
                if metric.name.is_empty() {
                    self.fail(
                        format!("{path}.name"),
                        &metric.name,
                        "a metric needs a name",
                    );
                }
                let first = metrics.iter().position(|m| m.name == metric.name) == Some(k);
                self.rule(
                    first,
                    &format!("{path}.name"),
                    &metric.name,
                    rules::METRIC_NAMES_UNIQUE,
                );
                self.rule(
                    metric.template_ref.is_some() != metric.metric.query.is_some(),
                    &path,
                    &metric.name,
                    rules::ONE_METRIC_SOURCE,
                );
                self.metric(&path, &metric.metric);
            }
            if let Some(score) = &analysis.score {
                self.rule(
                    score.marginal <= score.pass,
                    &format!("{path}.score"),
                    score,
                    rules::SCORE_MARGINAL_NOT_ABOVE_PASS,
                );
            }
        }
        if let Some(gate) = &step.gate {
            let path = format!("{path}.gate");
            let kinds = [gate.manual, gate.pause.is_some(), gate.webhook.is_some()];
            self.rule(
                kinds.iter().filter(|k| **k).count() <= 1,
                &path,
                gate,
                rules::ONE_GATE,
            );
            if let Some(webhook) = &gate.webhook {
                self.webhook(&format!("{path}.webhook"), webhook);
            }
        }
        if let Some(scope) = &step.clusters {
            let path = format!("{path}.clusters");
            let given = [
                scope.first.is_some(),
                scope.names.is_some(),
                scope.region.is_some(),
            ];
            self.rule(
                given.iter().filter(|g| **g).count() <= 1,
                &path,
                scope,
                rules::ONE_CLUSTER_SCOPE,
            );
            if scope.first == Some(0) {
                self.fail(format!("{path}.first"), &0, "first is at least 1: the number of clusters, in schedule order, the step changes");
            }
            if scope.names.as_ref().is_some_and(Vec::is_empty) {
                self.fail(
                    format!("{path}.names"),
                    &scope.names,
                    "names lists at least one cluster: remove it to change every cluster",
                );
            }
        }
    }

    /// What the application's traffic provider can do with a step's traffic sub-step at `path`.
    fn traffic_for_provider(&mut self, traffic: &TrafficStep, path: &str, app: AppTraffic) {
        let provider = match app {
            AppTraffic::Unknown => return,
            AppTraffic::None => {
                self.fail(
                    path,
                    traffic,
                    rules::NO_TRAFFIC_STEPS_WITHOUT_PROVIDER.message,
                );
                return;
            }
            AppTraffic::Shifted(provider) => provider,
        };
        let switch = |weight: Option<u32>| weight.is_none_or(|w| w == 0 || w == 100);
        if provider == TrafficProvider::ServiceSelector
            && !(switch(traffic.contender) && switch(traffic.incumbent))
        {
            self.fail(path, traffic, rules::SELECTOR_SWITCH_WEIGHTS.message);
        }
        let routes = traffic.routes.as_deref().unwrap_or_default();
        let matches_requests = matches!(
            provider,
            TrafficProvider::GatewayApi | TrafficProvider::Istio
        );
        if !routes.is_empty() && !matches_requests {
            self.fail(
                format!("{path}.routes"),
                &provider,
                rules::ROUTES_NEED_MATCHING_PROVIDER.message,
            );
        }
    }

    fn routes(&mut self, routes: &[Route], path: &str) {
        if routes.len() > MAX_ROUTES {
            self.fail(
                path,
                &routes.len(),
                format!("a step has at most {MAX_ROUTES} routes"),
            );
        }
        for (j, route) in routes.iter().enumerate() {
            let path = format!("{path}[{j}]");
            if route.name.is_empty() {
                self.fail(format!("{path}.name"), &route.name, "a route needs a name");
            }
            let first = routes.iter().position(|r| r.name == route.name) == Some(j);
            self.rule(
                first,
                &format!("{path}.name"),
                &route.name,
                rules::ROUTE_NAMES_UNIQUE,
            );
            let placeholder = has_version_placeholder(&route.matches);
            self.rule(
                route.to != RouteTo::Each || placeholder,
                &path,
                &route.matches,
                rules::EACH_ROUTE_HAS_PLACEHOLDER,
            );
            self.rule(
                route.to == RouteTo::Each || !placeholder,
                &path,
                &route.matches,
                rules::PLACEHOLDER_ONLY_IN_EACH_ROUTE,
            );

            let matches = &route.matches;
            let given = [
                matches.header.is_some(),
                matches.path_prefix.is_some(),
                matches.query_param.is_some(),
                matches.subdomain.is_some(),
            ];
            let match_path = format!("{path}.match");
            self.rule(
                given.iter().filter(|g| **g).count() == 1,
                &match_path,
                matches,
                rules::ONE_ROUTE_MATCH,
            );
            self.rule(
                matches
                    .path_prefix
                    .as_ref()
                    .is_none_or(|p| p.starts_with('/')),
                &match_path,
                &matches.path_prefix,
                rules::PATH_PREFIX_IS_ABSOLUTE,
            );
            if let Some(header) = &matches.header
                && header.name.is_empty()
            {
                self.fail(
                    format!("{match_path}.header.name"),
                    &header.name,
                    "a header match needs the header's name",
                );
            }
            if let Some(param) = &matches.query_param
                && param.name.is_empty()
            {
                self.fail(
                    format!("{match_path}.queryParam.name"),
                    &param.name,
                    "a query parameter match needs the parameter's name",
                );
            }
            let regexes = [
                matches
                    .header
                    .as_ref()
                    .map(|h| ("header", h.match_type, &h.value)),
                matches
                    .query_param
                    .as_ref()
                    .map(|q| ("queryParam", q.match_type, &q.value)),
            ];
            for (field, _, value) in regexes
                .into_iter()
                .flatten()
                .filter(|(_, match_type, _)| *match_type == MatchType::RegularExpression)
            {
                if let Err(error) = regular_expression(value) {
                    self.fail(
                        format!("{match_path}.{field}.value"),
                        value,
                        format!("not a regular expression ({error}): write one in RE2 syntax, as the gateways read it, or set type: Exact"),
                    );
                }
            }
        }
    }
}

/// The rule's message reported at a path that already names the field.
fn rule_without_field(rule: CelRule) -> CelRule {
    CelRule {
        field: None,
        ..rule
    }
}

/// Whether `value` parses as a regular expression once `{version}` is filled in (with a name
/// such as releases have, which needs no escaping), reporting the parser's one-line reason.
fn regular_expression(value: &str) -> Result<(), String> {
    regex_syntax::Parser::new()
        .parse(&value.replace("{version}", "v1"))
        .map(drop)
        .map_err(|error| match error {
            regex_syntax::Error::Parse(error) => error.kind().to_string(),
            regex_syntax::Error::Translate(error) => error.kind().to_string(),
            other => other.to_string(),
        })
}

fn has_version_placeholder(matches: &RouteMatch) -> bool {
    const PLACEHOLDER: &str = "{version}";
    matches
        .header
        .as_ref()
        .is_some_and(|h| h.value.contains(PLACEHOLDER))
        || matches
            .path_prefix
            .as_ref()
            .is_some_and(|p| p.contains(PLACEHOLDER))
        || matches
            .query_param
            .as_ref()
            .is_some_and(|q| q.value.contains(PLACEHOLDER))
        || matches
            .subdomain
            .as_ref()
            .is_some_and(|s| s.contains(PLACEHOLDER))
}
