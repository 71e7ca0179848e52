// Package ext stands in for Traefik's dynamic-configuration extension module, which the
// module proxy does not serve (it is a nested module of the traefik repository).
package ext

// HTTP extends dynamic.HTTP (empty in open-source Traefik).
type HTTP struct{}

// Router extends dynamic.Router (empty in open-source Traefik).
type Router struct{}
