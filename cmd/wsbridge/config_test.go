package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/cluster"
	"github.com/wsbridge/wsbridge/events"
)

func TestMain(m *testing.M) {
	if os.Getenv(asMainVar) == "1" { // a test runs this binary as the command
		main()
	}
	goleak.VerifyTestMain(m)
}

// asMainVar set to 1 makes the test binary run as the wsbridge command.
const asMainVar = "WSBRIDGE_TEST_AS_MAIN"

// noEnv is a lookupEnv with no variables set.
func noEnv(string) (string, bool) { return "", false }

// envOf returns a lookupEnv that sees exactly vars.
func envOf(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

// defaultConfig is what parseConfig returns with no flags and no variables.
// Settings added after these tests were written keep their own defaults
// here; TestParseConfigDefaults checks the ones these tests know.
func defaultConfig(tb testing.TB) config {
	tb.Helper()
	c, err := parseConfig(nil, noEnv, io.Discard)
	if err != nil {
		tb.Fatalf("parseConfig(nil) error: %v", err)
	}
	return c
}

// withKnownDefaults returns c with every setting these tests know set to
// its documented default.
func withKnownDefaults(c config) config {
	c.WSAddr = ":9502"
	c.ShutdownTimeout = 10 * time.Second
	c.LogLevel = slog.LevelInfo
	c.LogFormat = "text"
	b := &c.Bridge
	b.NodeID = 0
	b.Paths = []string{"/"}
	b.Workers = 0
	b.MaxConnections = 10000
	b.QueueSize = 256
	b.QueueBytes = 16 << 20
	b.Overflow = bridge.OverflowClose
	b.MaxMessageSize = 1 << 20
	b.MaxPushSize = 8 << 20
	b.FragmentSize = 0
	b.ReadBufferSize = 512
	b.WriteTimeout = 10 * time.Second
	b.PingInterval = 25 * time.Second
	b.PongTimeout = 10 * time.Second
	b.HandshakeTimeout = 10 * time.Second
	b.CloseTimeout = time.Second
	b.AllowedOrigins = nil
	b.Compression = false
	b.Subprotocols = nil
	b.MaxGroupsPerConn = 256
	b.MaxConnectionsPerIP = 0
	b.MaxHandshakes = 1000
	b.AcceptRate = 0
	b.AcceptBurst = 0
	b.TrustedProxies = nil
	b.MaxKeptHeaderBytes = 8 << 10
	b.MaxQueuedBytes = 1 << 30
	b.FragmentTimeout = 30 * time.Second
	b.Logger = nil
	b.Listener = nil
	c.RPC.Addr = "tcp://127.0.0.1:6001"
	c.RPC.SocketMode = 0o660
	c.RPC.MaxFrameSize = 32 << 20
	c.RPC.MaxConnections = 1024
	c.RPC.MaxInFlight = 64
	c.RPC.WriteTimeout = 10 * time.Second
	c.RPC.IdleTimeout = 0
	c.RPC.ReadTimeout = 10 * time.Second
	c.RPC.Logger = nil
	c.RPC.Observer = nil
	e := &c.Events
	e.URL = ""
	e.Secret = ""
	e.AuthURL = ""
	e.AuthTimeout = 3 * time.Second
	e.Concurrency = 8
	e.BatchSize = 100
	e.BatchBytes = 1 << 20
	e.Timeout = 5 * time.Second
	e.RetryMax = 5 * time.Second
	e.Retries = 5
	e.QueuePerFD = 1000
	e.QueueTotal = 100000
	e.QueueBytes = 64 << 20
	e.Overflow = events.OverflowClose
	e.NodeID = 0
	e.Logger = nil
	e.Observer = nil
	a := &c.Admin
	a.Addr = "127.0.0.1:9503"
	a.Token = ""
	a.Pprof = false
	a.MaxBody = 32 << 20
	a.Gatherer = nil
	a.ReadyCheck = nil
	a.Logger = nil
	a.TLS = nil
	a.Nodes = nil
	c.Cluster = clusterConfig{Prefix: "wsbridge", Timeout: 2 * time.Second, BatchHold: time.Millisecond, TTL: 10 * time.Second}
	c.Bridge.NodeID = cluster.AutoNodeID
	c.TLS, c.AdminTLS = tlsPair{}, tlsPair{}
	c.TLSReloadInterval = 10 * time.Second
	return c
}

func TestParseConfigDefaults(t *testing.T) {
	var out bytes.Buffer
	got, err := parseConfig(nil, noEnv, &out)
	if err != nil {
		t.Fatalf("parseConfig(nil) error: %v", err)
	}
	if want := withKnownDefaults(got); !reflect.DeepEqual(got, want) {
		t.Errorf("parseConfig(nil) =\n%+v\nwant\n%+v", got, want)
	}
	if out.Len() != 0 {
		t.Errorf("parseConfig(nil) wrote %q to out, want nothing", out.String())
	}
	// The built-in defaults are a valid bridge configuration, once the
	// node id auto is what run makes it standalone.
	if got.Bridge.NodeID != cluster.AutoNodeID {
		t.Fatalf("default node id %d, want auto", got.Bridge.NodeID)
	}
	got.Bridge.NodeID = 0
	got.Bridge.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := bridge.New(got.Bridge)
	if err != nil {
		t.Fatalf("bridge.New(defaults): %v", err)
	}
	if err := h.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// allSet is the config that exampleFlags and exampleEnv describe: which
// field each setting sets, written out independently of the table.
func allSet(tb testing.TB) config {
	c := defaultConfig(tb)
	c.WSAddr = "127.0.0.1:9000"
	c.ShutdownTimeout = time.Minute
	c.ReleaseMemory = 10 * time.Second
	c.LogLevel = slog.LevelDebug
	c.LogFormat = "json"
	b := &c.Bridge
	b.Paths = []string{"/ws", "/chat"}
	b.NodeID = 7
	b.Workers = 3
	b.Flushers = 2
	b.MaxConnections = 50
	b.QueueSize = 10
	b.QueueBytes = 32 << 20
	b.Overflow = bridge.OverflowDrop
	b.MaxMessageSize = 2 << 20
	b.MaxPushSize = 4 << 20
	b.FragmentSize = 4 << 10
	b.WriteTimeout = 3 * time.Second
	b.WriteDelay = 5 * time.Millisecond
	b.PingInterval = 5 * time.Second
	b.PongTimeout = 2 * time.Second
	b.HandshakeTimeout = 4 * time.Second
	b.CloseTimeout = 500 * time.Millisecond
	b.AllowedOrigins = []string{"https://a.example", "https://*.b.example"}
	b.Compression = true
	b.Subprotocols = []string{"v1", "v2"}
	b.ReadBufferSize = 8192
	b.MaxGroupsPerConn = 5
	b.MaxConnectionsPerIP = 20
	b.MaxHandshakes = 300
	b.AcceptRate = 12.5
	b.AcceptBurst = 40
	b.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"), netip.MustParsePrefix("fd00::/8")}
	b.MaxKeptHeaderBytes = 4 << 10
	b.MaxQueuedBytes = 512 << 20
	b.FragmentTimeout = 5 * time.Second
	b.ReadMode = bridge.ReadModePoll
	b.PollWorkers = 8
	b.PollReadTimeout = 2 * time.Second
	b.ClientMessageRate = 0.5
	b.ClientMessageBurst = 7
	b.ClientByteRate = 64 << 10
	b.ClientByteBurst = 4 << 20
	b.ClientRatePolicy = bridge.RatePolicyDrop
	c.RPC.Addr = "unix:///run/wsbridge/rpc.sock"
	c.RPC.SocketMode = 0o600
	c.RPC.MaxFrameSize = 1 << 20
	c.RPC.MaxConnections = 8
	c.RPC.MaxInFlight = 4
	c.RPC.WriteTimeout = 2 * time.Second
	c.RPC.IdleTimeout = 5 * time.Minute
	c.RPC.ReadTimeout = 3 * time.Second
	e := &c.Events
	e.URL = "http://127.0.0.1:9501/wsbridge/events"
	e.Secret = "s3cret-of-the-app"
	e.AuthURL = "https://app.internal/wsbridge/auth"
	e.AuthTimeout = 1500 * time.Millisecond
	e.Concurrency = 16
	e.BatchSize = 50
	e.BatchBytes = 256 << 10
	e.Timeout = 2 * time.Second
	e.RetryMax = 30 * time.Second
	e.Retries = 3
	e.QueuePerFD = 10
	e.QueueTotal = 500
	e.QueueBytes = 8 << 20
	e.Overflow = events.OverflowDrop
	c.Admin.Addr = "0.0.0.0:9600"
	c.Admin.Token = "0123456789abcdef-admin"
	c.Admin.Pprof = true
	c.Admin.MaxBody = 1 << 20
	c.TLS = tlsPair{"/etc/wsbridge/tls/tls.crt", "/etc/wsbridge/tls/tls.key"}
	c.AdminTLS = tlsPair{"/etc/wsbridge/admin/tls.crt", "/etc/wsbridge/admin/tls.key"}
	c.TLSReloadInterval = time.Minute
	c.Cluster = clusterConfig{URL: "redis://:pw@127.0.0.1:6379/0", Prefix: "app1", Timeout: 500 * time.Millisecond, TTL: 30 * time.Second, Link: ":7401"}
	return c
}

var parseConfigTests = []struct {
	name string
	args []string
	env  map[string]string
	want func(*config)           // applied to defaultConfig()
	full func(testing.TB) config // instead of want: the whole expected config
}{
	{name: "no settings", want: func(*config) {}},
	{name: "every flag", args: exampleFlags(), full: allSet},
	{name: "every variable", env: exampleEnv(), full: allSet},
	{
		name: "double-dash and = forms",
		args: []string{"--ws-addr=:1234", "--node-id=1023", "-queue-bytes=8MiB"},
		want: func(c *config) { c.WSAddr, c.Bridge.NodeID, c.Bridge.QueueBytes = ":1234", 1023, 8<<20 },
	},
	{
		name: "variables unrelated to settings are ignored",
		env:  map[string]string{"WSBRIDGE_NO_SUCH_SETTING": "x", "WS_ADDR": "nope", "NODE_ID": "abc"},
		want: func(*config) {},
	},
	{
		name: "the bounds of the ranges",
		args: []string{"-node-id", "1023", "-workers", "4096", "-max-connections", "1", "-queue-size", "1048576"},
		want: func(c *config) {
			c.Bridge.NodeID, c.Bridge.Workers, c.Bridge.MaxConnections, c.Bridge.QueueSize = 1023, 4096, 1, 1<<20
		},
	},
	{
		name: "size spellings",
		args: []string{"-max-message-size", "1 kib", "-max-push-size", "2M", "-queue-bytes", "1GB", "-read-buffer-size", "512B", "-fragment-size", "125"},
		want: func(c *config) {
			c.Bridge.MaxMessageSize, c.Bridge.MaxPushSize, c.Bridge.QueueBytes = 1<<10, 2<<20, 1<<30
			c.Bridge.ReadBufferSize, c.Bridge.FragmentSize = 512, 125
		},
	},
	{
		name: "the largest size",
		args: []string{"-max-message-size", "1024GiB"},
		want: func(c *config) { c.Bridge.MaxMessageSize = 1 << 40 },
	},
	{
		name: "max-queued-bytes equal to queue-bytes",
		env:  map[string]string{"WSBRIDGE_MAX_QUEUED_BYTES": "32MiB", "WSBRIDGE_QUEUE_BYTES": "32MiB"},
		want: func(c *config) { c.Bridge.MaxQueuedBytes, c.Bridge.QueueBytes = 32<<20, 32<<20 },
	},
	{
		name: "queue-bytes equal to max-push-size",
		env:  map[string]string{"WSBRIDGE_QUEUE_BYTES": "1MiB", "WSBRIDGE_MAX_PUSH_SIZE": "1048576"},
		want: func(c *config) { c.Bridge.QueueBytes, c.Bridge.MaxPushSize = 1<<20, 1<<20 },
	},
	{
		name: "choices ignore case and spaces",
		env:  map[string]string{"WSBRIDGE_OVERFLOW_POLICY": " Drop ", "WSBRIDGE_LOG_FORMAT": "JSON", "WSBRIDGE_LOG_LEVEL": "Warning"},
		want: func(c *config) {
			c.Bridge.Overflow, c.LogFormat, c.LogLevel = bridge.OverflowDrop, "json", slog.LevelWarn
		},
	},
	{
		name: "log level error",
		args: []string{"-log-level", "error"},
		want: func(c *config) { c.LogLevel = slog.LevelError },
	},
	{
		name: "RPC off",
		env:  map[string]string{"WSBRIDGE_RPC_ADDR": "off"},
		want: func(c *config) { c.RPC.Addr = "off" },
	},
	{
		name: "RPC on TCP",
		args: []string{"-rpc-addr", "tcp://0.0.0.0:7000", "-rpc-max-frame-size", "2GiB"},
		want: func(c *config) { c.RPC.Addr, c.RPC.MaxFrameSize = "tcp://0.0.0.0:7000", 2<<30 },
	},
	{
		name: "RPC idle timeout off explicitly",
		env:  map[string]string{"WSBRIDGE_RPC_IDLE_TIMEOUT": "0s"},
		want: func(c *config) { c.RPC.IdleTimeout = 0 },
	},
	{
		name: "events on, the rest at its defaults",
		env:  map[string]string{"WSBRIDGE_EVENTS_URL": "http://php:9501/events", "WSBRIDGE_EVENTS_SECRET": "k"},
		want: func(c *config) { c.Events.URL, c.Events.Secret = "http://php:9501/events", "k" },
	},
	{
		name: "authorization without events",
		args: []string{"-events-auth-url", "https://[::1]:8443/auth?x=1"},
		want: func(c *config) { c.Events.AuthURL = "https://[::1]:8443/auth?x=1" },
	},
	{
		name: "events URL with user info",
		args: []string{"-events-url", "http://u:p@php/events"},
		want: func(c *config) { c.Events.URL = "http://u:p@php/events" },
	},
	{
		name: "empty lists",
		args: []string{"-allowed-origins", " , ", "-subprotocols", ""},
		want: func(*config) {},
	},
	{
		name: "admin off",
		env:  map[string]string{"WSBRIDGE_ADMIN_ADDR": "off"},
		want: func(c *config) { c.Admin.Addr = "off" },
	},
	{
		name: "admin on every interface, token of 16 characters",
		env:  map[string]string{"WSBRIDGE_ADMIN_ADDR": ":9503", "WSBRIDGE_ADMIN_TOKEN": "abcdefghijklmnop"},
		want: func(c *config) { c.Admin.Addr, c.Admin.Token = ":9503", "abcdefghijklmnop" },
	},
	{
		name: "admin token with every visible character",
		args: []string{"-admin-token", "!~azAZ09-._+/=\"'{}"},
		want: func(c *config) { c.Admin.Token = "!~azAZ09-._+/=\"'{}" },
	},
	{
		name: "admin max body at its bounds",
		args: []string{"-admin-max-body", "1KiB"},
		want: func(c *config) { c.Admin.MaxBody = 1 << 10 },
	},
}

func TestParseConfig(t *testing.T) {
	for _, tt := range parseConfigTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseConfig(tt.args, envOf(tt.env), io.Discard)
			if err != nil {
				t.Fatalf("parseConfig(%q, %v) error: %v", tt.args, tt.env, err)
			}
			want := defaultConfig(t)
			if tt.full != nil {
				want = tt.full(t)
			} else {
				tt.want(&want)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("parseConfig(%q, %v) =\n%+v\nwant\n%+v", tt.args, tt.env, got, want)
			}
		})
	}
}

// badConfigTests are invalid settings; every error message must contain
// each of want (the name of the setting at fault).
var badConfigTests = []struct {
	name string
	args []string
	env  map[string]string
	want []string
}{
	{name: "unknown flag", args: []string{"-no-such-flag"}, want: []string{"no-such-flag"}},
	{name: "flag without value", args: []string{"-node-id"}, want: []string{"node-id"}},
	{name: "bad int", args: []string{"-node-id", "abc"}, want: []string{"-node-id", "not an integer"}},
	{name: "node id 1024", args: []string{"-node-id", "1024"}, want: []string{"-node-id", "0..1023"}},
	{name: "bad duration", args: []string{"-write-timeout", "10"}, want: []string{"-write-timeout", "not a duration"}},
	{name: "zero duration", args: []string{"-pong-timeout", "0s"}, want: []string{"-pong-timeout", "positive"}},
	{name: "bad size", args: []string{"-queue-bytes", "lots"}, want: []string{"-queue-bytes", "not a size"}},
	{name: "zero size", args: []string{"-max-push-size", "0"}, want: []string{"-max-push-size", "at least 1"}},
	{name: "huge size", args: []string{"-max-message-size", "1025GiB"}, want: []string{"-max-message-size", "too large"}},
	{name: "bad overflow policy", args: []string{"-overflow-policy", "sometimes"}, want: []string{"-overflow-policy", "close, drop"}},
	{name: "bad log format", args: []string{"-log-format", "xml"}, want: []string{"-log-format", "text, json"}},
	{name: "bad bool", args: []string{"-compression=maybe"}, want: []string{"-compression"}},
	{name: "bad accept rate", args: []string{"-accept-rate", "fast"}, want: []string{"-accept-rate", "not a number"}},
	{name: "negative accept rate", args: []string{"-accept-rate", "-1"}, want: []string{"-accept-rate", "out of range"}},
	{name: "burst without rate", args: []string{"-accept-burst", "10"}, want: []string{"-accept-burst", "needs -accept-rate"}},
	{name: "link without redis", args: []string{"-cluster-link", ":7401"}, want: []string{"-cluster-link", "WSBRIDGE_CLUSTER_LINK", "needs -redis-url"}},
	{name: "bad trusted proxy", args: []string{"-trusted-proxies", "10.0.0.0/8,proxy.internal"}, want: []string{"-trusted-proxies", "proxy.internal"}},
	{name: "kept headers past 64KiB", args: []string{"-max-kept-header-bytes", "65KiB"}, want: []string{"-max-kept-header-bytes", "at most 64KiB"}},
	{name: "ws-addr without port", args: []string{"-ws-addr", "nope"}, want: []string{"-ws-addr", "WSBRIDGE_WS_ADDR"}},
	{name: "ws-path without slash", args: []string{"-ws-path", "ws"}, want: []string{"-ws-path", "WSBRIDGE_WS_PATH"}},
	{name: "queue-bytes below max-push-size", args: []string{"-queue-bytes", "1MiB"}, want: []string{"-queue-bytes", "WSBRIDGE_QUEUE_BYTES", "max-push-size"}},
	{name: "max-push-size above queue-bytes", args: []string{"-max-push-size", "17MiB"}, want: []string{"-queue-bytes", "max-push-size"}},
	{name: "max-queued-bytes below queue-bytes", args: []string{"-max-queued-bytes", "8MiB"}, want: []string{"-max-queued-bytes", "WSBRIDGE_MAX_QUEUED_BYTES", "-queue-bytes"}},
	{name: "queue-bytes above max-queued-bytes", args: []string{"-queue-bytes", "2GiB"}, want: []string{"-max-queued-bytes", "-queue-bytes"}},
	{name: "rpc-addr without scheme", args: []string{"-rpc-addr", "127.0.0.1:6001"}, want: []string{"-rpc-addr", "WSBRIDGE_RPC_ADDR"}},
	{name: "rpc-addr unix without path", args: []string{"-rpc-addr", "unix://"}, want: []string{"-rpc-addr", "want unix:///path/to.sock"}},
	{name: "rpc-addr scheme named", args: []string{"-rpc-addr", "http://127.0.0.1:6001"}, want: []string{"-rpc-addr", "the scheme must be tcp:// or unix://"}},
	{name: "rpc-addr bad port named", args: []string{"-rpc-addr", "tcp://127.0.0.1:70000"}, want: []string{"-rpc-addr", `bad port "70000"`}},
	{name: "rpc-max-inflight zero", args: []string{"-rpc-max-inflight", "0"}, want: []string{"-rpc-max-inflight", "1..65536"}},
	{name: "rpc-idle-timeout negative", args: []string{"-rpc-idle-timeout", "-1s"}, want: []string{"-rpc-idle-timeout", "0 for off"}},
	{name: "events-url not http", args: []string{"-events-url", "ftp://php/events"}, want: []string{"-events-url", "http"}},
	{name: "events-url without host", args: []string{"-events-url", "http:///events"}, want: []string{"-events-url", "no host"}},
	{name: "events-url password hidden", args: []string{"-events-url", "ftp://user:hunter2@php/"}, want: []string{"-events-url", "xxxxx"}},
	{name: "events-queue-total not above max-connections", args: []string{"-events-url", "http://app/", "-max-connections", "100", "-events-queue-total", "100"}, want: []string{"-events-queue-total", "WSBRIDGE_EVENTS_QUEUE_TOTAL", "-max-connections"}},
	{name: "events-queue-bytes not above the close events", args: []string{"-events-url", "http://app/", "-max-connections", "100", "-events-queue-bytes", "100KiB"}, want: []string{"-events-queue-bytes", "WSBRIDGE_EVENTS_QUEUE_BYTES", "-max-connections"}},
	{name: "admin-token too short", args: []string{"-admin-token", "short"}, want: []string{"-admin-token", "WSBRIDGE_ADMIN_TOKEN", "at least 16"}},
	{name: "admin-token with a space", args: []string{"-admin-token", "0123456789 abcdef"}, want: []string{"-admin-token", "no spaces"}},
	{name: "admin-token not ASCII", args: []string{"-admin-token", "0123456789abcdefü"}, want: []string{"-admin-token", "visible ASCII"}},
	{name: "admin-max-body below 1KiB", args: []string{"-admin-max-body", "1000"}, want: []string{"-admin-max-body", "at least 1024"}},
	{name: "positional argument", args: []string{"serve"}, want: []string{"unexpected argument", `"serve"`}},
	{name: "positional after flags", args: []string{"-node-id", "1", "extra"}, want: []string{"unexpected argument", `"extra"`}},

	{name: "env bad int", env: map[string]string{"WSBRIDGE_NODE_ID": "abc"}, want: []string{"WSBRIDGE_NODE_ID", `"abc"`}},
	{name: "env queue-bytes below max-push-size", env: map[string]string{"WSBRIDGE_QUEUE_BYTES": "1MiB"}, want: []string{"WSBRIDGE_QUEUE_BYTES"}},
	{name: "env admin-addr", env: map[string]string{"WSBRIDGE_ADMIN_ADDR": "localhost"}, want: []string{"WSBRIDGE_ADMIN_ADDR", `"localhost"`}},
	{
		name: "every bad variable is reported",
		env:  map[string]string{"WSBRIDGE_NODE_ID": "abc", "WSBRIDGE_WORKERS": "x", "WSBRIDGE_PING_INTERVAL": "0s"},
		want: []string{"WSBRIDGE_NODE_ID", "WSBRIDGE_WORKERS", "WSBRIDGE_PING_INTERVAL"},
	},
	{
		name: "every cross-setting error is reported",
		args: []string{"-ws-addr", "nope", "-ws-path", "ws", "-fragment-size", "2"},
		want: []string{"-ws-addr", "-ws-path", "-fragment-size"},
	},
	{
		name: "certificate without key",
		env:  map[string]string{"WSBRIDGE_TLS_CERT": "/tls.crt"},
		want: []string{"-tls-cert (WSBRIDGE_TLS_CERT) and -tls-key (WSBRIDGE_TLS_KEY) go together"},
	},
	{
		name: "key without certificate",
		args: []string{"-tls-key", "/tls.key"},
		want: []string{"-tls-cert (WSBRIDGE_TLS_CERT) and -tls-key (WSBRIDGE_TLS_KEY) go together"},
	},
	{
		name: "admin certificate without key",
		args: []string{"-admin-tls-cert", "/tls.crt"},
		want: []string{"-admin-tls-cert (WSBRIDGE_ADMIN_TLS_CERT) and -admin-tls-key (WSBRIDGE_ADMIN_TLS_KEY) go together"},
	},
	{
		name: "admin key without certificate",
		env:  map[string]string{"WSBRIDGE_ADMIN_TLS_KEY": "/tls.key"},
		want: []string{"-admin-tls-cert (WSBRIDGE_ADMIN_TLS_CERT) and -admin-tls-key (WSBRIDGE_ADMIN_TLS_KEY) go together"},
	},
	{
		name: "admin certificate with the admin server off",
		args: []string{"-admin-addr", "off", "-admin-tls-cert", "/tls.crt", "-admin-tls-key", "/tls.key"},
		want: []string{"WSBRIDGE_ADMIN_TLS_CERT", "admin server is off"},
	},
	{
		name: "a valid flag does not hide a bad variable",
		args: []string{"-node-id", "1"},
		env:  map[string]string{"WSBRIDGE_WORKERS": "many"},
		want: []string{"WSBRIDGE_WORKERS"},
	},
}

func TestParseConfigErrors(t *testing.T) {
	for _, tt := range badConfigTests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig(tt.args, envOf(tt.env), io.Discard)
			if err == nil {
				t.Fatalf("parseConfig(%q, %v) succeeded, want an error naming %q", tt.args, tt.env, tt.want)
			}
			var ue usageError
			if !errors.As(err, &ue) {
				t.Errorf("parseConfig(%q, %v) error %v (%T) is not a usageError", tt.args, tt.env, err, err)
			}
			if errors.Is(err, flag.ErrHelp) {
				t.Errorf("parseConfig(%q, %v) error %v is flag.ErrHelp", tt.args, tt.env, err)
			}
			if strings.Contains(err.Error(), "%!") {
				t.Errorf("parseConfig(%q, %v) error %q has a formatting fault", tt.args, tt.env, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("parseConfig(%q, %v) error %q does not contain %q", tt.args, tt.env, err, w)
				}
			}
		})
	}
}

var helpLine = regexp.MustCompile(`^  -(\S+)  \((\S+), default (.*)\)$`)

// parseHelp returns, for each flag --help lists, its variable and default.
func parseHelp(tb testing.TB, text string) map[string][2]string {
	tb.Helper()
	settings := map[string][2]string{}
	for _, line := range strings.Split(text, "\n") {
		if m := helpLine.FindStringSubmatch(line); m != nil {
			settings[m[1]] = [2]string{m[2], m[3]}
		}
	}
	return settings
}

func TestHelp(t *testing.T) {
	for _, arg := range []string{"--help", "-help", "-h"} {
		t.Run(arg, func(t *testing.T) {
			var out bytes.Buffer
			_, err := parseConfig([]string{arg}, noEnv, &out)
			if !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("parseConfig(%q) error = %v, want flag.ErrHelp", arg, err)
			}
			text := out.String()
			for _, s := range []string{"WSBRIDGE_WS_ADDR", "default :9502", "WSBRIDGE_WS_PATH", "WSBRIDGE_NODE_ID", "WSBRIDGE_RPC_ADDR"} {
				if !strings.Contains(text, s) {
					t.Errorf("%s output does not contain %q:\n%s", arg, s, text)
				}
			}
			// Each setting's variable and default: TestSettingsTable.
			listed := parseHelp(t, text)
			// Settings added later must follow the same pattern.
			for name, got := range listed {
				if got[0] != envName(name) || !strings.HasPrefix(got[0], "WSBRIDGE_") || got[1] == "" {
					t.Errorf("%s lists -%s with variable %q and default %q", arg, name, got[0], got[1])
				}
			}
			// Every flag in the real FlagSet appears: count the lines that
			// start a setting against the lines that match the pattern.
			if n := strings.Count(text, "\n  -"); n != len(listed) {
				t.Errorf("%s has %d setting lines, %d of them in the form '-name  (WSBRIDGE_NAME, default value)':\n%s", arg, n, len(listed), text)
			}
		})
	}
}

func TestEnvName(t *testing.T) {
	for flagName, want := range map[string]string{
		"ws-addr":          "WSBRIDGE_WS_ADDR",
		"ws-path":          "WSBRIDGE_WS_PATH",
		"node-id":          "WSBRIDGE_NODE_ID",
		"max-message-size": "WSBRIDGE_MAX_MESSAGE_SIZE",
		"compression":      "WSBRIDGE_COMPRESSION",
	} {
		if got := envName(flagName); got != want {
			t.Errorf("envName(%q) = %q, want %q", flagName, got, want)
		}
	}
}

var parseSizeTests = []struct {
	in   string
	want int64
	ok   bool
}{
	{"0", 0, true},
	{"1", 1, true},
	{"125", 125, true},
	{" 4096 ", 4096, true},
	{"1B", 1, true},
	{"1KiB", 1 << 10, true},
	{"1kib", 1 << 10, true},
	{"1 KiB", 1 << 10, true},
	{"1K", 1 << 10, true},
	{"1KB", 1 << 10, true},
	{"16MiB", 16 << 20, true},
	{"8M", 8 << 20, true},
	{"2MB", 2 << 20, true},
	{"1GiB", 1 << 30, true},
	{"1G", 1 << 30, true},
	{"1GB", 1 << 30, true},
	{"1024GiB", 1 << 40, true},
	{"1099511627776", 1 << 40, true},
	{"1048576KiB", 1 << 30, true},
	{"", 0, false},
	{" ", 0, false},
	{"KiB", 0, false},
	{"-1", 0, false},
	{"-1KiB", 0, false},
	{"1.5MiB", 0, false},
	{"1e6", 0, false},
	{"0x10", 0, false},
	{"1TiB", 0, false},
	{"1 T", 0, false},
	{"abc", 0, false},
	{"1025GiB", 0, false},
	{"1099511627777", 0, false},
	{"1073741825KiB", 0, false},
	{"9223372036854775807", 0, false},
	{"99999999999999999999", 0, false},
	{"9223372036854775807GiB", 0, false},
}

func TestParseSize(t *testing.T) {
	for _, tt := range parseSizeTests {
		got, err := parseSize(tt.in)
		if tt.ok && (err != nil || got != tt.want) {
			t.Errorf("parseSize(%q) = %d, %v, want %d, nil", tt.in, got, err, tt.want)
		}
		if !tt.ok && err == nil {
			t.Errorf("parseSize(%q) = %d, nil, want an error", tt.in, got)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for _, tt := range []struct {
		in   int64
		want string
	}{
		{0, "0"}, {1, "1"}, {1023, "1023"}, {1024, "1KiB"}, {1536, "1536"}, {3 << 10, "3KiB"},
		{1 << 20, "1MiB"}, {16 << 20, "16MiB"}, {1<<20 + 1024, "1025KiB"}, {1 << 30, "1GiB"}, {1 << 40, "1024GiB"},
	} {
		if got := formatSize(tt.in); got != tt.want {
			t.Errorf("formatSize(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, tt := range parseSizeTests {
		f.Add(tt.in)
	}
	for _, s := range []string{"+5", "-0", "00012", " 7 kB ", "1kıb", "1ſ", "\xff", "\xffB", "1\xffKiB", "KB", "B", "1 i B", "1_000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s)
		if err != nil {
			if n != 0 {
				t.Errorf("parseSize(%q) = %d with error %v, want 0", s, n, err)
			}
			if err.Error() == "" {
				t.Errorf("parseSize(%q) returned an empty error", s)
			}
			return
		}
		if n < 0 || n > 1<<40 {
			t.Fatalf("parseSize(%q) = %d, outside 0..1<<40", s, n)
		}
		text := formatSize(n)
		back, err := parseSize(text)
		if err != nil || back != n {
			t.Fatalf("parseSize(%q) = %d; formatSize gives %q, which parses to %d, %v", s, n, text, back, err)
		}
	})
}

// logSink collects what run writes to stderr, one JSON record a line, and
// lets a test wait for a record.
type logSink struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

func newLogSink() *logSink { return &logSink{changed: make(chan struct{})} }

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Write(p)
	close(s.changed)
	s.changed = make(chan struct{})
	return len(p), nil
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// records returns the JSON records written so far and a channel closed at
// the next write.
func (s *logSink) records(tb testing.TB) ([]map[string]any, <-chan struct{}) {
	tb.Helper()
	s.mu.Lock()
	text, changed := s.buf.String(), s.changed
	s.mu.Unlock()
	var recs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			continue // a line not yet complete, or not JSON
		}
		recs = append(recs, rec)
	}
	return recs, changed
}

// find returns the first record with message msg, if any.
func (s *logSink) find(tb testing.TB, msg string) (map[string]any, bool) {
	tb.Helper()
	recs, _ := s.records(tb)
	for _, r := range recs {
		if r["msg"] == msg {
			return r, true
		}
	}
	return nil, false
}

// waitRecord waits for a record with message msg for which match holds;
// stopped ends the wait early (the program returned).
func (s *logSink) waitRecord(tb testing.TB, msg string, match func(map[string]any) bool, stopped <-chan struct{}) map[string]any {
	tb.Helper()
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	for {
		recs, changed := s.records(tb)
		for _, r := range recs {
			if r["msg"] == msg && match(r) {
				return r
			}
		}
		select {
		case <-changed:
		case <-stopped:
			tb.Fatalf("run returned before logging the %q record wanted; log:\n%s", msg, s.String())
		case <-timeout.C:
			tb.Fatalf("no matching %q record within 20s; log:\n%s", msg, s.String())
		}
	}
}

// waitFor waits for a record with message msg; stopped ends the wait
// early (the program returned).
func (s *logSink) waitFor(tb testing.TB, msg string, stopped <-chan struct{}) map[string]any {
	tb.Helper()
	return s.waitRecord(tb, msg, func(map[string]any) bool { return true }, stopped)
}

// running is run, called in a goroutine by startRun.
type running struct {
	addr   string // the WebSocket listener's address
	log    *logSink
	cancel context.CancelFunc // starts the shutdown
	done   chan struct{}      // closed when run has returned
	code   int                // run's result, once done is closed
}

// startRun calls run in a goroutine with a WebSocket listener on a free
// port, JSON logs and args, and waits for it to listen.
func startRun(t *testing.T, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{log: newLogSink(), cancel: cancel, done: make(chan struct{})}
	args = append([]string{"-ws-addr", "127.0.0.1:0", "-rpc-addr", "tcp://127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-log-format", "json"}, args...)
	go func() {
		defer close(r.done)
		r.code = run(ctx, args, noEnv, io.Discard, r.log)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Errorf("run did not return 30s after its context was cancelled")
		}
	})
	rec := r.log.waitFor(t, "websocket listening", r.done)
	r.addr, _ = rec["addr"].(string)
	if r.addr == "" {
		t.Fatalf("websocket listening record has no addr: %v", rec)
	}
	return r
}

// stop cancels run's context and returns its exit code.
func (r *running) stop(t *testing.T) int {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		return r.code
	case <-time.After(30 * time.Second):
		t.Fatalf("run did not return within 30s of cancel; log:\n%s", r.log.String())
	}
	return -1
}

var dialer = websocket.Dialer{HandshakeTimeout: 10 * time.Second}

func dial(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	ws, resp, err := dialer.Dial(url, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP %d)", url, err, status)
	}
	t.Cleanup(func() { _ = ws.Close() })
	return ws
}

func TestRunGracefulShutdown(t *testing.T) {
	r := startRun(t)
	rec, _ := r.log.find(t, "websocket listening")
	if fmt.Sprint(rec["paths"]) != "[/]" || rec["node_id"] != float64(0) || rec["max_connections"] != float64(bridge.DefaultMaxConnections) {
		t.Errorf("websocket listening record = %v, want paths [/], node_id 0, max_connections %d", rec, bridge.DefaultMaxConnections)
	}

	if rec := r.log.waitFor(t, "rpc listening", r.done); !strings.HasPrefix(fmt.Sprint(rec["addr"]), "tcp://127.0.0.1:") {
		t.Errorf("rpc listening record = %v, want an addr on tcp://127.0.0.1", rec)
	}

	const clients = 3
	errs := make(chan error, clients)
	for range clients {
		ws := dial(t, "ws://"+r.addr+"/")
		go func() {
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	r.cancel()
	for range clients {
		select {
		case err := <-errs:
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
				t.Errorf("client read error = %v, want a close frame with code 1001", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("a client got no close frame 20s after shutdown began; log:\n%s", r.log.String())
		}
	}
	if code := r.stop(t); code != 0 {
		t.Errorf("run returned %d, want 0; log:\n%s", code, r.log.String())
	}
	for _, msg := range []string{"shutting down", "stopped"} {
		if _, ok := r.log.find(t, msg); !ok {
			t.Errorf("no %q log record; log:\n%s", msg, r.log.String())
		}
	}
	if _, ok := r.log.find(t, "shutdown deadline reached, remaining connections closed"); ok {
		t.Errorf("clients that answer the close frame hit the shutdown deadline; log:\n%s", r.log.String())
	}
}

// TestRunShutdownDeadline: a client that never answers the close frame is
// cut off at the shutdown timeout, well before the close timeout, and run
// still returns 0.
func TestRunShutdownDeadline(t *testing.T) {
	r := startRun(t, "-shutdown-timeout", "200ms", "-close-timeout", "10m")
	dial(t, "ws://"+r.addr+"/") // never read: the close frame stays unanswered
	r.waitConnections(t, 1)
	if code := r.stop(t); code != 0 {
		t.Errorf("run returned %d, want 0; log:\n%s", code, r.log.String())
	}
	if _, ok := r.log.find(t, "shutdown deadline reached, remaining connections closed"); !ok {
		t.Errorf("no shutdown deadline warning; log:\n%s", r.log.String())
	}
}

func TestRunHandshakes(t *testing.T) {
	r := startRun(t, "-ws-path", "/ws", "-max-connections", "1")
	dial(t, "ws://"+r.addr+"/ws")
	for _, tt := range []struct {
		path   string
		status int
	}{
		{"/", 404},
		{"/ws/", 404},
		{"/ws", 503}, // the one slot is taken
	} {
		_, resp, err := dialer.Dial("ws://"+r.addr+tt.path, nil)
		if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil || resp.StatusCode != tt.status {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			t.Errorf("dial %s: %v (HTTP %d), want %v with HTTP %d", tt.path, err, status, websocket.ErrBadHandshake, tt.status)
		}
	}
	if code := r.stop(t); code != 0 {
		t.Errorf("run returned %d, want 0; log:\n%s", code, r.log.String())
	}
}

// The poll read mode starts with a keepalive shorter than 5 s in all
// (ping interval + pong timeout): its read timeout then defaults to that
// sum, as the package's does, instead of a fixed 5 s the package refuses.
func TestPollModeWithAShortKeepalive(t *testing.T) {
	c, err := parseConfig(nil, envOf(map[string]string{"WSBRIDGE_READ_MODE": "poll", "WSBRIDGE_PING_INTERVAL": "2s", "WSBRIDGE_PONG_TIMEOUT": "1s"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c.Bridge.NodeID = 0 // as run sets it without a cluster
	c.Bridge.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := bridge.New(c.Bridge)
	if err != nil {
		t.Fatalf("poll mode with ping interval 2s and pong timeout 1s: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestRunBadConfig(t *testing.T) {
	for _, tt := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{args: []string{"-node-id", "5000"}, want: "node-id"},
		{args: []string{"-ws-addr", "nope"}, want: "WSBRIDGE_WS_ADDR"},
		{env: map[string]string{"WSBRIDGE_WRITE_TIMEOUT": "-1s"}, want: "WSBRIDGE_WRITE_TIMEOUT"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tt.args, envOf(tt.env), &stdout, &stderr)
		if code != 2 {
			t.Errorf("run(%q, %v) = %d, want 2", tt.args, tt.env, code)
		}
		if !strings.Contains(stderr.String(), tt.want) || !strings.Contains(stderr.String(), "--help") {
			t.Errorf("run(%q, %v) stderr = %q, want it to name %s and point to --help", tt.args, tt.env, stderr.String(), tt.want)
		}
		if stdout.Len() != 0 {
			t.Errorf("run(%q, %v) stdout = %q, want nothing", tt.args, tt.env, stdout.String())
		}
	}
}

func TestRunHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, noEnv, &stdout, &stderr); code != 0 {
		t.Errorf("run(--help) = %d, want 0", code)
	}
	if !strings.Contains(stdout.String(), "WSBRIDGE_WS_ADDR") {
		t.Errorf("run(--help) stdout = %q, want the settings", stdout.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("run(--help) stderr = %q, want nothing", stderr.String())
	}
}

// TestRunListenError: an address in use is a runtime failure, exit code 1.
func TestRunListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	log := newLogSink()
	code := run(context.Background(), []string{"-ws-addr", ln.Addr().String(), "-log-format", "json"}, noEnv, io.Discard, log)
	if code != 1 {
		t.Errorf("run on a busy address = %d, want 1", code)
	}
	rec, ok := log.find(t, "cannot listen for WebSocket connections")
	if !ok || rec["addr"] != ln.Addr().String() || rec["level"] != "ERROR" {
		t.Errorf("want an ERROR record naming %s; log:\n%s", ln.Addr(), log.String())
	}
}

// TestRunRPCListenError: an RPC address in use is a runtime failure too,
// and the WebSocket listener opened before it is released.
func TestRunRPCListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	log := newLogSink()
	code := run(context.Background(), []string{"-ws-addr", "127.0.0.1:0", "-rpc-addr", "tcp://" + ln.Addr().String(), "-log-format", "json"}, noEnv, io.Discard, log)
	if code != 1 {
		t.Errorf("run with a busy RPC address = %d, want 1", code)
	}
	if _, ok := log.find(t, "cannot start the RPC service"); !ok {
		t.Errorf("no RPC listen error record; log:\n%s", log.String())
	}
	if _, ok := log.find(t, "websocket listening"); ok {
		t.Errorf("run reported listening although it failed to start; log:\n%s", log.String())
	}
}

// TestRunRPCOff: with the RPC address "off" the bridge still serves
// WebSocket clients, and says that nothing can push.
func TestRunRPCOff(t *testing.T) {
	r := startRun(t, "-rpc-addr", "off")
	if _, ok := r.log.find(t, "RPC is off (WSBRIDGE_RPC_ADDR=off): nothing can push"); !ok {
		t.Errorf("no RPC-off warning; log:\n%s", r.log.String())
	}
	if _, ok := r.log.find(t, "rpc listening"); ok {
		t.Errorf("RPC listens although it is off; log:\n%s", r.log.String())
	}
	ws := dial(t, "ws://"+r.addr+"/")
	errs := make(chan error, 1)
	go func() {
		_, _, err := ws.ReadMessage()
		errs <- err
	}()
	if code := r.stop(t); code != 0 {
		t.Errorf("run returned %d, want 0; log:\n%s", code, r.log.String())
	}
	var ce *websocket.CloseError
	if err := <-errs; !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Errorf("client read error = %v, want a close frame with code 1001", err)
	}
}

func TestRunFDLimitWarning(t *testing.T) {
	const msg = "open file limit is below the connection cap: connections past it will fail to be accepted"
	for _, tt := range []struct {
		maxConns int
		warn     bool
	}{
		{1 << 30, true}, // above any Linux open-file limit
		{100, false},
	} {
		t.Run(fmt.Sprint(tt.maxConns), func(t *testing.T) {
			r := startRun(t, "-max-connections", fmt.Sprint(tt.maxConns))
			rec, warned := r.log.find(t, msg)
			if warned != tt.warn {
				t.Errorf("-max-connections %d: warned = %v, want %v; log:\n%s", tt.maxConns, warned, tt.warn, r.log.String())
			}
			if warned && (rec["level"] != "WARN" || rec["max_connections"] != float64(tt.maxConns)) {
				t.Errorf("warning record = %v, want level WARN and max_connections %d", rec, tt.maxConns)
			}
			if code := r.stop(t); code != 0 {
				t.Errorf("run returned %d, want 0", code)
			}
		})
	}
}

// TestEventsURLPasswordHidden: an error about an events URL does not echo
// its password, query or fragment (issue 8's review: the query was echoed).
func TestEventsURLPasswordHidden(t *testing.T) {
	_, err := parseConfig([]string{"-events-url", "ftp://user:hunter2@php/?token=tok1", "-events-auth-url", "gopher://u:pw2@php/#tok2"}, noEnv, io.Discard)
	if err == nil || strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "pw2") ||
		strings.Contains(err.Error(), "tok1") || strings.Contains(err.Error(), "tok2") {
		t.Errorf("parseConfig error %v, want one that hides the passwords, the query and the fragment", err)
	}
}

func TestLogURL(t *testing.T) {
	for in, want := range map[string]string{
		"":                                "",
		"http://php:9501/events":          "http://php:9501/events",
		"https://u:pw@php/events?key=abc": "https://u:xxxxx@php/events?…",
		"http://php/events?":              "http://php/events?…",
		"http://php/events#k":             "http://php/events",
	} {
		if got := events.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// eventSink records the event batches the binary posts.
type eventSink struct {
	srv    *httptest.Server
	mu     sync.Mutex
	events []map[string]any
	heads  []http.Header
}

func newEventSink(t *testing.T) *eventSink {
	s := &eventSink{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b struct{ Events []map[string]any }
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.events = append(s.events, b.Events...)
		s.heads = append(s.heads, r.Header.Clone())
		s.mu.Unlock()
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *eventSink) types() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.events {
		out = append(out, fmt.Sprint(e["type"]))
	}
	return out
}

// TestRunEvents: with -events-url, run delivers a client's events, and on
// shutdown the close events of the clients it closes before it returns;
// it warns when no secret signs them, and never logs the secret.
func TestRunEvents(t *testing.T) {
	for _, secret := range []string{"", "hush-hush"} {
		t.Run(fmt.Sprintf("secret %q", secret), func(t *testing.T) {
			s := newEventSink(t)
			args := []string{"-events-url", s.srv.URL + "/events"}
			if secret != "" {
				args = append(args, "-events-secret", secret)
			}
			r := startRun(t, args...)
			rec, ok := r.log.find(t, "events configured")
			if !ok || rec["signed"] != (secret != "") || rec["url"] != s.srv.URL+"/events" {
				t.Errorf("events configured record %v", rec)
			}
			const warning = "events and authorization requests are not signed: set WSBRIDGE_EVENTS_SECRET so the application can verify they come from the bridge"
			if _, warned := r.log.find(t, warning); warned != (secret == "") {
				t.Errorf("unsigned warning logged = %v with secret %q", warned, secret)
			}
			ws := dial(t, "ws://"+r.addr+"/")
			if err := ws.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
				t.Fatal(err)
			}
			go func() { _, _, _ = ws.ReadMessage() }() // answers the close frame
			deadline := time.Now().Add(20 * time.Second)
			for len(s.types()) < 2 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if code := r.stop(t); code != 0 {
				t.Errorf("run returned %d, want 0; log:\n%s", code, r.log.String())
			}
			// Delivered before run returned: the hub's shutdown, then the drain.
			if got := s.types(); !reflect.DeepEqual(got, []string{"open", "message", "close"}) {
				t.Errorf("events %v, want open, message, close; log:\n%s", got, r.log.String())
			}
			if rec, ok := r.log.find(t, "events stopped"); !ok || rec["delivered"] != float64(3) || rec["drained"] != true {
				t.Errorf("events stopped record %v, want 3 delivered, drained", rec)
			}
			s.mu.Lock()
			for _, h := range s.heads {
				if (h.Get("X-Wsbridge-Signature") != "") != (secret != "") {
					t.Errorf("request headers %v with secret %q", h, secret)
				}
			}
			s.mu.Unlock()
			if secret != "" && strings.Contains(r.log.String(), secret) {
				t.Errorf("the secret is in the log:\n%s", r.log.String())
			}
		})
	}
}

// The client rate settings: defaults, 0 as no limit, and the byte burst's
// check against the message size.
func TestClientRateSettings(t *testing.T) {
	c := defaultConfig(t)
	if b := c.Bridge; b.ClientMessageRate != 100 || b.ClientMessageBurst != 1000 || b.ClientByteRate != 1<<20 ||
		b.ClientByteBurst != 0 || b.ClientRatePolicy != bridge.RatePolicyClose {
		t.Fatalf("defaults %v %v %v %v %q", b.ClientMessageRate, b.ClientMessageBurst, b.ClientByteRate, b.ClientByteBurst, b.ClientRatePolicy)
	}
	c, err := parseConfig([]string{"-client-message-rate", "0.5", "-client-byte-burst", "4MiB"}, envOf(map[string]string{
		"WSBRIDGE_CLIENT_MESSAGE_BURST": "7", "WSBRIDGE_CLIENT_BYTE_RATE": "64KiB", "WSBRIDGE_CLIENT_RATE_POLICY": "drop",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if b := c.Bridge; b.ClientMessageRate != 0.5 || b.ClientMessageBurst != 7 || b.ClientByteRate != 64<<10 ||
		b.ClientByteBurst != 4<<20 || b.ClientRatePolicy != bridge.RatePolicyDrop {
		t.Fatalf("parsed %v %v %v %v %q", b.ClientMessageRate, b.ClientMessageBurst, b.ClientByteRate, b.ClientByteBurst, b.ClientRatePolicy)
	}
	c, err = parseConfig(nil, envOf(map[string]string{"WSBRIDGE_CLIENT_MESSAGE_RATE": "0", "WSBRIDGE_CLIENT_BYTE_RATE": "0"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if b := c.Bridge; b.ClientMessageRate != bridge.RateUnlimited || b.ClientByteRate != bridge.RateUnlimited {
		t.Fatalf("0 gave %v and %v, want RateUnlimited", b.ClientMessageRate, b.ClientByteRate)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-client-message-rate", "-1"}, "-client-message-rate"},
		{[]string{"-client-message-rate", "NaN"}, "-client-message-rate"},
		{[]string{"-client-message-burst", "0"}, "-client-message-burst"},
		{[]string{"-client-byte-rate", "fast"}, "-client-byte-rate"},
		{[]string{"-client-rate-policy", "sometimes"}, "-client-rate-policy"},
		{[]string{"-client-byte-burst", "512KiB"}, "WSBRIDGE_CLIENT_BYTE_BURST"},
		{[]string{"-client-byte-burst", "2MiB", "-max-message-size", "4MiB"}, "-client-byte-burst"},
	} {
		if _, err := parseConfig(tt.args, noEnv, io.Discard); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseConfig(%q) = %v, want an error naming %s", tt.args, err, tt.want)
		}
	}
	// A byte burst under the message size is fine with no byte limit.
	if _, err := parseConfig([]string{"-client-byte-burst", "1KiB", "-client-byte-rate", "0"}, noEnv, io.Discard); err != nil {
		t.Errorf("no byte limit, small burst: %v", err)
	}
}

// FuzzSettingValue: any value of any setting, given by its environment
// variable, is accepted or refused with an error that names the setting
// (and never echoes a secret); parsing never panics.
func FuzzSettingValue(f *testing.F) {
	for i, v := range []string{"0", "-1", "1e400", "NaN", "1KiB", "99999999999999999999", "tcp://[::1", "unix://", "a,b,,c", "10.0.0.0/33",
		"http://u:pw@h/?t=x", "\x00", "0x10", "1h1h", "-5s", "yes", "TRUE", "0777", "json ", "*"} {
		f.Add(uint16(i), v)
	}
	for i, s := range settings {
		f.Add(uint16(i), s.example)
		for _, bad := range s.kind.bind(&config{}).refused() {
			f.Add(uint16(i), bad)
		}
	}
	f.Fuzz(func(t *testing.T, idx uint16, value string) {
		s := settings[int(idx)%len(settings)]
		env := map[string]string{envName(s.name): value}
		_, err := parseConfig(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard)
		if err == nil {
			return
		}
		msg := err.Error()
		if !strings.Contains(msg, "-"+s.name) && !strings.Contains(msg, envName(s.name)) {
			t.Errorf("%s=%q: error %q does not name the setting", envName(s.name), value, msg)
		}
		// A formatting fault (%!w(...)) of the message itself, not a "%!"
		// that the value brought in.
		if strings.Contains(strings.NewReplacer(strconv.Quote(value), "", value, "").Replace(msg), "%!") {
			t.Errorf("%s=%q: error %q has a formatting fault", envName(s.name), value, msg)
		}
		if s.secret && len(value) >= 4 && strings.Contains(msg, value) {
			t.Errorf("%s=%q: the error echoes the secret: %q", envName(s.name), value, msg)
		}
	})
}
