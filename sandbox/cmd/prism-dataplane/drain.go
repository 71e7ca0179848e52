package main

import (
	"time"

	corev1 "k8s.io/api/core/v1"
)

// drainPolicy says how long a pod keeps serving after it stopped being Ready or disappeared.
//
// KWOK deletes a pod the moment it is marked for deletion, and the pod server sees that at
// once; a real pod keeps serving through its termination grace period while the EndpointSlice
// controller, and then the gateway, take its endpoint out. So a pod keeps its address until
// no EndpointSlice has listed it as ready for `margin` (the gateway's reaction time: Traefik
// applies a new configuration at most every 2 s), and never longer than its
// terminationGracePeriodSeconds, itself capped at `cap`.
type drainPolicy struct {
	margin time.Duration
	cap    time.Duration
}

func (p drainPolicy) graceOf(pod *corev1.Pod) time.Duration {
	grace := p.cap
	if seconds := pod.Spec.TerminationGracePeriodSeconds; seconds != nil {
		grace = min(grace, time.Duration(*seconds)*time.Second)
	}
	return grace
}

// over says whether a pod that is not Ready has drained.
func (p drainPolicy) over(pod *trackedPod, now time.Time) bool {
	if !now.Before(pod.unreadyAt.Add(pod.grace)) {
		return true
	}
	return !pod.unlistedAt.IsZero() && !now.Before(pod.unlistedAt.Add(p.margin))
}
