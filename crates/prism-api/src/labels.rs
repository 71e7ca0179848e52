//! The labels and annotations Prism puts on the objects it writes, and the field manager it
//! writes them with: one place for the controller's modules, its providers and the CLI, so that
//! none of them borrows another's constants.

/// The one field manager of every write the controller makes, and of `prism cluster join`'s.
pub const FIELD_MANAGER: &str = "prism";
/// On what Prism makes for itself rather than for an application: the namespaces it creates in
/// application clusters, and what `prism cluster join` installs.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "prism");
/// The label naming the Application a Release (and later each installed object) belongs to.
pub const APP_LABEL: &str = "prism.dev/app";
/// The label naming the Release an object belongs to.
pub const RELEASE_LABEL: &str = "prism.dev/release";
/// On a version's Deployment: the capacity Prism set, `3` or, when autoscaled, `2-10`.
pub const CAPACITY_ANNOTATION: &str = "prism.dev/capacity";
/// On the application's Service: the Release whose template it was built from.
pub const SOURCE_ANNOTATION: &str = "prism.dev/template-of";
/// The label of the pods that receive traffic (the `podLabels` provider).
pub const TRAFFIC_LABEL: &str = "prism.dev/traffic";
/// Its value on a pod that receives traffic.
pub const TRAFFIC_ENABLED: &str = "enabled";
/// On the Service (the `podLabels` provider): the weights as set, `web-2=75,web-3=25`.
pub const WEIGHTS_ANNOTATION: &str = "prism.dev/weights";
/// On the kubeconfig Secret `prism cluster join` writes: the Cluster it is for.
pub const CLUSTER_LABEL: &str = "prism.dev/cluster";
/// The prefix of the names of the rules Prism manages in a user's HTTPRoute (the `gatewayAPI`
/// provider): such rules are rebuilt on every write, so the prefix is reserved.
pub const MANAGED_RULE_PREFIX: &str = "prism-";
/// On a user's HTTPRoute (the `gatewayAPI` provider): the routes Prism wrote into its rules, as
/// JSON, so that the routes it is set to serve are read back without parsing the rules.
pub const ROUTES_ANNOTATION: &str = "prism.dev/routes";
/// On a Release (`prism pin`): the version never retires by `versions.max` or `versions.ttl`.
/// An annotation rather than a spec field: a Release's spec is an immutable snapshot, and a pin
/// is a person's note that comes and goes (`kubectl annotate` works as well), changing nothing
/// the Release runs.
pub const PINNED_ANNOTATION: &str = "prism.dev/pinned";
/// On a Release (`prism retire`): a person asks that the retained version retire now. Its value
/// is when they asked.
pub const RETIRE_ANNOTATION: &str = "prism.dev/retire";
/// On a side version's Release: the SideVersion it runs for. The Release is owned by the
/// Application, not by the SideVersion, so that deleting the SideVersion retires it in order
/// (routes leave, drain, scale to 0, delete) rather than have the garbage collector take it at once.
pub const SIDE_VERSION_LABEL: &str = "prism.dev/side-version";
/// On a copy of a Service target of type ExternalName (a Service without a selector): the name
/// its EndpointSlice points at.
pub const EXTERNAL_NAME_ANNOTATION: &str = "prism.dev/external-name";
/// On the EndpointSlice Prism keeps for such a copy: what it was written with (address, port,
/// readiness), so that an unchanged one is not written again.
pub const ENDPOINT_ANNOTATION: &str = "prism.dev/endpoint";
/// `endpointslice.kubernetes.io/managed-by` on that EndpointSlice, so that the cluster's
/// EndpointSlice controllers leave it alone.
pub const ENDPOINT_SLICE_MANAGER: (&str, &str) =
    ("endpointslice.kubernetes.io/managed-by", "prism.dev");
