package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// exampleFlags sets every setting to its table example, as flags.
func exampleFlags() []string {
	var args []string
	for _, s := range settings {
		args = append(args, "-"+s.name+"="+s.example)
	}
	return args
}

// exampleEnv is exampleFlags as WSBRIDGE_* variables.
func exampleEnv() map[string]string {
	env := map[string]string{}
	for _, s := range settings {
		env[envName(s.name)] = s.example
	}
	return env
}

// canonical returns every setting's canonical text (its String) in c.
func canonical(c config) map[string]string {
	m := map[string]string{}
	for _, s := range settings {
		m[s.name] = s.kind.bind(&c).String()
	}
	return m
}

// knownSecrets are the settings whose values must never be shown.
var knownSecrets = map[string]bool{"admin-token": true, "events-secret": true}

var settingName = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)

// TestSettingsTableShape: names are unique flag names, every setting has
// its help, section and example, and a section's settings are together
// (--help prints a section once).
func TestSettingsTableShape(t *testing.T) {
	names, groups := map[string]bool{}, map[string]bool{}
	last := ""
	for _, s := range settings {
		if !settingName.MatchString(s.name) || names[s.name] {
			t.Errorf("setting %q: not a lower-case flag name, or listed twice", s.name)
		}
		names[s.name] = true
		if s.help == "" || s.group == "" || s.example == "" || s.kind == nil {
			t.Errorf("-%s lacks its help, section, example or kind", s.name)
		}
		if want := knownSecrets[s.name]; s.secret != want {
			t.Errorf("-%s: secret = %v, want %v", s.name, s.secret, want)
		}
		if s.group != last {
			if groups[s.group] {
				t.Errorf("-%s: section %q is split by another section", s.name, s.group)
			}
			groups[s.group] = true
			last = s.group
		}
	}
}

// TestSettingsTable runs the same checks on every setting of the table:
// its flag and its variable set it (and nothing else), a flag wins over the
// variable, an empty variable is unset, --help prints its variable and
// default, the printed default parses back to the default, every value
// its kind refuses is refused naming the setting, and a secret never shows.
func TestSettingsTable(t *testing.T) {
	defaults, err := loadConfig(nil, noEnv, io.Discard)
	if err != nil {
		t.Fatalf("loadConfig(nil): %v", err)
	}
	if full, err := parseConfig(nil, noEnv, io.Discard); err != nil || !reflect.DeepEqual(full, defaults) {
		t.Fatalf("parseConfig(nil) = %v; loadConfig and parseConfig differ with no settings", err)
	}
	var help bytes.Buffer
	if _, err := parseConfig([]string{"--help"}, noEnv, &help); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	helpOf := parseHelp(t, help.String())
	if len(helpOf) != len(settings) {
		t.Errorf("--help lists %d settings, the table %d", len(helpOf), len(settings))
	}
	defText := canonical(defaults)

	for _, s := range settings {
		t.Run(s.name, func(t *testing.T) {
			env := envName(s.name)
			def := defText[s.name]
			load := func(args []string, vars map[string]string) config {
				t.Helper()
				c, err := loadConfig(args, envOf(vars), io.Discard)
				if err != nil {
					t.Fatalf("loadConfig(%q, %v): %v", args, vars, err)
				}
				return c
			}

			// --help: the variable, the default, the help text.
			printed := def
			if printed == "" {
				printed = `""`
			}
			if got := helpOf[s.name]; got != [2]string{env, printed} {
				t.Errorf("--help lists -%s with %q, want (%s, default %s)", s.name, got, env, printed)
			}
			if !strings.Contains(help.String(), "("+env+", default "+printed+")\n      "+s.help+"\n") {
				t.Errorf("--help does not give -%s's help %q", s.name, s.help)
			}

			// The flag sets this setting, and no other.
			byFlag := load([]string{"-" + s.name + "=" + s.example}, nil)
			got := canonical(byFlag)
			if got[s.name] == def {
				t.Errorf("-%s=%s leaves the default %q: the example must differ from it", s.name, s.example, def)
			}
			for name, text := range got {
				if name != s.name && text != defText[name] {
					t.Errorf("-%s=%s also changed -%s to %q: two settings share a field", s.name, s.example, name, text)
				}
			}
			// The variable sets it the same way.
			if byEnv := load(nil, map[string]string{env: s.example}); !reflect.DeepEqual(byEnv, byFlag) {
				t.Errorf("%s=%s gives\n%+v\nwant what the flag gives\n%+v", env, s.example, byEnv, byFlag)
			}
			// A flag wins over the variable, even an invalid one.
			if c := load([]string{"-" + s.name + "=" + def}, map[string]string{env: s.example}); !reflect.DeepEqual(c, defaults) {
				t.Errorf("-%s=%s with %s=%s: the variable won", s.name, def, env, s.example)
			}
			v := s.kind.bind(&config{})
			for _, bad := range v.refused() {
				if c := load([]string{"-" + s.name + "=" + s.example}, map[string]string{env: bad}); !reflect.DeepEqual(c, byFlag) {
					t.Errorf("-%s=%s with %s=%q: the variable changed the config", s.name, s.example, env, bad)
				}
			}
			// An empty variable is unset; the printed default is the default.
			for _, text := range []string{"", def} {
				if c := load(nil, map[string]string{env: text}); !reflect.DeepEqual(c, defaults) {
					t.Errorf("%s=%q gives\n%+v\nwant the defaults", env, text, c)
				}
			}

			// Every value the kind (or the setting's rule) refuses is
			// refused, by flag and by variable, naming the setting.
			for _, bad := range v.refused() {
				for _, src := range []struct {
					args  []string
					vars  map[string]string
					names string
				}{
					{[]string{"-" + s.name + "=" + bad}, nil, "-" + s.name},
					{nil, map[string]string{env: bad}, env},
				} {
					_, err := parseConfig(src.args, envOf(src.vars), io.Discard)
					if err == nil {
						t.Errorf("parseConfig(%q, %v) accepted a value -%s refuses", src.args, src.vars, s.name)
						continue
					}
					var ue usageError
					if msg := err.Error(); !errors.As(err, &ue) || !strings.Contains(msg, src.names) || strings.Contains(msg, "%!") {
						t.Errorf("parseConfig(%q, %v) = %q (%T), want a usageError naming %s", src.args, src.vars, msg, err, src.names)
					}
					if s.secret && strings.Contains(err.Error(), bad) {
						t.Errorf("the error for secret -%s echoes it: %q", s.name, err)
					}
				}
			}

			if s.secret {
				// A valid secret never appears: not in the effective config,
				// not in an error about another setting.
				var out bytes.Buffer
				if err := writeEffective(&out, byFlag); err != nil {
					t.Fatal(err)
				}
				if strings.Contains(out.String(), s.example) || !strings.Contains(out.String(), env+"="+secretMask+"\n") {
					t.Errorf("effective config with -%s set:\n%s\nwant it masked as %s", s.name, out.String(), secretMask)
				}
				_, err := parseConfig([]string{"-" + s.name + "=" + s.example, "-ws-path=nope"}, noEnv, io.Discard)
				if err == nil || strings.Contains(err.Error(), s.example) {
					t.Errorf("an error with -%s set: %v, want one without the secret", s.name, err)
				}
				_, err = parseConfig([]string{"-ws-path=nope"}, envOf(map[string]string{env: s.example}), io.Discard)
				if err == nil || strings.Contains(err.Error(), s.example) {
					t.Errorf("an error with %s set: %v, want one without the secret", env, err)
				}
			}
		})
	}
}

// TestEffectiveSettings: the effective config of every example lists each
// setting once, in the table's order, marks what differs from the
// default, masks secrets, hides URL passwords, and parses back.
func TestEffectiveSettings(t *testing.T) {
	c := allSet(t)
	c.Events.URL = "https://app:hunter2@php.internal/events?key=k3y"
	list := effectiveSettings(c)
	if len(list) != len(settings) {
		t.Fatalf("%d effective settings, %d in the table", len(list), len(settings))
	}
	for i, e := range list {
		s := settings[i]
		if e.Name != s.name || e.Env != envName(s.name) || e.Group != s.group || e.Default {
			t.Errorf("effective setting %d = %+v, want -%s in section %q, not the default", i, e, s.name, s.group)
		}
	}
	for _, e := range effectiveSettings(defaultConfig(t)) {
		if !e.Default {
			t.Errorf("the defaults' %s = %q is not marked as the default", e.Env, e.Value)
		}
	}

	var out bytes.Buffer
	if err := writeEffective(&out, c); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, secret := range []string{c.Admin.Token, c.Events.Secret, "hunter2", "k3y"} {
		if strings.Contains(text, secret) {
			t.Errorf("the effective config shows %q:\n%s", secret, text)
		}
	}
	// Back as variables: the same config, but for what is hidden.
	env := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "# ") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("line %q is not VAR=value", line)
		}
		if strings.HasPrefix(value, `"`) {
			var err error
			if value, err = strconv.Unquote(value); err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
		}
		env[name] = value
	}
	if len(env) != len(settings) {
		t.Errorf("%d variables in\n%s\nwant %d", len(env), text, len(settings))
	}
	env["WSBRIDGE_ADMIN_TOKEN"], env["WSBRIDGE_EVENTS_SECRET"], env["WSBRIDGE_EVENTS_URL"] = c.Admin.Token, c.Events.Secret, c.Events.URL
	env["WSBRIDGE_REDIS_URL"] = c.Cluster.URL // shown without its password
	got, err := parseConfig(nil, envOf(env), io.Discard)
	if err != nil {
		t.Fatalf("the effective config does not parse back: %v\n%s", err, text)
	}
	if !reflect.DeepEqual(got, c) {
		t.Errorf("the effective config parses back to\n%+v\nwant\n%+v", got, c)
	}
}

// TestWriteEffectiveQuotes: a value with spaces, quotes or # is quoted, so
// each line stays one VAR=value.
func TestWriteEffectiveQuotes(t *testing.T) {
	c := defaultConfig(t)
	c.TLS = tlsPair{Cert: "/etc/my certs/#1 \"a\".crt", Key: "/k"}
	var out bytes.Buffer
	if err := writeEffective(&out, c); err != nil {
		t.Fatal(err)
	}
	if want := `WSBRIDGE_TLS_CERT="/etc/my certs/#1 \"a\".crt"` + "\n"; !strings.Contains(out.String(), want) {
		t.Errorf("effective config:\n%s\nwant the line %q", out.String(), want)
	}
}

// TestIntOrKind: the kind a setting such as "node-id: 0..1023 or auto"
// takes. Through a FlagSet like the table's: the word in any case, the
// range, its messages, and the word printed back.
func TestIntOrKind(t *testing.T) {
	var c config
	v := intOr(func(c *config) *int { return &c.Bridge.NodeID }, 0, 0, 1023, "auto", -1).bind(&c)
	v.reset()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Var(v, "node-id", "")
	for _, tt := range []struct {
		in   string
		want int
		text string
	}{{"7", 7, "7"}, {" AUTO ", -1, "auto"}, {"1023", 1023, "1023"}, {"auto", -1, "auto"}, {"0", 0, "0"}} {
		if err := fs.Set("node-id", tt.in); err != nil || c.Bridge.NodeID != tt.want || v.String() != tt.text {
			t.Errorf("Set(%q): %v, NodeID %d, String %q; want %d, %q", tt.in, err, c.Bridge.NodeID, v.String(), tt.want, tt.text)
		}
	}
	for _, tt := range []struct{ in, want string }{{"-1", "out of range 0..1023"}, {"1024", "out of range 0..1023"}, {"automatic", `not an integer or "auto"`}, {"", `not an integer or "auto"`}} {
		if err := fs.Set("node-id", tt.in); err == nil || err.Error() != tt.want {
			t.Errorf("Set(%q) = %v, want %q", tt.in, err, tt.want)
		}
	}
	if err := fs.Parse([]string{"-node-id=auto"}); err != nil || c.Bridge.NodeID != -1 || v.quoted() != `"auto"` {
		t.Errorf("-node-id=auto: %v, NodeID %d, quoted %s", err, c.Bridge.NodeID, v.quoted())
	}
	for _, bad := range v.refused() {
		if err := fs.Set("node-id", bad); err == nil {
			t.Errorf("Set(%q) accepted a refused value", bad)
		}
	}
}
