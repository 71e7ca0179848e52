// Command prism-dataplane is the sandbox's data plane besides Traefik:
//
//	prism-dataplane bridge LISTEN=CONNECT...
//	prism-dataplane pod-server --cluster NAME --kubeconfig FILE --socket FILE
//
// bridge copies bytes between a listening endpoint and a dialled one, each
// `tcp:HOST:PORT` or `unix:PATH`; the sandbox uses it to connect a cluster's
// network namespace with the host through Unix sockets, so that the host side
// only ever uses loopback addresses and Unix sockets.
//
// pod-server runs inside a cluster's network namespace and plays every Ready
// pod's containers: it listens on podIP:containerPort and answers each HTTP
// request with who served it. See sandbox/README.md, "Data plane".
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "bridge":
		err = runBridge(os.Args[2:])
	case "pod-server":
		err = runPodServer(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "prism-dataplane %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: prism-dataplane bridge LISTEN=CONNECT...\n"+
		"       prism-dataplane pod-server --cluster NAME --kubeconfig FILE --socket FILE\n"+
		"endpoints: tcp:HOST:PORT or unix:PATH\n")
	os.Exit(2)
}
