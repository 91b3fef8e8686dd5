package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/wsbridge/wsbridge/admin"
	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/events"
	"github.com/wsbridge/wsbridge/rpc"
)

// config is everything the binary can be told, from flags and WSBRIDGE_*
// environment variables (a flag wins over its variable).
type config struct {
	WSAddr          string
	ShutdownTimeout time.Duration
	ReleaseMemory   time.Duration // quiet time after a burst of connections before freed memory goes back to the OS (memory.go); 0: off
	LogLevel        slog.Level
	LogFormat       string
	Bridge          bridge.Config
	RPC             rpc.Config
	Events          events.Config
	Admin           admin.Config
	Cluster         clusterConfig
	// TLS is the WebSocket listener's certificate (wss://), AdminTLS the
	// admin listener's (https://); empty pairs: plain TCP.
	TLS, AdminTLS     tlsPair
	TLSReloadInterval time.Duration
}

// clusterConfig is what cluster mode needs beside the node id
// (Bridge.NodeID, cluster.AutoNodeID for auto).
type clusterConfig struct {
	URL       string // WSBRIDGE_REDIS_URL; empty: standalone
	Prefix    string
	Timeout   time.Duration
	BatchHold time.Duration // 0: never hold
	TTL       time.Duration
	Link      string // WSBRIDGE_CLUSTER_LINK; empty: no link listener
}

func (c config) clusterOn() bool { return c.Cluster.URL != "" }

// tlsPair names a PEM certificate chain and its key.
type tlsPair struct{ Cert, Key string }

func (p tlsPair) on() bool { return p.Cert != "" || p.Key != "" }

// envName is the environment variable of a flag: ws-addr → WSBRIDGE_WS_ADDR.
func envName(flagName string) string {
	return "WSBRIDGE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// usageError is a configuration error: the binary exits 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// parseConfig reads args and then, for every flag not given, its
// environment variable; an empty variable counts as unset, as deployment
// files that substitute ${VAR} produce them. --help prints the settings to
// out and returns flag.ErrHelp. The settings are the table in settings.go.
func parseConfig(args []string, lookupEnv func(string) (string, bool), out io.Writer) (config, error) {
	c, err := loadConfig(args, lookupEnv, out)
	if err != nil {
		return c, err
	}
	return c, c.check()
}

// loadConfig is parseConfig without the rules: the defaults, then the
// flags and variables, each refused only where its kind's syntax is.
func loadConfig(args []string, lookupEnv func(string) (string, bool), out io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("wsbridge", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	values := make([]value, len(settings))
	for i, s := range settings {
		values[i] = s.kind.bind(&c)
		values[i].reset()
		fs.Var(values[i], s.name, s.help)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(fs, out)
			return c, err
		}
		return c, usageError{err}
	}
	if fs.NArg() > 0 {
		return c, usageError{fmt.Errorf("unexpected argument %q (settings are flags or %s variables)", fs.Arg(0), envName("*"))}
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	for i, s := range settings {
		if given[s.name] {
			continue
		}
		v, ok := lookupEnv(envName(s.name))
		if !ok || v == "" {
			continue
		}
		if err := values[i].Set(v); err != nil {
			if s.secret {
				errs = append(errs, fmt.Errorf("invalid value for %s: %w", envName(s.name), err))
			} else {
				errs = append(errs, fmt.Errorf("invalid value %q for %s: %w", v, envName(s.name), err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return c, usageError{err}
	}
	return c, nil
}

// check validates what single flags cannot: first each setting's own rule
// (its kind's), then crossChecks. Each error names its setting.
func (c config) check() error {
	var errs []error
	for _, s := range settings {
		v := s.kind.bind(&c)
		if err := v.check(); err != nil {
			if s.secret { // never the value
				errs = append(errs, fmt.Errorf("invalid value for -%s (%s): %w", s.name, envName(s.name), err))
			} else {
				errs = append(errs, fmt.Errorf("invalid value %s for -%s (%s): %w", v.quoted(), s.name, envName(s.name), err))
			}
		}
	}
	for _, check := range crossChecks {
		if err := check(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return usageError{err}
	}
	return nil
}

// crossChecks are the rules between settings; each error names the setting
// at fault and its variable. A rule about one setting alone belongs to
// its kind in the settings table.
var crossChecks = []func(c config) error{
	func(c config) error {
		if c.Cluster.Link != "" && !c.clusterOn() {
			return fmt.Errorf("invalid value %q for -cluster-link (%s): needs -redis-url (%s): links join the nodes of a cluster", c.Cluster.Link, envName("cluster-link"), envName("redis-url"))
		}
		return nil
	},
	func(c config) error {
		if c.Bridge.QueueBytes < c.Bridge.MaxPushSize {
			return fmt.Errorf("invalid value %d for -queue-bytes (%s): must be at least -max-push-size (%d)", c.Bridge.QueueBytes, envName("queue-bytes"), c.Bridge.MaxPushSize)
		}
		return nil
	},
	func(c config) error {
		if b := c.Bridge; b.ClientByteRate > 0 && b.ClientByteBurst != 0 && b.ClientByteBurst < b.MaxMessageSize {
			return fmt.Errorf("invalid value %d for -client-byte-burst (%s): must be at least -max-message-size (%d), or a message of that size could never pass", b.ClientByteBurst, envName("client-byte-burst"), b.MaxMessageSize)
		}
		return nil
	},
	func(c config) error {
		if c.Bridge.MaxQueuedBytes < int64(c.Bridge.QueueBytes) {
			return fmt.Errorf("invalid value %d for -max-queued-bytes (%s): must be at least -queue-bytes (%d)", c.Bridge.MaxQueuedBytes, envName("max-queued-bytes"), c.Bridge.QueueBytes)
		}
		return nil
	},
	func(c config) error {
		if c.Bridge.AcceptBurst > 0 && c.Bridge.AcceptRate == 0 {
			return fmt.Errorf("invalid value %d for -accept-burst (%s): needs -accept-rate (%s)", c.Bridge.AcceptBurst, envName("accept-burst"), envName("accept-rate"))
		}
		return nil
	},
	// Each open connection holds room for its close event.
	func(c config) error {
		if c.Events.URL != "" && c.Events.QueueTotal <= c.Bridge.MaxConnections {
			return fmt.Errorf("invalid value %d for -events-queue-total (%s): must exceed -max-connections (%d): each open connection reserves one event for its close",
				c.Events.QueueTotal, envName("events-queue-total"), c.Bridge.MaxConnections)
		}
		return nil
	},
	func(c config) error {
		if c.Events.URL != "" && c.Events.QueueBytes <= c.Bridge.MaxConnections*events.MaxCloseEventSize {
			return fmt.Errorf("invalid value %d for -events-queue-bytes (%s): must exceed -max-connections (%d) times %d bytes: each open connection reserves that for its close event",
				c.Events.QueueBytes, envName("events-queue-bytes"), c.Bridge.MaxConnections, events.MaxCloseEventSize)
		}
		return nil
	},
	func(c config) error { return checkPair(c.TLS, "tls-cert", "tls-key") },
	func(c config) error { return checkPair(c.AdminTLS, "admin-tls-cert", "admin-tls-key") },
	func(c config) error {
		if c.AdminTLS.on() && !c.adminOn() {
			return fmt.Errorf("-admin-tls-cert (%s) is set but the admin server is off (-admin-addr %q)", envName("admin-tls-cert"), c.Admin.Addr)
		}
		return nil
	},
}

// checkPair refuses a certificate without its key and a key without its
// certificate.
func checkPair(p tlsPair, cert, key string) error {
	if (p.Cert == "") != (p.Key == "") {
		return fmt.Errorf("-%s (%s) and -%s (%s) go together: set both or neither", cert, envName(cert), key, envName(key))
	}
	return nil
}

// adminOn reports whether the admin server is configured ("off" or an
// empty -admin-addr turns it off).
func (c config) adminOn() bool { return c.Admin.Addr != "" && c.Admin.Addr != "off" }

// eventsOn reports whether the events package is needed: to deliver events,
// to authorize handshakes, or both.
func (c config) eventsOn() bool { return c.Events.URL != "" || c.Events.AuthURL != "" }

// rpcOn reports whether the RPC service is configured ("off" or an empty
// -rpc-addr turns it off).
func (c config) rpcOn() bool { return c.RPC.Addr != "" && c.RPC.Addr != "off" }

// printUsage prints the settings by section, in the table's order, each
// with its variable and the default fs holds for it.
func printUsage(fs *flag.FlagSet, out io.Writer) {
	fmt.Fprintf(out, "Usage: wsbridge [flags]\n\nEvery flag can also be set by its environment variable; a flag wins.\n")
	group := ""
	for _, s := range settings {
		if s.group != group {
			group = s.group
			fmt.Fprintf(out, "\n%s:\n", group)
		}
		def := fs.Lookup(s.name).DefValue
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(out, "  -%s  (%s, default %s)\n      %s\n", s.name, envName(s.name), def, s.help)
	}
}

// secretMask stands for a secret that is set, wherever the effective
// config is shown; an unset secret shows as empty.
const secretMask = "********"

// effectiveSetting is one setting's value in a config as an operator may
// see it: a secret masked, a URL without its password.
type effectiveSetting struct {
	Name, Env, Group string
	Value            string
	Default          bool // the value is the built-in default
}

// effectiveSettings lists every setting of c in the table's order.
func effectiveSettings(c config) []effectiveSetting {
	var defaults config
	out := make([]effectiveSetting, 0, len(settings))
	for _, s := range settings {
		def := s.kind.bind(&defaults)
		def.reset()
		v := s.kind.bind(&c)
		e := effectiveSetting{Name: s.name, Env: envName(s.name), Group: s.group, Value: v.display(), Default: v.String() == def.String()}
		if s.secret && v.String() != "" {
			e.Value = secretMask
		}
		out = append(out, e)
	}
	return out
}

// writeEffective prints effectiveSettings as an environment file: a
// comment line per section, then VAR=value lines (quoted in Go syntax
// where the value has spaces, quotes, # or control characters).
func writeEffective(w io.Writer, c config) error {
	group := ""
	for _, e := range effectiveSettings(c) {
		if e.Group != group {
			if group != "" {
				if _, err := fmt.Fprintln(w); err != nil {
					return fmt.Errorf("write effective config: %w", err)
				}
			}
			group = e.Group
			if _, err := fmt.Fprintf(w, "# %s\n", group); err != nil {
				return fmt.Errorf("write effective config: %w", err)
			}
		}
		value := e.Value
		if strings.ContainsFunc(value, func(r rune) bool { return r <= ' ' || r == '"' || r == '\'' || r == '\\' || r == '#' || r > '~' }) {
			value = strconv.Quote(value)
		}
		if _, err := fmt.Fprintf(w, "%s=%s\n", e.Env, value); err != nil {
			return fmt.Errorf("write effective config: %w", err)
		}
	}
	return nil
}
