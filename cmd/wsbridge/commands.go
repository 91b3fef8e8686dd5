package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/wsbridge/wsbridge/admin"
)

// The subcommands beside running the bridge: one binary in the image, for
// the health check, the version and checking a configuration.
//
//	wsbridge healthcheck [-path /healthz] [-url URL] [-timeout 2s] [-print-url]
//	wsbridge version
//	wsbridge config check [flags]

// version is the release, set at build time with
// -ldflags "-X main.version=v1.2.3"; otherwise the module's version (a
// build of a tagged module) or "dev".
var version = "dev"

// subcommand runs the subcommand args[0] names; false when args does not
// start with one (the bridge itself runs).
func subcommand(args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) (int, bool) {
	if len(args) == 0 {
		return 0, false
	}
	switch args[0] {
	case "healthcheck":
		return healthcheck(args[1:], lookupEnv, stdout, stderr), true
	case "version":
		if len(args) > 1 {
			fmt.Fprintf(stderr, "wsbridge version: unexpected argument %q\n", args[1])
			return 2, true
		}
		b := buildInfo()
		fmt.Fprintf(stdout, "wsbridge %s\n", b.Version)
		if b.Revision != "" {
			mod := ""
			if b.Modified {
				mod = " (modified)"
			}
			fmt.Fprintf(stdout, "revision %s%s %s\n", b.Revision, mod, b.Time)
		}
		fmt.Fprintf(stdout, "%s %s/%s\n", b.GoVersion, runtime.GOOS, runtime.GOARCH)
		return 0, true
	case "config":
		if len(args) < 2 || args[1] != "check" {
			fmt.Fprintln(stderr, "usage: wsbridge config check [flags]: validate the settings (flags and WSBRIDGE_* variables) and print the effective configuration, secrets masked")
			return 2, true
		}
		return configCheck(args[2:], lookupEnv, stdout, stderr), true
	}
	return 0, false
}

// configCheck validates the settings as the bridge would at start (each
// setting, the rules between them, the certificate files) and prints the
// effective configuration as an environment file, secrets masked. Exit
// status 0 when valid, 2 when not (as the bridge's own for a bad
// configuration).
func configCheck(args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) int {
	cfg, err := parseConfig(args, lookupEnv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err == nil {
		_, _, err = loadCerts(&cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}
	if err != nil {
		fmt.Fprintf(stderr, "wsbridge config check: %v\n", err)
		return 2
	}
	if err := writeEffective(stdout, cfg); err != nil {
		fmt.Fprintf(stderr, "wsbridge config check: %v\n", err)
		return 1
	}
	fmt.Fprintln(stderr, "wsbridge config check: the configuration is valid")
	return 0
}

// buildInfo describes this binary.
func buildInfo() admin.BuildInfo {
	b := admin.BuildInfo{Version: version, GoVersion: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if v := info.Main.Version; b.Version == "dev" && v != "" && v != "(devel)" {
		b.Version = v
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

// consoleSettings is the effective config as the console shows it.
func consoleSettings(c config) []admin.Setting {
	eff := effectiveSettings(c)
	out := make([]admin.Setting, len(eff))
	for i, e := range eff {
		out[i] = admin.Setting{Name: e.Name, Env: e.Env, Group: e.Group, Value: e.Value, Default: e.Default}
	}
	return out
}

// healthcheck is the container's health check (docker/Dockerfile's
// HEALTHCHECK): the runtime image is distroless, without a shell, curl or
// wget. It GETs the bridge's admin endpoint and exits 0 when the answer is
// 2xx, 1 otherwise (refused, timed out, any other status), as Docker
// expects (2 is reserved). It reads the bridge's own variables, so the two
// agree on the address and the scheme:
//
//	WSBRIDGE_ADMIN_ADDR      host:port of the admin server (default
//	                         127.0.0.1:9503); a wildcard host (":9503",
//	                         "0.0.0.0:9503", "[::]:9503") is probed on
//	                         loopback, since the check runs inside the
//	                         container
//	WSBRIDGE_ADMIN_TLS_CERT  set: the admin server serves HTTPS, so the
//	                         check GETs https://
//
// Over HTTPS to a loopback address (127.0.0.0/8, ::1, localhost) it does
// not verify the certificate: a certificate made for the bridge's public
// name does not list 127.0.0.1, the connection does not leave the
// container, and the check sends no token and reads only a status. To any
// other host it verifies the certificate and the host name against the
// system's roots plus the certificates in WSBRIDGE_ADMIN_TLS_CERT (so a
// self-signed certificate is trusted). Kubernetes does not need it: its
// probes are HTTP GETs made by the kubelet (docker/kubernetes.yaml).
func healthcheck(args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) int {
	getenv := func(k string) string { v, _ := lookupEnv(k); return v }
	fs := flag.NewFlagSet("wsbridge healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("path", "/healthz", "path to GET on the admin server (/healthz or /readyz)")
	rawURL := fs.String("url", "", "URL to GET instead of one built from WSBRIDGE_ADMIN_ADDR")
	timeout := fs.Duration("timeout", 2*time.Second, "deadline of the request")
	printURL := fs.Bool("print-url", false, "print the URL to GET and exit without a request")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 1
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "wsbridge healthcheck: unexpected argument %q\n", fs.Arg(0))
		return 1
	}
	target := *rawURL
	if target == "" {
		var err error
		target, err = healthURL(getenv("WSBRIDGE_ADMIN_ADDR"), *path, getenv("WSBRIDGE_ADMIN_TLS_CERT") != "")
		if err != nil {
			fmt.Fprintf(stderr, "wsbridge healthcheck: %v\n", err)
			return 1
		}
	}
	if *printURL {
		fmt.Fprintln(stdout, target)
		return 0
	}
	if *timeout <= 0 {
		fmt.Fprintln(stderr, "wsbridge healthcheck: -timeout must be positive")
		return 1
	}
	tlsCfg, err := healthTLS(target, getenv("WSBRIDGE_ADMIN_TLS_CERT"))
	if err != nil {
		fmt.Fprintf(stderr, "wsbridge healthcheck: %v\n", err)
		return 1
	}
	status, body, err := healthGet(target, tlsCfg, *timeout)
	if err != nil {
		fmt.Fprintf(stderr, "wsbridge healthcheck: GET %s: %v\n", target, err)
		return 1
	}
	if status < 200 || status > 299 {
		fmt.Fprintf(stderr, "wsbridge healthcheck: GET %s: HTTP %d %s\n", target, status, body)
		return 1
	}
	fmt.Fprintf(stdout, "wsbridge healthcheck: GET %s: HTTP %d %s\n", target, status, body)
	return 0
}

// healthURL is the URL the health check GETs for the admin address addr
// (empty: the default) and path, https:// when useTLS. A wildcard host is
// replaced by loopback.
func healthURL(addr, path string, useTLS bool) (string, error) {
	if addr == "" {
		addr = admin.DefaultAddr
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

// healthTLS is the TLS configuration for target: nil for http://; no
// verification for a loopback host; otherwise the system roots plus the
// certificates of certFile (if any).
func healthTLS(target, certFile string) (*tls.Config, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "https" {
		return nil, nil
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
		return &tls.Config{InsecureSkipVerify: true}, nil // see healthcheck
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

// healthGet GETs target and returns the status and the start of the body,
// on one line. No proxy: the admin server is in this container.
func healthGet(target string, tlsCfg *tls.Config, timeout time.Duration) (int, string, error) {
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
