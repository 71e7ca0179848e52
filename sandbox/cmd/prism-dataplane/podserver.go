package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// releaseLabel is Prism's label naming a pod's release (prism-api's RELEASE_LABEL).
const releaseLabel = "prism.dev/release"

// defaultPort is where a pod that declares no TCP container port serves, as a web server
// image would; Prism's templates often leave ports out and give the Service port 80.
const defaultPort = 80

// reconcileEvery re-checks drain deadlines between informer events.
const reconcileEvery = 200 * time.Millisecond

type podServerConfig struct {
	cluster    string
	kubeconfig string
	socket     string
	drain      drainPolicy
}

func runPodServer(args []string) error {
	flags := flag.NewFlagSet("pod-server", flag.ContinueOnError)
	var config podServerConfig
	flags.StringVar(&config.cluster, "cluster", "", "the cluster's name, as answered to requests")
	flags.StringVar(&config.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster")
	flags.StringVar(&config.socket, "socket", "", "Unix socket for /healthz and /pods")
	flags.DurationVar(&config.drain.margin, "drain-margin", 5*time.Second,
		"how long a pod that stopped being Ready keeps serving after no EndpointSlice lists it as ready")
	flags.DurationVar(&config.drain.cap, "drain-cap", 30*time.Second,
		"the longest a pod keeps serving after it stopped being Ready (at most its terminationGracePeriodSeconds)")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if config.cluster == "" || config.kubeconfig == "" || config.socket == "" {
		return errors.New("--cluster, --kubeconfig and --socket are required")
	}
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	restConfig, err := clientcmd.BuildConfigFromFlags("", config.kubeconfig)
	if err != nil {
		return err
	}
	restConfig.QPS, restConfig.Burst = 50, 100
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	factory := informers.NewSharedInformerFactory(client, 0)
	server := &podServer{
		config:    config,
		pods:      factory.Core().V1().Pods().Lister(),
		slices:    factory.Discovery().V1().EndpointSlices().Lister(),
		wake:      make(chan struct{}, 1),
		tracked:   map[types.UID]*trackedPod{},
		listeners: map[string]*podListener{},
		failed:    map[string]string{},
	}
	wake := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { server.poke() },
		UpdateFunc: func(any, any) { server.poke() },
		DeleteFunc: func(any) { server.poke() },
	}
	if _, err := factory.Core().V1().Pods().Informer().AddEventHandler(wake); err != nil {
		return err
	}
	if _, err := factory.Discovery().V1().EndpointSlices().Informer().AddEventHandler(wake); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	for informer, synced := range factory.WaitForCacheSync(ctx.Done()) {
		if !synced {
			return fmt.Errorf("the %v cache did not sync", informer)
		}
	}
	if err := server.serveControl(); err != nil {
		return err
	}
	log.Printf("pod server of %s: caches synced, serving", config.cluster)
	server.run(ctx)
	return nil
}

// trackedPod is a pod that was Ready while this server ran: it serves while Ready, and for a
// bounded drain after it stops being Ready or disappears, as a real pod keeps serving through
// its termination grace period while the endpoint leaves the load balancers.
type trackedPod struct {
	info       servedPod
	unreadyAt  time.Time // zero while Ready
	unlistedAt time.Time // when no EndpointSlice listed it as ready any more (during drain)
	grace      time.Duration
}

// servedPod is what a request to the pod is answered with.
type servedPod struct {
	Cluster   string    `json:"cluster"`
	Namespace string    `json:"namespace"`
	Pod       string    `json:"pod"`
	UID       types.UID `json:"uid"`
	Release   string    `json:"release"`
	Images    []string  `json:"images"`
	Node      string    `json:"node"`
	PodIP     string    `json:"podIP"`
	Ports     []int32   `json:"ports"`
	Draining  bool      `json:"draining"`
}

type podServer struct {
	config    podServerConfig
	pods      corelisters.PodLister
	slices    discoverylisters.EndpointSliceLister
	wake      chan struct{}
	mu        sync.Mutex // guards tracked and listeners against the control socket's reads
	tracked   map[types.UID]*trackedPod
	listeners map[string]*podListener // by podIP:port
	failed    map[string]string       // the last error of listening on an address
}

func (s *podServer) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *podServer) run(ctx context.Context) {
	ticker := time.NewTicker(reconcileEvery)
	defer ticker.Stop()
	for {
		s.reconcile(time.Now())
		select {
		case <-ctx.Done():
			s.mu.Lock()
			for address, listener := range s.listeners {
				listener.close()
				delete(s.listeners, address)
			}
			s.mu.Unlock()
			return
		case <-s.wake:
		case <-ticker.C:
		}
	}
}

func (s *podServer) reconcile(now time.Time) {
	pods, err := s.pods.List(labels.Everything())
	if err != nil {
		log.Printf("listing pods: %v", err)
		return
	}
	listed := s.readyInSlices()
	s.mu.Lock()
	defer s.mu.Unlock()
	ready := map[types.UID]bool{}
	for _, pod := range pods {
		if !podReady(pod) {
			continue
		}
		ready[pod.UID] = true
		s.tracked[pod.UID] = &trackedPod{info: s.describe(pod), grace: s.config.drain.graceOf(pod)}
	}
	for uid, pod := range s.tracked {
		if ready[uid] {
			continue
		}
		if pod.unreadyAt.IsZero() {
			pod.unreadyAt = now
			pod.info.Draining = true
			log.Printf("%s/%s (%s) is no longer Ready: draining", pod.info.Namespace, pod.info.Pod, pod.info.PodIP)
		}
		if listed[uid] {
			pod.unlistedAt = time.Time{}
		} else if pod.unlistedAt.IsZero() {
			pod.unlistedAt = now
		}
		if s.config.drain.over(pod, now) {
			delete(s.tracked, uid)
		}
	}
	s.apply(desiredListeners(s.tracked))
}

// readyInSlices is the set of pods that some EndpointSlice lists as a ready endpoint, which is
// what Traefik routes to.
func (s *podServer) readyInSlices() map[types.UID]bool {
	listed := map[types.UID]bool{}
	slices, err := s.slices.List(labels.Everything())
	if err != nil {
		log.Printf("listing EndpointSlices: %v", err)
		return listed
	}
	for _, slice := range slices {
		for _, endpoint := range slice.Endpoints {
			ready := endpoint.Conditions.Ready == nil || *endpoint.Conditions.Ready
			if ready && endpoint.TargetRef != nil && endpoint.TargetRef.Kind == "Pod" {
				listed[endpoint.TargetRef.UID] = true
			}
		}
	}
	return listed
}

// desiredListeners maps every address to serve to the pod that owns it. KWOK may give a gone
// pod's IP to a new pod while the old one drains: the pod that is Ready wins the address.
func desiredListeners(tracked map[types.UID]*trackedPod) map[string]*servedPod {
	desired := map[string]*servedPod{}
	for _, pod := range tracked {
		for _, port := range pod.info.Ports {
			address := net.JoinHostPort(pod.info.PodIP, strconv.Itoa(int(port)))
			if owner, taken := desired[address]; taken && (!owner.Draining || pod.info.Draining) {
				continue
			}
			info := pod.info
			desired[address] = &info
		}
	}
	return desired
}

func (s *podServer) apply(desired map[string]*servedPod) {
	for address, listener := range s.listeners {
		if _, keep := desired[address]; !keep {
			info := listener.info.Load()
			log.Printf("%s/%s: closing %s", info.Namespace, info.Pod, address)
			listener.close()
			delete(s.listeners, address)
		}
	}
	for address, info := range desired {
		if listener, ok := s.listeners[address]; ok {
			if old := listener.info.Load(); old.UID != info.UID {
				log.Printf("%s: %s/%s takes over from %s/%s", address, info.Namespace, info.Pod, old.Namespace, old.Pod)
			}
			listener.info.Store(info)
			continue
		}
		listener, err := listen(address, info)
		if err != nil {
			// Tried again at the next reconcile; said once.
			if s.failed[address] != err.Error() {
				log.Printf("%s/%s: listening on %s: %v", info.Namespace, info.Pod, address, err)
			}
			s.failed[address] = err.Error()
			continue
		}
		delete(s.failed, address)
		log.Printf("%s/%s: serving on %s", info.Namespace, info.Pod, address)
		s.listeners[address] = listener
	}
}

// podReady says whether the pod serves at an address of its own: Running, Ready, not being
// deleted (a terminating endpoint leaves the load balancers), and not on the host's network.
func podReady(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp != nil || pod.Spec.HostNetwork || pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP == "" {
		return false
	}
	for _, condition := range pod.Status.Conditions {
		if condition.Type == corev1.PodReady {
			return condition.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (s *podServer) describe(pod *corev1.Pod) servedPod {
	images := []string{}
	for _, container := range pod.Spec.Containers {
		images = append(images, container.Image)
	}
	return servedPod{
		Cluster:   s.config.cluster,
		Namespace: pod.Namespace,
		Pod:       pod.Name,
		UID:       pod.UID,
		Release:   pod.Labels[releaseLabel],
		Images:    images,
		Node:      pod.Spec.NodeName,
		PodIP:     pod.Status.PodIP,
		Ports:     tcpPorts(pod),
	}
}

// tcpPorts are the pod's TCP container ports, or the default port when it declares none.
func tcpPorts(pod *corev1.Pod) []int32 {
	seen := map[int32]bool{}
	ports := []int32{}
	for _, container := range pod.Spec.Containers {
		for _, port := range container.Ports {
			if (port.Protocol == "" || port.Protocol == corev1.ProtocolTCP) && !seen[port.ContainerPort] {
				seen[port.ContainerPort] = true
				ports = append(ports, port.ContainerPort)
			}
		}
	}
	if len(ports) == 0 {
		return []int32{defaultPort}
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
	return ports
}

// podListener serves one pod address. Its pod can change when KWOK reuses an IP.
type podListener struct {
	socket net.Listener
	server *http.Server
	info   atomic.Pointer[servedPod]
}

func listen(address string, info *servedPod) (*podListener, error) {
	socket, err := net.Listen("tcp", address)
	if err != nil {
		return nil, err
	}
	listener := &podListener{socket: socket}
	listener.info.Store(info)
	listener.server = &http.Server{Handler: listener, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = listener.server.Serve(socket) }()
	return listener, nil
}

// close stops accepting at once (new connections are refused, and the address is free for a
// pod that reuses it), lets requests under way finish briefly, then drops every connection,
// idle keep-alive ones included.
func (l *podListener) close() {
	_ = l.socket.Close()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if l.server.Shutdown(ctx) != nil {
			_ = l.server.Close()
		}
	}()
}

type answer struct {
	servedPod
	Port   string `json:"port"`
	Method string `json:"method"`
	Host   string `json:"host"`
	Path   string `json:"path"`
}

func (l *podListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	info := l.info.Load()
	_, port, _ := net.SplitHostPort(r.Context().Value(http.LocalAddrContextKey).(net.Addr).String())
	header := w.Header()
	header.Set("Content-Type", "application/json")
	header.Set("X-Prism-Cluster", info.Cluster)
	header.Set("X-Prism-Namespace", info.Namespace)
	header.Set("X-Prism-Pod", info.Pod)
	header.Set("X-Prism-Release", info.Release)
	body, _ := json.Marshal(answer{servedPod: *info, Port: port, Method: r.Method, Host: r.Host, Path: r.URL.RequestURI()})
	_, _ = w.Write(append(body, '\n'))
}

// serveControl answers /healthz and /pods (what is served, for people and tests) on a Unix
// socket, reachable from the host without entering the network namespace.
func (s *podServer) serveControl() error {
	if err := os.Remove(s.config.socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	socket, err := net.Listen("unix", s.config.socket)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/pods", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		served := map[string]*servedPod{}
		for address, listener := range s.listeners {
			served[address] = listener.info.Load()
		}
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(served)
	})
	go func() { log.Fatal(http.Serve(socket, mux)) }()
	return nil
}
