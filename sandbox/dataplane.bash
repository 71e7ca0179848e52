# The data plane of the sandbox's clusters: a network namespace per cluster, bridges, the pod
# server, Traefik and the Gateway API objects. Sourced by sandbox/sandbox, whose variables and
# helpers it uses; see "Data plane" in sandbox/README.md.
# shellcheck shell=bash

# The standard channel's CRDs from the sigs.k8s.io/gateway-api module, at the version Traefik's
# module graph pins (checked against go.sum); the ValidatingAdmissionPolicy beside them is not
# a CRD and is left out.
copy_gateway_api_crds() {
  local into=$1 version dir
  version="$(cd "$SANDBOX_DIR/traefik" && go_env go list -m -f '{{.Version}}' sigs.k8s.io/gateway-api)"
  [[ "$version" == "$GATEWAY_API_VERSION" ]] ||
    die "Traefik's module graph has sigs.k8s.io/gateway-api $version, the sandbox expects $GATEWAY_API_VERSION"
  dir="$(cd "$SANDBOX_DIR/traefik" && go_env go mod download -json "sigs.k8s.io/gateway-api@$version" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$dir/config/crd/standard" ]] || return 1
  mkdir -p "$into"
  cp "$dir"/config/crd/standard/gateway.networking.k8s.io_*.yaml "$into/"
  rm -f "$into"/*_vap_*.yaml
  chmod 644 "$into"/*.yaml
}

# Traefik's rights (its documented RBAC for the Gateway provider, bound to the static-token
# user traefik), the GatewayClass, and the cluster's one Gateway, which every test's HTTPRoute
# names in its parentRefs. Its listener's port is the web entrypoint's.
gateway_manifest() {
  cat <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: prism-sandbox:traefik
rules:
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [pods]
  verbs: [get]
- apiGroups: [""]
  resources: [services, secrets, configmaps]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
- apiGroups: [gateway.networking.k8s.io]
  resources: [gatewayclasses, gateways, httproutes, grpcroutes, tcproutes, tlsroutes, referencegrants, backendtlspolicies]
  verbs: [get, list, watch]
- apiGroups: [gateway.networking.k8s.io]
  resources: [gatewayclasses/status, gateways/status, httproutes/status, grpcroutes/status, tcproutes/status, tlsroutes/status, referencegrants/status, backendtlspolicies/status]
  verbs: [update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: prism-sandbox:traefik
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: prism-sandbox:traefik
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: traefik
---
apiVersion: v1
kind: Namespace
metadata:
  name: $GATEWAY_NAMESPACE
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: $GATEWAY_CLASS
spec:
  controllerName: traefik.io/gateway-controller
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: $GATEWAY_NAME
  namespace: $GATEWAY_NAMESPACE
spec:
  gatewayClassName: $GATEWAY_CLASS
  listeners:
  - name: http
    protocol: HTTP
    port: ${GATEWAY_ENTRYPOINT##*:}
    allowedRoutes:
      namespaces:
        from: All
EOF
}

# A network namespace per cluster, where its pod IPs (10.244.0.0/16, all local there) and its
# gateway live; nothing of that range is ever routed in the host's namespace.
ensure_netns() {
  local netns
  netns="$(netns_name "$1")"
  if [[ ! -e "/run/netns/$netns" ]]; then
    ((EUID == 0)) || die "creating network namespace $netns needs root"
    ip netns add "$netns" || die "creating network namespace $netns failed"
  fi
  ip -n "$netns" link set lo up || die "bringing up lo in $netns failed"
  ip -n "$netns" route replace local 10.244.0.0/16 dev lo ||
    die "routing 10.244.0.0/16 to lo in $netns failed"
  # ip netns exec mounts /etc/netns/<name>/hosts over /etc/hosts for what it runs.
  mkdir -p "/etc/netns/$netns"
  { echo "127.0.0.1 localhost"; gateway_hosts; } >"/etc/netns/$netns/hosts"
}

# The hosts lines of every cluster's gateway name.
gateway_hosts() {
  local i
  for ((i = 1; i <= GATEWAY_NAMES; i++)); do
    echo "$(cluster_ip "c$i") gateway.c$i.$GATEWAY_DOMAIN"
  done
}

# The gateway names in the host's /etc/hosts, between markers, so that the controller's probes
# (ExternalName targets) resolve them as the gateways do. Removed by down.
HOSTS_BEGIN="# prism sandbox: begin"
HOSTS_END="# prism sandbox: end"
ensure_host_gateway_names() {
  grep -qxF "$HOSTS_BEGIN" /etc/hosts 2>/dev/null && return
  { echo "$HOSTS_BEGIN"; gateway_hosts; echo "$HOSTS_END"; } >>/etc/hosts ||
    die "adding the gateways' names to /etc/hosts failed (the sandbox runs as root)"
}

forget_host_gateway_names() {
  grep -qxF "$HOSTS_BEGIN" /etc/hosts 2>/dev/null || return 0
  # In place: /etc/hosts may be a mount point, which a rename would not replace.
  local kept
  kept="$(sed "/^$HOSTS_BEGIN\$/,/^$HOSTS_END\$/d" /etc/hosts)"
  printf '%s\n' "$kept" >/etc/hosts
}

gateway_crds_installed() {
  local want have
  want="$(ls "$BIN/gateway-api-crds" | sed 's/^gateway.networking.k8s.io_\(.*\)\.yaml$/\1.gateway.networking.k8s.io '"$GATEWAY_API_VERSION"'/' | sort)"
  have="$(kubectl_for "$1" get crd -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.metadata.annotations.gateway\.networking\.k8s\.io/bundle-version}{"\n"}{end}' |
    grep '\.gateway\.networking\.k8s\.io ' | sort)"
  [[ "$want" == "$have" ]]
}

install_gateway_api() {
  local cluster=$1
  if ! gateway_crds_installed "$cluster"; then
    # Server-side: the CRDs are too large for kubectl's last-applied annotation.
    kubectl_for "$cluster" apply --server-side --force-conflicts --field-manager prism-sandbox \
      -f "$BIN/gateway-api-crds" >/dev/null || die "installing the Gateway API CRDs in $cluster failed"
    kubectl_for "$cluster" wait --for condition=Established --timeout "${START_TIMEOUT}s" \
      -f "$BIN/gateway-api-crds" >/dev/null || die "the Gateway API CRDs of $cluster were not established"
  fi
  # Retried: the API server's discovery can lag a moment behind CRDs that were just established.
  local deadline=$((SECONDS + START_TIMEOUT)) error
  until error="$(kubectl_for "$cluster" apply --server-side --force-conflicts --field-manager prism-sandbox \
    -f - <<<"$(gateway_manifest)" 2>&1 >/dev/null)"; do
    ((SECONDS < deadline)) || die "creating the Gateway of $cluster failed: $error"
    sleep 0.5
  done
}

# Runs a command inside the cluster's network namespace. Components start the same way
# (spelt out: setsid needs a program): ip netns exec execs the command without forking, so
# the recorded PID is the component's.
in_netns() {
  local cluster=$1
  shift
  ip netns exec "$(netns_name "$cluster")" "$@"
}

start_host_bridge() {
  local cluster=$1 run
  run="$(cluster_dir "$cluster")/run"
  # API server for the namespace's clients; the gateway for the host's.
  start_component "$cluster" host-bridge "$BIN/prism-dataplane" bridge \
    "unix:$run/api.sock=tcp:$(cluster_ip "$cluster"):6443" \
    "tcp:$(gateway_address "$cluster")=unix:$run/gateway.sock"
  wait_ready "$cluster" host-bridge test -S "$run/api.sock"
}

start_netns_bridge() {
  local cluster=$1 run
  run="$(cluster_dir "$cluster")/run"
  # The API server's own address inside the namespace, so its certificate verifies unchanged.
  # Every cluster's gateway at the address its name resolves to, as on the host.
  local peers=() i
  for ((i = 1; i <= GATEWAY_NAMES; i++)); do
    peers+=("tcp:$(gateway_address "c$i")=unix:$(cluster_dir "c$i")/run/gateway.sock")
  done
  start_component "$cluster" netns-bridge ip netns exec "$(netns_name "$cluster")" "$BIN/prism-dataplane" bridge \
    "tcp:$(cluster_ip "$cluster"):6443=unix:$run/api.sock" \
    "unix:$run/gateway.sock=tcp:$GATEWAY_ENTRYPOINT" \
    "${peers[@]}"
  wait_ready "$cluster" netns-bridge test -S "$run/gateway.sock"
}

pod_server_healthy() { curl -sf --max-time 5 --unix-socket "$(cluster_dir "$1")/run/pod-server.sock" http://pod-server/healthz | grep -qx ok; }

start_pod_server() {
  local cluster=$1 dir
  dir="$(cluster_dir "$cluster")"
  start_component "$cluster" pod-server ip netns exec "$(netns_name "$cluster")" "$BIN/prism-dataplane" pod-server \
    --cluster "$cluster" --kubeconfig "$dir/kubeconfig" --socket "$dir/run/pod-server.sock"
  wait_ready "$cluster" pod-server pod_server_healthy "$cluster"
}

traefik_pinged() { in_netns "$1" curl -sf --max-time 5 "http://$PING_ENTRYPOINT/ping" | grep -qx OK; }

# Accepted and Programmed, both for the Gateway's current generation.
gateway_programmed() {
  local out generation
  out="$(kubectl_for "$1" get gateway -n "$GATEWAY_NAMESPACE" "$GATEWAY_NAME" -o jsonpath='{.metadata.generation}{range .status.conditions[?(@.status=="True")]}{" "}{.type}{"@"}{.observedGeneration}{end}')"
  generation=${out%% *}
  [[ " $out " == *" Accepted@$generation "* && " $out " == *" Programmed@$generation "* ]]
}

start_traefik() {
  local cluster=$1 dir
  dir="$(cluster_dir "$cluster")"
  # No KUBECONFIG (or in-cluster variables): Traefik prefers them over its endpoint and token.
  # The providers' throttle stays at Traefik's default (2s), so measured lags are honest.
  start_component "$cluster" traefik ip netns exec "$(netns_name "$cluster")" \
    env -u KUBECONFIG -u KUBERNETES_SERVICE_HOST -u KUBERNETES_SERVICE_PORT "$BIN/traefik" \
    --global.checkNewVersion=false \
    --global.sendAnonymousUsage=false \
    --log.level=INFO \
    --log.noColor=true \
    --entryPoints.web.address="$GATEWAY_ENTRYPOINT" \
    --entryPoints.traefik.address="$PING_ENTRYPOINT" \
    --ping=true \
    --providers.kubernetesgateway=true \
    --providers.kubernetesgateway.endpoint="https://$(cluster_ip "$cluster"):6443" \
    --providers.kubernetesgateway.token="$dir/pki/traefik-token" \
    --providers.kubernetesgateway.certAuthFilePath="$dir/pki/ca.crt"
  wait_ready "$cluster" traefik traefik_pinged "$cluster"
}

ensure_dataplane() {
  local cluster=$1 dir
  dir="$(cluster_dir "$cluster")"
  ensure_netns "$cluster"
  install_gateway_api "$cluster"
  component_pid "$cluster" host-bridge >/dev/null || start_host_bridge "$cluster"
  component_pid "$cluster" netns-bridge >/dev/null || start_netns_bridge "$cluster"
  component_pid "$cluster" pod-server >/dev/null || start_pod_server "$cluster"
  component_pid "$cluster" traefik >/dev/null || start_traefik "$cluster"
  wait_ready "$cluster" pod-server pod_server_healthy "$cluster"
  wait_ready "$cluster" traefik traefik_pinged "$cluster"
  wait_ready "$cluster" traefik gateway_programmed "$cluster"
  echo "$GATEWAY_NAMESPACE/$GATEWAY_NAME" >"$dir/gateway"
  gateway_address "$cluster" >"$dir/gateway-address"
}

# Whatever still runs in the namespace is ours (the sandbox made it): killed by PID.
delete_netns() {
  local netns pids
  netns="$(netns_name "$1")"
  [[ -e "/run/netns/$netns" ]] || return 0
  mapfile -t pids < <(ip netns pids "$netns" 2>/dev/null)
  if ((${#pids[@]})); then
    log "killing processes left in $netns: ${pids[*]}"
    kill -KILL "${pids[@]}" 2>/dev/null || true
  fi
  ip netns delete "$netns" || log "could not delete network namespace $netns"
  rm -rf "/etc/netns/$netns"
}
