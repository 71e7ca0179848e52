package main

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strings"
	"time"
)

// dialTimeout bounds a connection attempt to the far side; a bridge whose far side is down
// closes the accepted connection, so the client sees an error instead of a hang.
const dialTimeout = 5 * time.Second

type endpoint struct{ network, address string }

func parseEndpoint(text string) (endpoint, error) {
	network, address, ok := strings.Cut(text, ":")
	if !ok || address == "" || (network != "tcp" && network != "unix") {
		return endpoint{}, fmt.Errorf("bad endpoint %q: want tcp:HOST:PORT or unix:PATH", text)
	}
	if network == "unix" && len(address) > 107 {
		return endpoint{}, fmt.Errorf("unix socket path %q is longer than the kernel's 107 bytes: move the checkout to a shorter path", address)
	}
	return endpoint{network, address}, nil
}

func (e endpoint) String() string { return e.network + ":" + e.address }

func runBridge(args []string) error {
	if len(args) == 0 {
		return errors.New("no LISTEN=CONNECT pair given")
	}
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	failed := make(chan error, len(args))
	for _, pair := range args {
		listenText, connectText, ok := strings.Cut(pair, "=")
		if !ok {
			return fmt.Errorf("bad pair %q: want LISTEN=CONNECT", pair)
		}
		from, err := parseEndpoint(listenText)
		if err != nil {
			return err
		}
		to, err := parseEndpoint(connectText)
		if err != nil {
			return err
		}
		if from.network == "unix" {
			// A socket file left by a previous run would make the listen fail.
			if err := os.Remove(from.address); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		listener, err := net.Listen(from.network, from.address)
		if err != nil {
			return err
		}
		log.Printf("bridge %s -> %s", from, to)
		go func() { failed <- serveBridge(listener, to) }()
	}
	return <-failed
}

func serveBridge(listener net.Listener, to endpoint) error {
	for {
		conn, err := listener.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer conn.Close()
			far, err := net.DialTimeout(to.network, to.address, dialTimeout)
			if err != nil {
				log.Printf("dialling %s: %v", to, err)
				return
			}
			defer far.Close()
			pipe(conn, far)
		}()
	}
}

// pipe copies both ways until both directions are done, passing on half-closes so that a
// client that shuts down its writing side still gets the whole answer.
func pipe(a, b net.Conn) {
	done := make(chan struct{}, 2)
	copyHalf := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if half, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = half.CloseWrite()
		} else {
			_ = dst.Close()
		}
		done <- struct{}{}
	}
	go copyHalf(a, b)
	go copyHalf(b, a)
	<-done
	<-done
}
