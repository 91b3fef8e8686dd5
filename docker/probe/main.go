// Command wsbridge-probe is the health probe of the wsbridge container image
// (docker/Dockerfile's HEALTHCHECK). The runtime image is distroless: it has
// no shell, curl or wget, so Docker's HEALTHCHECK runs this small static
// binary instead. Kubernetes does not need it: its probes are HTTP GETs made
// by the kubelet (docker/kubernetes.yaml).
//
// It GETs the bridge's admin endpoint and exits 0 when the answer is 2xx,
// 1 otherwise (refused, timed out, any other status), which is what Docker
// expects of a health check (2 is reserved). It reads the same variable as
// the bridge, so the two agree on the address:
//
//	WSBRIDGE_ADMIN_ADDR  host:port of the admin server (default 127.0.0.1:9503);
//	                     a wildcard host (":9503", "0.0.0.0:9503", "[::]:9503")
//	                     is probed on loopback, since the probe runs inside the
//	                     container
//
// Flags:
//
//	-path /healthz   the path to GET (/healthz: alive; /readyz: ready)
//	-url URL         GET this URL instead of one built from WSBRIDGE_ADMIN_ADDR
//	-timeout 2s      deadline of the whole request
//	-print-url       print the URL it would GET, and exit 0 without a request
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// DefaultAdminAddr is the admin server's default address
// (WSBRIDGE_ADMIN_ADDR unset).
const DefaultAdminAddr = "127.0.0.1:9503"

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wsbridge-probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("path", "/healthz", "path to GET on the admin server (/healthz or /readyz)")
	rawURL := fs.String("url", "", "URL to GET instead of one built from WSBRIDGE_ADMIN_ADDR")
	timeout := fs.Duration("timeout", 2*time.Second, "deadline of the request")
	printURL := fs.Bool("print-url", false, "print the URL to GET and exit without a request")
	if err := fs.Parse(args); err != nil {
		return 1
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "wsbridge-probe: unexpected argument %q\n", fs.Arg(0))
		return 1
	}
	target := *rawURL
	if target == "" {
		var err error
		target, err = TargetURL(getenv("WSBRIDGE_ADMIN_ADDR"), *path)
		if err != nil {
			fmt.Fprintf(stderr, "wsbridge-probe: %v\n", err)
			return 1
		}
	}
	if *printURL {
		fmt.Fprintln(stdout, target)
		return 0
	}
	if *timeout <= 0 {
		fmt.Fprintln(stderr, "wsbridge-probe: -timeout must be positive")
		return 1
	}
	status, body, err := get(target, *timeout)
	if err != nil {
		fmt.Fprintf(stderr, "wsbridge-probe: GET %s: %v\n", target, err)
		return 1
	}
	if status < 200 || status > 299 {
		fmt.Fprintf(stderr, "wsbridge-probe: GET %s: HTTP %d %s\n", target, status, body)
		return 1
	}
	fmt.Fprintf(stdout, "wsbridge-probe: GET %s: HTTP %d %s\n", target, status, body)
	return 0
}

// TargetURL is the URL the probe GETs for the admin address addr (empty: the
// default) and path. A wildcard host is replaced by loopback.
func TargetURL(addr, path string) (string, error) {
	if addr == "" {
		addr = DefaultAdminAddr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("WSBRIDGE_ADMIN_ADDR=%q: want host:port: %v", addr, err)
	}
	if port == "" {
		return "", fmt.Errorf("WSBRIDGE_ADMIN_ADDR=%q: no port", addr)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}

// get GETs target and returns the status and the start of the body, on one
// line. No proxy: the admin server is in this container.
func get(target string, timeout time.Duration) (int, string, error) {
	client := &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("redirected: a health endpoint answers itself")
		},
	}
	resp, err := client.Get(target)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	return resp.StatusCode, strings.Join(strings.Fields(string(b)), " "), nil
}
