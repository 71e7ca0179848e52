// Command prism-kube is a multicall binary holding the upstream Kubernetes
// control plane (kube-apiserver, kube-controller-manager, kube-scheduler),
// etcd and kubectl, linked as libraries so the sandbox pays for one link
// instead of five (as hyperkube once did).
//
// The program to run is chosen by the name it is invoked as (a symlink named
// kube-apiserver, etcd, ...) or, failing that, by the first argument:
//
//	prism-kube kube-apiserver --etcd-servers=...
//
// Each invocation runs exactly one component: the upstream commands share
// process-wide state (signal handling, feature gates, metrics registries), so
// the sandbox starts every component as its own OS process.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	_ "time/tzdata" // CronJob time zones, as in the upstream apiserver and KCM mains

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format, as upstream
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics, as upstream
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric, as upstream
	kubectl "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

var programs = map[string]func(){
	"kube-apiserver":          func() { runCobra(apiserver.NewAPIServerCommand()) },
	"kube-controller-manager": func() { runCobra(controllermanager.NewControllerManagerCommand()) },
	"kube-scheduler":          func() { runCobra(scheduler.NewSchedulerCommand()) },
	"etcd":                    func() { etcdmain.Main(os.Args) },
	"kubectl":                 runKubectl,
}

func main() {
	if run, ok := programs[filepath.Base(os.Args[0])]; ok {
		run()
		return
	}
	if len(os.Args) > 1 {
		if run, ok := programs[os.Args[1]]; ok {
			// The upstream entry points read os.Args themselves (etcd gets the
			// vector, cobra and kubectl's plugin handling parse it), so make it
			// look exactly as if the program had been invoked by its own name.
			os.Args = append([]string{os.Args[1]}, os.Args[2:]...)
			run()
			return
		}
	}
	names := make([]string, 0, len(programs))
	for name := range programs {
		names = append(names, name)
	}
	sort.Strings(names)
	fmt.Fprintf(os.Stderr, "usage: %s PROGRAM [ARGS...]\nprograms: %v\n", filepath.Base(os.Args[0]), names)
	os.Exit(2)
}

func runCobra(command *cobra.Command) {
	os.Exit(cli.Run(command))
}

// runKubectl mirrors cmd/kubectl/kubectl.go.
func runKubectl() {
	// Verbosity must be known before flag parsing because kubectl logs while
	// it builds its command tree (plugins, .kuberc).
	logs.GlogSetter(kubectl.GetLogVerbosity(os.Args)) //nolint:errcheck
	if err := cli.RunNoErrOutput(kubectl.NewDefaultKubectlCommand()); err != nil {
		kubectlutil.CheckErr(err)
	}
}
