// Command wsbridge-probe is the health probe of the wsbridge container image
// (docker/Dockerfile's HEALTHCHECK). The runtime image is distroless: it has
// no shell, curl or wget, so Docker's HEALTHCHECK runs this small static
// binary instead. Kubernetes does not need it: its probes are HTTP GETs made
// by the kubelet (docker/kubernetes.yaml).
//
// It GETs the bridge's admin endpoint and exits 0 when the answer is 2xx,
// 1 otherwise (refused, timed out, any other status), which is what Docker
// expects of a health check (2 is reserved). It reads the same variables as
// the bridge, so the two agree on the address and the scheme:
//
//	WSBRIDGE_ADMIN_ADDR      host:port of the admin server (default
//	                         127.0.0.1:9503); a wildcard host (":9503",
//	                         "0.0.0.0:9503", "[::]:9503") is probed on
//	                         loopback, since the probe runs inside the
//	                         container
//	WSBRIDGE_ADMIN_TLS_CERT  set: the admin server serves HTTPS, so the probe
//	                         GETs https://
//
// Over HTTPS to a loopback address (127.0.0.0/8, ::1, localhost) the probe
// does not verify the certificate: a certificate made for the bridge's
// public name does not list 127.0.0.1, the connection does not leave the
// container, and the probe sends no token and reads only a status. To any
// other host it verifies the certificate and the host name against the
// system's roots plus the certificates in WSBRIDGE_ADMIN_TLS_CERT (so a
// self-signed certificate is trusted).
//
// Flags:
//
//	-path /healthz   the path to GET (/healthz: alive; /readyz: ready)
//	-url URL         GET this URL instead of one built from WSBRIDGE_ADMIN_ADDR
//	-timeout 2s      deadline of the whole request
//	-print-url       print the URL it would GET, and exit 0 without a request
package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
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
		target, err = TargetURL(getenv("WSBRIDGE_ADMIN_ADDR"), *path, getenv("WSBRIDGE_ADMIN_TLS_CERT") != "")
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
	tlsCfg, err := ClientTLS(target, getenv("WSBRIDGE_ADMIN_TLS_CERT"))
	if err != nil {
		fmt.Fprintf(stderr, "wsbridge-probe: %v\n", err)
		return 1
	}
	status, body, err := get(target, tlsCfg, *timeout)
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
// default) and path, https:// when useTLS. A wildcard host is replaced by
// loopback.
func TargetURL(addr, path string, useTLS bool) (string, error) {
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
	scheme := "http://"
	if useTLS {
		scheme = "https://"
	}
	return scheme + net.JoinHostPort(host, port) + path, nil
}

// ClientTLS is the TLS configuration for target: nil for http://; no
// verification for a loopback host; otherwise the system roots plus the
// certificates of certFile (if any).
func ClientTLS(target, certFile string) (*tls.Config, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "https" {
		return nil, nil
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
		return &tls.Config{InsecureSkipVerify: true}, nil // see the package comment
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if certFile != "" {
		pem, err := os.ReadFile(certFile)
		if err != nil {
			return nil, fmt.Errorf("WSBRIDGE_ADMIN_TLS_CERT: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("WSBRIDGE_ADMIN_TLS_CERT: no PEM certificate in %s", certFile)
		}
	}
	return &tls.Config{RootCAs: pool}, nil
}

// get GETs target and returns the status and the start of the body, on one
// line. No proxy: the admin server is in this container.
func get(target string, tlsCfg *tls.Config, timeout time.Duration) (int, string, error) {
	client := &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, TLSClientConfig: tlsCfg},
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
