package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/cluster"
	"github.com/wsbridge/wsbridge/events"
	"github.com/wsbridge/wsbridge/rpc"
)

// The kinds of the settings table: each knows a field of config, its
// default, how a value is parsed and printed, which values of its syntax
// it refuses (for the tests), and the setting's own rule, if any.

// binder binds a setting to its field in one config.
type binder interface {
	bind(c *config) value
}

// value is a setting bound to its field: a flag.Value whose Set parses
// (and refuses what its kind's syntax does not allow) and whose String is
// the canonical text (--help's default, what the README says).
type value interface {
	flag.Value
	reset()          // sets the field to the default
	check() error    // the setting's own rule, on the final value
	display() string // the value as the effective config shows it
	quoted() string  // the value as an error message shows it
	refused() []string
}

// kind is a setting's type: T is the type of its field.
type kind[T any] struct {
	field  func(*config) *T
	def    T
	parse  func(string) (T, error)
	format func(T) string
	// show is what the effective config and errors show instead of
	// format (a URL without its password); nil: format.
	show func(T) string
	// quote is how an error message shows the value; nil: %q of show.
	quote func(T) string
	// valid is the setting's own rule beyond its syntax; nil: none.
	valid func(T) error
	// bad are values the kind (or its rule) refuses: the tests give them.
	bad    []string
	isBool bool
}

// rule adds the setting's own rule, checked once every source is read,
// and values it refuses.
func (k kind[T]) rule(valid func(T) error, refused ...string) kind[T] {
	k.valid = valid
	k.bad = append(append([]string(nil), k.bad...), refused...)
	return k
}

// withDefault sets the setting's default.
func (k kind[T]) withDefault(def T) kind[T] {
	k.def = def
	return k
}

// shown makes the effective config and error messages show show(value)
// instead of the value (events.RedactURL: a URL without its password).
func (k kind[T]) shown(show func(T) string) kind[T] {
	k.show = show
	return k
}

func (k kind[T]) bind(c *config) value { return &bound[T]{k: k, p: k.field(c)} }

type bound[T any] struct {
	k kind[T]
	p *T
}

func (v *bound[T]) Set(s string) error {
	x, err := v.k.parse(s)
	if err != nil {
		return err
	}
	*v.p = x
	return nil
}

func (v *bound[T]) String() string {
	if v == nil || v.p == nil || v.k.format == nil {
		return ""
	}
	return v.k.format(*v.p)
}

// IsBoolFlag lets a boolean be given as -name alone (flag.boolFlag).
func (v *bound[T]) IsBoolFlag() bool { return v.k.isBool }

func (v *bound[T]) reset() { *v.p = v.k.def }

func (v *bound[T]) check() error {
	if v.k.valid == nil {
		return nil
	}
	return v.k.valid(*v.p)
}

func (v *bound[T]) display() string {
	if v.k.show != nil {
		return v.k.show(*v.p)
	}
	return v.String()
}

func (v *bound[T]) quoted() string {
	if v.k.quote != nil {
		return v.k.quote(*v.p)
	}
	return strconv.Quote(v.display())
}

func (v *bound[T]) refused() []string { return v.k.bad }

// str is a string taken as given.
func str(field func(*config) *string, def string) kind[string] {
	return kind[string]{field: field, def: def,
		parse:  func(s string) (string, error) { return s, nil },
		format: func(s string) string { return s }}
}

// intIn is an integer in min..max.
func intIn(field func(*config) *int, def, min, max int) kind[int] {
	bad := []string{"abc", "1.5"}
	if min > math.MinInt {
		bad = append(bad, strconv.Itoa(min-1))
	}
	if max < math.MaxInt {
		bad = append(bad, strconv.Itoa(max+1))
	}
	return kind[int]{field: field, def: def, bad: bad,
		parse: func(s string) (int, error) {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil {
				return 0, errors.New("not an integer")
			}
			if n < min || n > max {
				return 0, fmt.Errorf("out of range %d..%d", min, max)
			}
			return n, nil
		},
		format: strconv.Itoa,
		quote:  strconv.Itoa}
}

// intOr is intIn that also takes one word, stored as wordValue (outside
// min..max) and printed back as the word: "an int or auto".
func intOr(field func(*config) *int, def, min, max int, word string, wordValue int) kind[int] {
	k := intIn(field, def, min, max)
	in := k.parse
	k.parse = func(s string) (int, error) {
		if strings.EqualFold(strings.TrimSpace(s), word) {
			return wordValue, nil
		}
		n, err := in(s)
		if err != nil && err.Error() == "not an integer" {
			return 0, fmt.Errorf("not an integer or %q", word)
		}
		return n, err
	}
	k.format = func(n int) string {
		if n == wordValue {
			return word
		}
		return strconv.Itoa(n)
	}
	k.quote = func(n int) string { return strconv.Quote(k.format(n)) }
	return k
}

// sizeBad are sizes parseSize refuses, and the one below min.
func sizeBad(min int64) []string {
	bad := []string{"lots", "1.5MiB", "2TiB", "-1", "1025GiB", "99999999999999999999"}
	if min > 0 {
		bad = append(bad, strconv.FormatInt(min-1, 10))
	}
	return bad
}

func parseSizeAtLeast(s string, min int64) (int64, error) {
	n, err := parseSize(s)
	if err != nil {
		return 0, err
	}
	if n < min {
		return 0, fmt.Errorf("must be at least %d", min)
	}
	return n, nil
}

// sizeOf is a byte count of at least min (parseSize) in an int.
func sizeOf(field func(*config) *int, def int, min int64) kind[int] {
	return kind[int]{field: field, def: def, bad: sizeBad(min),
		parse: func(s string) (int, error) {
			n, err := parseSizeAtLeast(s, min)
			return int(n), err
		},
		format: func(n int) string { return formatSize(int64(n)) },
		quote:  strconv.Itoa}
}

// size64 is a byte count of at least min (parseSize) in an int64.
func size64(field func(*config) *int64, def, min int64) kind[int64] {
	return kind[int64]{field: field, def: def, bad: sizeBad(min),
		parse:  func(s string) (int64, error) { return parseSizeAtLeast(s, min) },
		format: formatSize,
		quote:  func(n int64) string { return strconv.FormatInt(n, 10) }}
}

// byteRate is bytes per second: a size, 0 for no limit (stored as
// bridge.RateUnlimited).
func byteRate(field func(*config) *int64, def int64) kind[int64] {
	return kind[int64]{field: field, def: def, bad: []string{"fast", "-1", "1.5KiB"},
		parse: func(s string) (int64, error) {
			n, err := parseSize(s)
			if err != nil {
				return 0, err
			}
			if n == 0 {
				return bridge.RateUnlimited, nil
			}
			return n, nil
		},
		format: func(n int64) string { return formatSize(max(n, 0)) },
		quote:  func(n int64) string { return strconv.FormatInt(max(n, 0), 10) }}
}

// rate is a rate per second: a number from 0 to MaxInt32, 0 for no
// limit, stored as off (0, or bridge.RateUnlimited where 0 means the
// default).
func rate(field func(*config) *float64, def, off float64) kind[float64] {
	return kind[float64]{field: field, def: def, bad: []string{"fast", "-1", "NaN", "Inf", "1e10"},
		parse: func(s string) (float64, error) {
			f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				return 0, errors.New("not a number (per second, like 50 or 0.5; 0: no limit)")
			}
			if f < 0 || f > math.MaxInt32 {
				return 0, fmt.Errorf("out of range 0..%d", math.MaxInt32)
			}
			if f == 0 {
				return off, nil
			}
			return f, nil
		},
		format: func(f float64) string {
			if f < 0 {
				return "0"
			}
			return strconv.FormatFloat(f, 'g', -1, 64)
		}}
}

// dur is a positive duration.
func dur(field func(*config) *time.Duration, def time.Duration) kind[time.Duration] {
	return durKind(field, def, "")
}

// offDur is a duration whose default, 0, means off.
func offDur(field func(*config) *time.Duration) kind[time.Duration] {
	return durKind(field, 0, "off")
}

// autoDur is a duration whose default, 0, leaves it to the package, which
// derives it from other settings (the help says how).
func autoDur(field func(*config) *time.Duration) kind[time.Duration] {
	return durKind(field, 0, "the default")
}

// durKind is a duration; zero, when not empty, says what 0 means (then
// allowed).
func durKind(field func(*config) *time.Duration, def time.Duration, zero string) kind[time.Duration] {
	zeroOK := zero != ""
	bad := []string{"soon", "10", "-1s", "1h1"}
	if !zeroOK {
		bad = append(bad, "0s")
	}
	return kind[time.Duration]{field: field, def: def, bad: bad,
		parse: func(s string) (time.Duration, error) {
			d, err := time.ParseDuration(strings.TrimSpace(s))
			if err != nil {
				return 0, errors.New("not a duration (like 500ms, 10s, 1m)")
			}
			if d < 0 || d == 0 && !zeroOK {
				if zeroOK {
					return 0, errors.New("must be positive, or 0 for " + zero)
				}
				return 0, errors.New("must be positive")
			}
			return d, nil
		},
		format: time.Duration.String}
}

// choice is one of a few words, in any case.
func choice[T ~string](field func(*config) *T, def T, choices ...T) kind[T] {
	words := make([]string, len(choices))
	for i, c := range choices {
		words[i] = string(c)
	}
	return kind[T]{field: field, def: def, bad: []string{"sometimes", "x" + words[0]},
		parse: func(s string) (T, error) {
			s = strings.ToLower(strings.TrimSpace(s))
			for _, c := range choices {
				if s == string(c) {
					return c, nil
				}
			}
			return "", fmt.Errorf("must be one of %s", strings.Join(words, ", "))
		},
		format: func(v T) string { return string(v) }}
}

// boolean is true or false (strconv.ParseBool); a flag alone means true.
func boolean(field func(*config) *bool, def bool) kind[bool] {
	return kind[bool]{field: field, def: def, bad: []string{"maybe", "yes please"}, isBool: true,
		parse: func(s string) (bool, error) {
			b, err := strconv.ParseBool(s)
			if err != nil {
				return false, errors.New("parse error") // what the flag package says
			}
			return b, nil
		},
		format: strconv.FormatBool}
}

// list is comma-separated words; empty items are dropped.
func list(field func(*config) *[]string) kind[[]string] {
	return kind[[]string]{field: field,
		parse: func(s string) ([]string, error) {
			var out []string
			for _, part := range strings.Split(s, ",") {
				if part = strings.TrimSpace(part); part != "" {
					out = append(out, part)
				}
			}
			return out, nil
		},
		format: func(l []string) string { return strings.Join(l, ",") }}
}

// prefixList is a comma-separated list of networks: CIDRs, or single
// addresses (a /32 or /128).
func prefixList(field func(*config) *[]netip.Prefix) kind[[]netip.Prefix] {
	return kind[[]netip.Prefix]{field: field, bad: []string{"10.0.0.0/33", "10.0.0.0/8,proxy.internal", "fe80::1%eth0"},
		parse: func(s string) ([]netip.Prefix, error) {
			var out []netip.Prefix
			for _, part := range strings.Split(s, ",") {
				if part = strings.TrimSpace(part); part == "" {
					continue
				}
				if p, err := netip.ParsePrefix(part); err == nil {
					if p.Addr().Zone() != "" {
						return nil, fmt.Errorf("%q: a network has no zone", part)
					}
					out = append(out, p.Masked())
					continue
				}
				a, err := netip.ParseAddr(part)
				if err != nil || a.Zone() != "" {
					return nil, fmt.Errorf("%q is not a network (CIDR like 10.0.0.0/8) or an address", part)
				}
				a = a.Unmap()
				out = append(out, netip.PrefixFrom(a, a.BitLen()))
			}
			return out, nil
		},
		format: func(l []netip.Prefix) string {
			parts := make([]string, len(l))
			for i, p := range l {
				parts[i] = p.String()
			}
			return strings.Join(parts, ",")
		}}
}

// fileMode is a file mode in octal, 1..0777.
func fileMode(field func(*config) *fs.FileMode, def fs.FileMode) kind[fs.FileMode] {
	return kind[fs.FileMode]{field: field, def: def, bad: []string{"rw", "0999", "0", "01777"},
		parse: func(s string) (fs.FileMode, error) {
			n, err := strconv.ParseUint(strings.TrimSpace(s), 8, 32)
			if err != nil || n == 0 || n > 0o777 {
				return 0, errors.New("not a file mode (octal, like 0660)")
			}
			return fs.FileMode(n), nil
		},
		format: func(m fs.FileMode) string { return fmt.Sprintf("%#o", uint32(m)) }}
}

// level is a log level: debug, info, warn (or warning), error.
func level(field func(*config) *slog.Level, def slog.Level) kind[slog.Level] {
	return kind[slog.Level]{field: field, def: def, bad: []string{"loud", "trace"},
		parse: func(s string) (slog.Level, error) {
			switch strings.ToLower(strings.TrimSpace(s)) {
			case "debug":
				return slog.LevelDebug, nil
			case "info":
				return slog.LevelInfo, nil
			case "warn", "warning":
				return slog.LevelWarn, nil
			case "error":
				return slog.LevelError, nil
			}
			return 0, errors.New("must be one of debug, info, warn, error")
		},
		format: func(l slog.Level) string { return strings.ToLower(l.String()) }}
}

// maxSize keeps sizes within what an int holds on every platform we build.
const maxSize = 1 << 40

// parseSize reads a byte count: a plain integer, or one with a binary
// suffix (KiB, MiB, GiB; K, M, G and KB, MB, GB mean the same).
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	upper := strings.ToUpper(t)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(upper, u.suffix) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("not a size (bytes, or with KiB, MiB, GiB)")
	}
	if n > maxSize/mult {
		return 0, fmt.Errorf("too large (at most %s)", formatSize(maxSize))
	}
	return n * mult, nil
}

func formatSize(n int64) string {
	switch {
	case n != 0 && n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "GiB"
	case n != 0 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n != 0 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10)
}

// The rules of single settings. Each returns the reason only: the error
// message names the setting, its variable and the value (settingError).

// checkHostPort accepts host:port with a port a listener can bind (a number
// in 0..65535 or a service name).
func checkHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}

func checkPaths(paths []string) error {
	if len(paths) == 0 {
		return errors.New("at least one path")
	}
	for _, p := range paths {
		if !strings.HasPrefix(p, "/") {
			return fmt.Errorf("%q must start with /", p)
		}
		if len(p) > bridge.MaxPathLength {
			return fmt.Errorf("a path is at most %d bytes", bridge.MaxPathLength)
		}
	}
	return nil
}

// checkAdminAddr is checkHostPort unless the admin server is off ("off"
// or empty).
func checkAdminAddr(addr string) error {
	if addr == "" || addr == "off" {
		return nil
	}
	return checkHostPort(addr)
}

// checkRPCAddr accepts what rpc.ParseAddr does, or "off" or empty (no RPC).
func checkRPCAddr(addr string) error {
	if addr == "" || addr == "off" {
		return nil
	}
	if _, _, err := rpc.ParseAddr(addr); err != nil {
		return rpcAddrReason(addr, err)
	}
	return nil
}

// rpcAddrReason is the reason of rpc.ParseAddr's error without its
// "rpc address %q: " prefix, which the setting's own message replaces.
// Most of its errors wrap nothing, so errors.Unwrap alone gave nil (and
// the message "%!w(<nil>)").
func rpcAddrReason(addr string, err error) error {
	if inner := errors.Unwrap(err); inner != nil {
		return inner
	}
	return errors.New(strings.TrimPrefix(err.Error(), fmt.Sprintf("rpc address %q: ", addr)))
}

// checkEventsURL accepts an empty URL (off) or an http(s) URL with a host.
func checkRedisURL(u string) error {
	if u == "" {
		return nil
	}
	_, err := cluster.ParseURL(u)
	return err
}

func checkRedisPrefix(p string) error {
	_, err := cluster.NewKeys(p)
	return err
}

func checkNodeTTL(d time.Duration) error {
	if d < time.Second {
		return errors.New("at least 1s (the heartbeat is a third of it)")
	}
	return nil
}

func checkEventsURL(u string) error {
	if u == "" {
		return nil
	}
	if err := events.CheckURL(u); err != nil {
		return fmt.Errorf("%w (want http:// or https:// with a host)", err)
	}
	return nil
}

func checkFrameSize(n int) error {
	if n > 1<<31 {
		return errors.New("at most 2GiB")
	}
	return nil
}

func checkFragmentSize(f int) error {
	if f != 0 && (f < 125 || f > bridge.MaxBufferSize) {
		return fmt.Errorf("must be 0 or 125..%d", bridge.MaxBufferSize)
	}
	return nil
}

func checkWriteDelay(d time.Duration) error {
	if d > time.Second {
		return errors.New("must be at most 1s")
	}
	return nil
}

// checkListenAddr accepts host:port and :port.
func checkListenAddr(a string) error {
	if a == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("not host:port or :port: %w", err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number 0..65535", port)
	}
	return nil
}

func checkBatchHold(d time.Duration) error {
	if d > 100*time.Millisecond {
		return errors.New("must be at most 100ms")
	}
	return nil
}

func checkKeptHeaders(k int) error {
	if k > bridge.MaxHeaderBytes {
		return fmt.Errorf("at most %s", formatSize(bridge.MaxHeaderBytes))
	}
	return nil
}

func checkReadBuffer(r int) error {
	if r > bridge.MaxBufferSize {
		return fmt.Errorf("at most %d", bridge.MaxBufferSize)
	}
	return nil
}

// minTokenLength is the shortest admin token accepted: the token guards
// pushes to every client.
const minTokenLength = 16

// checkToken accepts an empty token (the protected routes are off) or one
// of at least minTokenLength visible ASCII characters (it travels in an
// HTTP header).
func checkToken(token string) error {
	if token == "" {
		return nil
	}
	if len(token) < minTokenLength {
		return fmt.Errorf("too short: at least %d characters", minTokenLength)
	}
	for i := 0; i < len(token); i++ {
		if token[i] <= ' ' || token[i] > '~' {
			return errors.New("only visible ASCII characters, no spaces")
		}
	}
	return nil
}
