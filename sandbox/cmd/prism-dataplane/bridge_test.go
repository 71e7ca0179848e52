package main

import (
	"io"
	"net"
	"path/filepath"
	"testing"
)

// A client that half-closes after its request (as netcat does) still gets the whole answer
// through the bridge.
func TestBridgeCarriesBothWaysAndHalfCloses(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		conn, err := echo.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		request, _ := io.ReadAll(conn) // until the client's half-close
		_, _ = conn.Write(append([]byte("echo: "), request...))
	}()

	socket := filepath.Join(t.TempDir(), "bridge.sock")
	listener, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	go func() { _ = serveBridge(listener, endpoint{"tcp", echo.Addr().String()}) }()

	conn, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := conn.(*net.UnixConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	answer, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if string(answer) != "echo: hello" {
		t.Fatalf("answer %q", answer)
	}
}

func TestEndpointsAreTcpOrUnix(t *testing.T) {
	for _, bad := range []string{"udp:1.2.3.4:5", "tcp:", "127.0.0.1:80", "unix:/" + string(make([]byte, 120))} {
		if _, err := parseEndpoint(bad); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
	if e, err := parseEndpoint("tcp:127.10.0.1:8080"); err != nil || e.address != "127.10.0.1:8080" {
		t.Errorf("tcp endpoint: %v %v", e, err)
	}
}
