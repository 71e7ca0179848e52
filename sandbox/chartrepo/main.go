// Command chartrepo serves a Helm chart repository (an index.yaml and the charts' .tgz files)
// from a directory over plain HTTP, as `helm serve` did:
//
//	chartrepo --listen 127.0.0.1:8879 --root DIR
//
// Each request is logged with its status, so a test's failure to find a chart shows in the
// sandbox's log. See sandbox/README.md, "Chart repository".
package main

import (
	"flag"
	"log"
	"net/http"
	"os"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8879", "address to listen on")
	root := flag.String("root", "", "directory holding index.yaml and the charts")
	flag.Parse()
	if *root == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	server := &http.Server{
		Addr:              *listen,
		Handler:           logged(http.FileServer(http.Dir(*root))),
		ReadHeaderTimeout: 10 * time.Second,
	}
	log.Printf("serving %s on http://%s", *root, *listen)
	log.Fatal(server.ListenAndServe())
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

func logged(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		recorder := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(recorder, r)
		log.Printf("%s %s %d", r.Method, r.URL.Path, recorder.status)
	})
}
