package main

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestDrainEndsAMarginAfterTheEndpointLeft(t *testing.T) {
	policy := drainPolicy{margin: 5 * time.Second, cap: 30 * time.Second}
	start := time.Unix(1000, 0)
	pod := &trackedPod{unreadyAt: start, grace: 30 * time.Second}
	if policy.over(pod, start.Add(20*time.Second)) {
		t.Fatal("a pod still listed as ready in an EndpointSlice stopped serving before its grace period")
	}
	pod.unlistedAt = start.Add(3 * time.Second)
	if policy.over(pod, start.Add(7*time.Second)) {
		t.Fatal("drain ended before the margin after the endpoint left")
	}
	if !policy.over(pod, start.Add(8*time.Second)) {
		t.Fatal("drain did not end a margin after the endpoint left")
	}
}

func TestDrainNeverOutlivesTheGracePeriod(t *testing.T) {
	policy := drainPolicy{margin: 5 * time.Second, cap: 30 * time.Second}
	zero, ten := int64(0), int64(10)
	if grace := policy.graceOf(&corev1.Pod{Spec: corev1.PodSpec{TerminationGracePeriodSeconds: &ten}}); grace != 10*time.Second {
		t.Fatalf("grace %v, want 10s", grace)
	}
	if grace := policy.graceOf(&corev1.Pod{}); grace != 30*time.Second {
		t.Fatalf("grace %v, want the cap", grace)
	}
	pod := &trackedPod{unreadyAt: time.Unix(1000, 0), grace: policy.graceOf(&corev1.Pod{Spec: corev1.PodSpec{TerminationGracePeriodSeconds: &zero}})}
	if !policy.over(pod, pod.unreadyAt) {
		t.Fatal("a pod with no grace period kept serving")
	}
}

func TestAReadyPodWinsAnAddressFromADrainingOne(t *testing.T) {
	old := &trackedPod{info: servedPod{UID: types.UID("old"), PodIP: "10.244.0.5", Ports: []int32{80}, Draining: true}}
	reused := &trackedPod{info: servedPod{UID: types.UID("new"), PodIP: "10.244.0.5", Ports: []int32{80, 8080}}}
	for range 20 { // map order varies
		desired := desiredListeners(map[types.UID]*trackedPod{"old": old, "new": reused})
		if desired["10.244.0.5:80"].UID != "new" || desired["10.244.0.5:8080"].UID != "new" || len(desired) != 2 {
			t.Fatalf("desired %v", desired)
		}
	}
}

func TestAPodWithoutPortsServesOnPort80(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web"}, {Name: "sidecar", Ports: []corev1.ContainerPort{{ContainerPort: 53, Protocol: corev1.ProtocolUDP}}}}}}
	if ports := tcpPorts(pod); len(ports) != 1 || ports[0] != 80 {
		t.Fatalf("ports %v", ports)
	}
	pod.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080}, {ContainerPort: 9090, Protocol: corev1.ProtocolTCP}}
	if ports := tcpPorts(pod); len(ports) != 2 || ports[0] != 8080 || ports[1] != 9090 {
		t.Fatalf("ports %v", ports)
	}
}
