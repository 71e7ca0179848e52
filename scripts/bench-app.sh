# What the request-count benchmarks roll out (bench-api-requests.sh on one cluster,
# bench-fleet-requests.sh on three): the Application $APP in $NS running image $1, 4 replicas
# behind one Service, in three steps each held by a short pause, so that the rollout advances on
# its own. $2, if given, is one more line of the spec (the fleet's schedule).
bench_application() {
  cat <<EOF
apiVersion: prism.dev/v1alpha1
kind: Application
metadata: {name: $APP, namespace: $NS}
spec:
  template:
    manifests:
      - apiVersion: apps/v1
        kind: Deployment
        metadata: {name: $APP}
        spec:
          replicas: 4
          selector: {matchLabels: {app: $APP}}
          template:
            metadata: {labels: {app: $APP}}
            spec: {containers: [{name: $APP, image: "$1"}]}
      - apiVersion: v1
        kind: Service
        metadata: {name: $APP}
        spec: {selector: {app: $APP}, ports: [{port: 80}]}
  ${2:-}
  strategy:
    steps:
      - {name: canary, capacity: {contender: "25%"}, traffic: {contender: 25}, gate: {pause: 5s}}
      - {name: half, capacity: {contender: "50%", incumbent: "50%"}, traffic: {contender: 50}, gate: {pause: 5s}}
      - {name: full, capacity: {contender: "100%", incumbent: "0%"}, traffic: {contender: 100}, gate: {pause: 5s}}
EOF
}
