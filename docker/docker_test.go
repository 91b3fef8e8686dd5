// Package docker_test checks the container files of docker/ without a Docker
// engine (none runs on the machines that build this project): the
// Dockerfile's structure, the build context (.dockerignore), and the
// compose and Kubernetes files parsed as YAML. Every path they name must
// exist in the repository, every WSBRIDGE_* variable must be a setting of
// the real binary (its --help), and addresses, ports, probes and the shared
// RPC socket must agree across the files.
//
// What this cannot check: that the images build and run. docs/DOCKER.md
// says how to do that where Docker exists. With the docker CLI's compose
// plugin installed, TestComposeConfig also runs `docker compose config`.
package docker_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The admin server's fixed names (docs: shared PRODUCT.md, "Fixed names").
const (
	adminDefaultAddr = "127.0.0.1:9503"
	healthzPath      = "/healthz"
	readyzPath       = "/readyz"
	eventsPath       = "/wsbridge/events" // the route of examples/chat and of the Hyperf setup
)

var root string // the repository root (docker/..)

func TestMain(m *testing.M) {
	dir, err := filepath.Abs("..")
	if err == nil {
		_, err = os.Stat(filepath.Join(dir, "go.mod"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "docker_test: the repository root (..) has no go.mod:", err)
		os.Exit(1)
	}
	root = dir
	code := m.Run()
	if tmpDir != "" {
		os.RemoveAll(tmpDir)
	}
	os.Exit(code)
}

// ---------------------------------------------------------------------------
// The binary's settings and its health check

var (
	tmpDir       string
	buildOnce    sync.Once
	settingsMap  map[string]string // WSBRIDGE_* name -> default, from --help
	bridgeBinary string
	buildFailure error
)

// goTool is the go command that runs this test.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

// buildBinaries builds ./cmd/wsbridge once, and reads the bridge's settings
// from its --help.
func buildBinaries(t *testing.T) {
	t.Helper()
	buildOnce.Do(func() {
		var err error
		tmpDir, err = os.MkdirTemp("", "wsbridge-docker-test-")
		if err != nil {
			buildFailure = err
			return
		}
		bridge := filepath.Join(tmpDir, "wsbridge")
		bridgeBinary = bridge
		for _, b := range [][2]string{{bridge, "./cmd/wsbridge"}} {
			cmd := exec.Command(goTool(), "build", "-o", b[0], b[1])
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildFailure = fmt.Errorf("go build %s: %v\n%s", b[1], err, out)
				return
			}
		}
		cmd := exec.Command(bridge, "--help")
		cmd.Env = []string{} // no WSBRIDGE_* from this environment changes the defaults shown
		out, _ := cmd.CombinedOutput()
		settingsMap = parseHelp(string(out))
		if len(settingsMap) < 10 {
			buildFailure = fmt.Errorf("wsbridge --help lists %d settings:\n%s", len(settingsMap), out)
		}
	})
	if buildFailure != nil {
		t.Fatal(buildFailure)
	}
}

var helpSetting = regexp.MustCompile(`\((WSBRIDGE_[A-Z0-9_]+), default (.*)\)\s*$`)

// parseHelp reads "  -ws-addr  (WSBRIDGE_WS_ADDR, default :9502)" lines.
func parseHelp(help string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(help, "\n") {
		if g := helpSetting.FindStringSubmatch(line); g != nil {
			def := g[2]
			if u, err := strconv.Unquote(def); err == nil {
				def = u
			}
			m[g[1]] = def
		}
	}
	return m
}

// settingDefault is the default of a setting of the binary; ok is false for
// a name that is not one.
func settingDefault(t *testing.T, name string) (string, bool) {
	buildBinaries(t)
	d, ok := settingsMap[name]
	return d, ok
}

// checkSettings fails for every WSBRIDGE_* name of env that is not a
// setting of the binary.
func checkSettings(t *testing.T, where string, env map[string]string) {
	t.Helper()
	buildBinaries(t)
	for name := range env {
		if !strings.HasPrefix(name, "WSBRIDGE_") {
			continue
		}
		if _, ok := settingsMap[name]; ok {
			continue
		}
		t.Errorf("%s: %s is not a setting of wsbridge (wsbridge --help)", where, name)
	}
}

// checkPHPSettings fails for every WSBRIDGE_* name of env that the PHP code
// does not read (getenv in one of files) or that is not a bridge setting:
// PHP reads the bridge's own names.
func checkPHPSettings(t *testing.T, where string, env map[string]string, files ...string) {
	t.Helper()
	var src strings.Builder
	for _, f := range files {
		src.WriteString(readFile(t, f))
	}
	for name := range env {
		if !strings.HasPrefix(name, "WSBRIDGE_") {
			continue
		}
		if !strings.Contains(src.String(), "getenv('"+name+"')") {
			t.Errorf("%s: %s is not read by %v", where, name, files)
		}
	}
	checkSettings(t, where, env)
}

// TestAdminDefaults: the address the probes use is the admin server's.
func TestAdminDefaults(t *testing.T) {
	def, ok := settingDefault(t, "WSBRIDGE_ADMIN_ADDR")
	if !ok || def != adminDefaultAddr {
		t.Errorf("WSBRIDGE_ADMIN_ADDR defaults to %q (listed: %v), want %q", def, ok, adminDefaultAddr)
	}
	// The health check, with nothing set, GETs the admin default.
	if got := probeURL(t, "", healthzPath); got != "http://"+adminDefaultAddr+healthzPath {
		t.Errorf("healthcheck with WSBRIDGE_ADMIN_ADDR unset GETs %s", got)
	}
}

// probeURL runs "wsbridge healthcheck -print-url".
func probeURL(t *testing.T, adminAddr, path string) string {
	t.Helper()
	buildBinaries(t)
	cmd := exec.Command(bridgeBinary, "healthcheck", "-print-url", "-path", path)
	cmd.Env = []string{}
	if adminAddr != "" {
		cmd.Env = []string{"WSBRIDGE_ADMIN_ADDR=" + adminAddr}
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("wsbridge healthcheck -print-url: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// ---------------------------------------------------------------------------
// Dockerfile

type instruction struct {
	line int
	cmd  string // upper case
	args string
}

type stage struct {
	from, name string
	instrs     []instruction
}

type dockerfile struct {
	args   map[string]string // ARGs before the first FROM, with defaults
	stages []stage
}

// parseDockerfile reads instructions, joining continuation lines and
// dropping comments, as Docker's parser does for this file's subset.
func parseDockerfile(t *testing.T, text string) dockerfile {
	t.Helper()
	df := dockerfile{args: map[string]string{}}
	var cur strings.Builder
	start := 0
	flush := func() {
		s := strings.TrimSpace(cur.String())
		cur.Reset()
		if s == "" {
			return
		}
		cmd, args, _ := strings.Cut(s, " ")
		in := instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			st := stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			} else if len(f) != 1 {
				t.Fatalf("Dockerfile:%d: FROM %s", in.line, in.args)
			}
			df.stages = append(df.stages, st)
			return
		}
		if len(df.stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("Dockerfile:%d: %s before the first FROM", in.line, in.cmd)
			}
			k, v, _ := strings.Cut(in.args, "=")
			df.args[k] = v
			return
		}
		last := &df.stages[len(df.stages)-1]
		last.instrs = append(last.instrs, in)
	}
	for i, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue // a comment, also inside a continued instruction
		}
		if cur.Len() == 0 {
			if trimmed == "" {
				continue
			}
			start = i + 1
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur.WriteString(strings.TrimSuffix(trimmed, `\`) + " ")
			continue
		}
		cur.WriteString(trimmed)
		flush()
	}
	flush()
	return df
}

func (s stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.instrs {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

func (s stage) index(pred func(instruction) bool) int {
	return slices.IndexFunc(s.instrs, pred)
}

// expand replaces ${NAME} and $NAME of the pre-FROM ARGs.
func (df dockerfile) expand(s string) string {
	return os.Expand(s, func(k string) string { return df.args[k] })
}

// copyInstr is a COPY: its flags, sources and destination.
type copyInstr struct {
	from, chown string
	srcs        []string
	dst         string
}

func parseCopy(t *testing.T, in instruction) copyInstr {
	t.Helper()
	var c copyInstr
	f := strings.Fields(in.args)
	for len(f) > 0 && strings.HasPrefix(f[0], "--") {
		k, v, _ := strings.Cut(strings.TrimPrefix(f[0], "--"), "=")
		switch k {
		case "from":
			c.from = v
		case "chown":
			c.chown = v
		default:
			t.Errorf("Dockerfile:%d: COPY flag --%s is not checked by this test", in.line, k)
		}
		f = f[1:]
	}
	if len(f) < 2 {
		t.Fatalf("Dockerfile:%d: COPY %s: want sources and a destination", in.line, in.args)
	}
	c.srcs, c.dst = f[:len(f)-1], f[len(f)-1]
	return c
}

// execForm parses a JSON exec form (["a", "b"]).
func execForm(t *testing.T, in instruction, s string) []string {
	t.Helper()
	var argv []string
	if err := json.Unmarshal([]byte(s), &argv); err != nil || len(argv) == 0 {
		t.Fatalf("Dockerfile:%d: %s %s: want the exec form [\"...\"] (there is no shell in the image): %v", in.line, in.cmd, s, err)
	}
	return argv
}

// shellFields splits a command line into words, honouring double quotes.
func shellFields(s string) []string {
	var out []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			inWord = true
		case (r == ' ' || r == '\t') && !quoted:
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

// parseEnv reads ENV K=V K2=V2 (the only form this Dockerfile uses).
func parseEnv(t *testing.T, in instruction) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, kv := range shellFields(in.args) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Fatalf("Dockerfile:%d: ENV %s: want NAME=value pairs", in.line, in.args)
		}
		env[k] = v
	}
	return env
}

// image is what the Dockerfile's final stage declares, for the other tests.
type image struct {
	uid, gid  int
	env       map[string]string
	exposed   []int
	files     map[string]copyInstr // destination -> the COPY
	probeArgv []string
}

var (
	imageOnce sync.Once
	imageDecl image
)

func readFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func exists(rel string) bool {
	_, err := os.Stat(filepath.Join(root, filepath.FromSlash(rel)))
	return err == nil
}

func isDir(rel string) bool {
	fi, err := os.Stat(filepath.Join(root, filepath.FromSlash(rel)))
	return err == nil && fi.IsDir()
}

// goModVersion is go.mod's go line, e.g. 1.26.8.
func goModVersion(t *testing.T) string {
	for _, line := range strings.Split(readFile(t, "go.mod"), "\n") {
		if v, ok := strings.CutPrefix(line, "go "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("go.mod has no go line")
	return ""
}

func TestDockerfile(t *testing.T) {
	df := parseDockerfile(t, readFile(t, "docker/Dockerfile"))
	if len(df.stages) != 2 {
		t.Fatalf("%d stages, want 2 (builder, runtime)", len(df.stages))
	}
	build, run := df.stages[0], df.stages[1]

	// The builder: golang of go.mod's minor version.
	from := df.expand(build.from)
	wantGo := goModVersion(t)
	if parts := strings.Split(wantGo, "."); len(parts) >= 2 {
		wantGo = parts[0] + "." + parts[1]
	}
	if from != "golang:"+wantGo && !strings.HasPrefix(from, "golang:"+wantGo+".") && !strings.HasPrefix(from, "golang:"+wantGo+"-") {
		t.Errorf("builder FROM %s, want golang:%s (go.mod's go line)", from, wantGo)
	}
	if build.name == "" {
		t.Fatal("the builder stage has no name (FROM ... AS build)")
	}

	// Module download cached before the sources come in.
	copyMod := build.index(func(in instruction) bool {
		return in.cmd == "COPY" && slices.Equal(parseCopy(t, in).srcs, []string{"go.mod", "go.sum"})
	})
	download := build.index(func(in instruction) bool { return in.cmd == "RUN" && strings.Contains(in.args, "go mod download") })
	copyAll := build.index(func(in instruction) bool {
		return in.cmd == "COPY" && slices.Equal(parseCopy(t, in).srcs, []string{"."})
	})
	goBuild := build.index(func(in instruction) bool { return in.cmd == "RUN" && strings.Contains(in.args, "go build") })
	if !(copyMod >= 0 && copyMod < download && download < copyAll && copyAll < goBuild) {
		t.Errorf("builder order: COPY go.mod go.sum (%d) < RUN go mod download (%d) < COPY . . (%d) < RUN go build (%d)",
			copyMod, download, copyAll, goBuild)
	}

	// Each go build: static, trimmed, stripped, of a package that exists.
	outputs := map[string]bool{} // what the builder writes, for COPY --from
	built := map[string]string{} // output -> package
	for _, in := range build.all("RUN") {
		for _, part := range strings.Split(in.args, "&&") {
			words := shellFields(part)
			if slices.Contains(words, "mkdir") {
				for _, w := range words {
					if strings.HasPrefix(w, "/") {
						outputs[w] = true
					}
				}
			}
			i := slices.Index(words, "go")
			if i < 0 || i+1 >= len(words) || words[i+1] != "build" {
				continue
			}
			env, args := words[:i], words[i+2:]
			if !slices.Contains(env, "CGO_ENABLED=0") {
				t.Errorf("Dockerfile:%d: go build without CGO_ENABLED=0: %s", in.line, part)
			}
			if !slices.Contains(args, "-trimpath") {
				t.Errorf("Dockerfile:%d: go build without -trimpath", in.line)
			}
			if j := slices.Index(args, "-ldflags"); j < 0 || j+1 >= len(args) || !strings.HasPrefix(args[j+1], "-s -w") {
				t.Errorf("Dockerfile:%d: go build without -ldflags \"-s -w\"", in.line)
			}
			j := slices.Index(args, "-o")
			if j < 0 || j+1 >= len(args) {
				t.Fatalf("Dockerfile:%d: go build without -o", in.line)
			}
			out, pkg := args[j+1], args[len(args)-1]
			if !strings.HasPrefix(pkg, "./") || !isDir(pkg) {
				t.Errorf("Dockerfile:%d: go build of %s: no such package directory", in.line, pkg)
			}
			outputs[out] = true
			built[out] = pkg
		}
	}
	if len(built) != 1 || !slices.Contains(mapValues(built), "./cmd/wsbridge") {
		t.Errorf("the builder builds %v, want ./cmd/wsbridge alone (the health check is its subcommand)", built)
	}

	// COPY sources: from the context, they exist and .dockerignore keeps
	// them; from the builder, the builder wrote them.
	ignore := loadDockerignore(t)
	for _, st := range df.stages {
		for _, in := range st.all("COPY") {
			c := parseCopy(t, in)
			for _, src := range c.srcs {
				switch c.from {
				case "":
					if !exists(src) {
						t.Errorf("Dockerfile:%d: COPY %s: not in the repository", in.line, src)
					}
					if src != "." && ignore.excluded(src) {
						t.Errorf("Dockerfile:%d: COPY %s: excluded by .dockerignore", in.line, src)
					}
				case build.name:
					if !outputs[src] {
						t.Errorf("Dockerfile:%d: COPY --from=%s %s: the builder does not write it (%v)", in.line, c.from, src, outputs)
					}
				default:
					t.Errorf("Dockerfile:%d: COPY --from=%s: unknown stage", in.line, c.from)
				}
			}
		}
	}
	for _, st := range df.stages {
		if len(st.all("ADD")) > 0 {
			t.Errorf("stage %s: ADD: use COPY", st.from)
		}
	}

	// The runtime: distroless static, non-root, with a health check.
	if run.from != "gcr.io/distroless/static-debian12:nonroot" && run.from != "scratch" {
		t.Errorf("runtime FROM %s, want gcr.io/distroless/static-debian12:nonroot or scratch", run.from)
	}
	img := declaredImage(t)
	if img.uid <= 0 || img.gid <= 0 {
		t.Errorf("runtime USER %d:%d, want a numeric non-root user and group", img.uid, img.gid)
	}
	for _, in := range run.all("RUN") {
		t.Errorf("Dockerfile:%d: RUN in the runtime stage: it has no shell", in.line)
	}
	entry := run.all("ENTRYPOINT")
	if len(entry) != 1 {
		t.Fatalf("%d ENTRYPOINTs in the runtime stage, want 1", len(entry))
	}
	// builtAt is the package whose binary the runtime has at dst.
	builtAt := func(dst string) string {
		c, ok := img.files[dst]
		if !ok || c.from != build.name || len(c.srcs) != 1 {
			return ""
		}
		return built[c.srcs[0]]
	}
	if argv := execForm(t, entry[0], entry[0].args); builtAt(argv[0]) != "./cmd/wsbridge" {
		t.Errorf("ENTRYPOINT %s is not the wsbridge binary copied from the builder", argv[0])
	}
	if builtAt(img.probeArgv[0]) != "./cmd/wsbridge" || len(img.probeArgv) < 2 || img.probeArgv[1] != "healthcheck" {
		t.Errorf("HEALTHCHECK runs %v, not the wsbridge binary's healthcheck", img.probeArgv)
	}
	if !slices.Contains(img.probeArgv, healthzPath) {
		t.Errorf("HEALTHCHECK %v does not ask %s", img.probeArgv, healthzPath)
	}

	// ENV: settings of the binary, ports exposed, RPC socket directory owned
	// by the runtime user.
	checkSettings(t, "Dockerfile ENV", img.env)
	wsPort := addrPort(t, "WSBRIDGE_WS_ADDR", img.env["WSBRIDGE_WS_ADDR"])
	adminHost, adminPort := splitAddr(t, "WSBRIDGE_ADMIN_ADDR", img.env["WSBRIDGE_ADMIN_ADDR"])
	want := []int{wsPort}
	if !isLoopback(adminHost) {
		want = append(want, adminPort) // bound beyond loopback: exposed, as in a pod
	}
	slices.Sort(want)
	if got := slices.Sorted(slices.Values(img.exposed)); !slices.Equal(got, want) {
		t.Errorf("EXPOSE %v, want %v (WebSocket, and admin when not on loopback)", got, want)
	}
	if _, adminDefaultPort := splitAddr(t, "admin default", adminDefaultAddr); adminPort != adminDefaultPort {
		t.Errorf("image admin port %d, want the admin default's %d", adminPort, adminDefaultPort)
	}
	// The health check, with the image's environment, GETs the admin server on
	// loopback.
	if got, want := probeURL(t, img.env["WSBRIDGE_ADMIN_ADDR"], healthzPath), fmt.Sprintf("http://127.0.0.1:%d%s", adminPort, healthzPath); got != want {
		t.Errorf("HEALTHCHECK GETs %s, want %s", got, want)
	}
	sock := unixSocketPath(t, img.env["WSBRIDGE_RPC_ADDR"])
	dir, ok := img.files[path.Dir(sock)]
	if !ok || dir.chown != fmt.Sprintf("%d:%d", img.uid, img.gid) {
		t.Errorf("the RPC socket's directory %s is not copied into the image owned by %d:%d (%+v)", path.Dir(sock), img.uid, img.gid, dir)
	}
}

func mapValues(m map[string]string) []string {
	var v []string
	for _, x := range m {
		v = append(v, x)
	}
	return v
}

// declaredImage reads the runtime stage of the Dockerfile.
func declaredImage(t *testing.T) image {
	t.Helper()
	imageOnce.Do(func() {
		df := parseDockerfile(t, readFile(t, "docker/Dockerfile"))
		run := df.stages[len(df.stages)-1]
		img := image{env: map[string]string{}, files: map[string]copyInstr{}}
		for _, in := range run.instrs {
			switch in.cmd {
			case "USER":
				u, g, _ := strings.Cut(in.args, ":")
				img.uid, _ = strconv.Atoi(u)
				img.gid, _ = strconv.Atoi(g)
				if g == "" {
					img.gid = img.uid
				}
			case "ENV":
				for k, v := range parseEnv(t, in) {
					img.env[k] = v
				}
			case "EXPOSE":
				for _, p := range strings.Fields(in.args) {
					n, err := strconv.Atoi(strings.TrimSuffix(p, "/tcp"))
					if err != nil {
						t.Fatalf("Dockerfile:%d: EXPOSE %s", in.line, p)
					}
					img.exposed = append(img.exposed, n)
				}
			case "COPY":
				c := parseCopy(t, in)
				img.files[c.dst] = c
			case "HEALTHCHECK":
				_, cmd, ok := strings.Cut(in.args, "CMD ")
				if !ok {
					t.Fatalf("Dockerfile:%d: HEALTHCHECK without CMD", in.line)
				}
				img.probeArgv = execForm(t, in, strings.TrimSpace(cmd))
			}
		}
		if img.probeArgv == nil {
			t.Fatal("the runtime stage has no HEALTHCHECK")
		}
		imageDecl = img
	})
	if imageDecl.env == nil {
		t.FailNow()
	}
	return imageDecl
}

// ---------------------------------------------------------------------------
// .dockerignore

type ignorePattern struct {
	re     *regexp.Regexp
	negate bool
}

type dockerignore []ignorePattern

// loadDockerignore reads the root .dockerignore with Docker's rules: paths
// relative to the context root, * and ? within one path element, ** across
// elements, ! re-includes, the last match wins, and a pattern that matches
// a directory matches all below it.
func loadDockerignore(t *testing.T) dockerignore {
	t.Helper()
	var d dockerignore
	sc := bufio.NewScanner(strings.NewReader(readFile(t, ".dockerignore")))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p := ignorePattern{}
		if strings.HasPrefix(line, "!") {
			p.negate, line = true, strings.TrimSpace(line[1:])
		}
		line = strings.TrimPrefix(path.Clean(line), "/")
		p.re = regexp.MustCompile("^" + globRegexp(line) + "$")
		d = append(d, p)
	}
	return d
}

func globRegexp(glob string) string {
	var b strings.Builder
	for i := 0; i < len(glob); i++ {
		switch c := glob[i]; c {
		case '*':
			if i+1 < len(glob) && glob[i+1] == '*' {
				i++
				if i+1 < len(glob) && glob[i+1] == '/' {
					i++
					b.WriteString("(.*/)?")
				} else {
					b.WriteString(".*")
				}
			} else {
				b.WriteString("[^/]*")
			}
		case '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	return b.String()
}

func (d dockerignore) excluded(rel string) bool {
	rel = path.Clean(filepath.ToSlash(rel))
	// The path and each of its parents.
	var candidates []string
	for p := rel; p != "." && p != "/"; p = path.Dir(p) {
		candidates = append(candidates, p)
	}
	out := false
	for _, p := range d {
		for _, c := range candidates {
			if p.re.MatchString(c) {
				out = !p.negate
				break
			}
		}
	}
	return out
}

func TestDockerignore(t *testing.T) {
	d := loadDockerignore(t)
	// The glob rules themselves.
	for _, tc := range []struct {
		glob, path string
		want       bool
	}{
		{"bin", "bin/x", true},
		{"**/*.md", "README.md", true},
		{"**/*.md", "a/b/c.md", true},
		{"**/*_test.go", "bridge/hub_test.go", true},
		{"docs", "docsx/a", false},
		{"docker/*.yml", "docker/docker-compose.yml", true},
		{"docker/*.yml", "docker/probe/x.yml", false},
	} {
		p := dockerignore{{re: regexp.MustCompile("^" + globRegexp(tc.glob) + "$")}}
		if got := p.excluded(tc.path); got != tc.want {
			t.Errorf("pattern %q on %q: %v, want %v", tc.glob, tc.path, got, tc.want)
		}
	}

	// Every file the build reads is in the context: go.mod, go.sum and the
	// files of each package of this module the two binaries import.
	need := []string{"go.mod", "go.sum"}
	cmd := exec.Command(goTool(), "list", "-deps", "-json=ImportPath,Dir,GoFiles,CgoFiles,SFiles,EmbedFiles,Module", "./cmd/wsbridge")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	pkgs := 0
	for {
		var p struct {
			ImportPath, Dir                       string
			GoFiles, CgoFiles, SFiles, EmbedFiles []string
			Module                                *struct{ Main bool }
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if p.Module == nil || !p.Module.Main {
			continue
		}
		pkgs++
		rel, err := filepath.Rel(root, p.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, files := range [][]string{p.GoFiles, p.CgoFiles, p.SFiles, p.EmbedFiles} {
			for _, f := range files {
				need = append(need, path.Join(filepath.ToSlash(rel), f))
			}
		}
	}
	if pkgs < 3 {
		t.Fatalf("go list found %d packages of this module, want the binaries and their imports", pkgs)
	}
	for _, f := range need {
		if d.excluded(f) {
			t.Errorf(".dockerignore excludes %s, which the image's build reads", f)
		}
	}

	// What must stay out: history, binaries, PHP's vendor, test output.
	for _, f := range []string{".git/HEAD", "wsbridge", "bin/wsbridge", "php-client/vendor/autoload.php", "tests/artifacts/alice.png", "bridge/hub_test.go"} {
		if !d.excluded(f) {
			t.Errorf(".dockerignore lets %s into the build context", f)
		}
	}
}

// ---------------------------------------------------------------------------
// Addresses

func splitAddr(t *testing.T, what, addr string) (string, int) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s=%q: %v", what, addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%s=%q: port %v", what, addr, err)
	}
	return h, n
}

func addrPort(t *testing.T, what, addr string) int {
	t.Helper()
	_, p := splitAddr(t, what, addr)
	return p
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func isWildcard(host string) bool {
	return host == "" || host == "0.0.0.0" || host == "::"
}

// unixSocketPath is the path of unix:///path.
func unixSocketPath(t *testing.T, addr string) string {
	t.Helper()
	p, ok := strings.CutPrefix(addr, "unix://")
	if !ok || !path.IsAbs(p) {
		t.Fatalf("WSBRIDGE_RPC_ADDR=%q, want unix:///path.sock", addr)
	}
	return p
}

// eventsURL parses an events URL and checks its path.
func eventsURL(t *testing.T, raw string) (host string, port int) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" {
		t.Fatalf("WSBRIDGE_EVENTS_URL=%q: want an http:// URL (%v)", raw, err)
	}
	if u.Path != eventsPath {
		t.Errorf("WSBRIDGE_EVENTS_URL path %s, want %s", u.Path, eventsPath)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatalf("WSBRIDGE_EVENTS_URL=%q: want an explicit port", raw)
	}
	return u.Hostname(), p
}

func durationSetting(t *testing.T, name string) time.Duration {
	t.Helper()
	def, ok := settingDefault(t, name)
	if !ok {
		t.Fatalf("%s is not a setting", name)
	}
	d, err := time.ParseDuration(def)
	if err != nil {
		t.Fatalf("%s default %q: %v", name, def, err)
	}
	return d
}

// ---------------------------------------------------------------------------
// docker-compose.yml

// The compose keys this file uses. Decoding is strict: a misspelt key fails
// here, since `docker compose config` cannot run on these machines. A new
// key needs a field below.
type composeFile struct {
	Name     string                     `yaml:"name"`
	Services map[string]composeService  `yaml:"services"`
	Volumes  map[string]*composeVolume  `yaml:"volumes"`
	Networks map[string]*map[string]any `yaml:"networks"`
	Secrets  map[string]struct {
		Environment string `yaml:"environment"`
		File        string `yaml:"file"`
	} `yaml:"secrets"`
}

type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	User        string            `yaml:"user"`
	GroupAdd    []string          `yaml:"group_add"`
	WorkingDir  string            `yaml:"working_dir"`
	Command     []string          `yaml:"command"`
	Volumes     []composeMount    `yaml:"volumes"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Profiles    []string          `yaml:"profiles"`
	Secrets     []string          `yaml:"secrets"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test     []string `yaml:"test"`
		Interval string   `yaml:"interval"`
		Timeout  string   `yaml:"timeout"`
		Retries  int      `yaml:"retries"`
	} `yaml:"healthcheck"`
	Ulimits map[string]struct {
		Soft int `yaml:"soft"`
		Hard int `yaml:"hard"`
	} `yaml:"ulimits"`
	ReadOnly        bool     `yaml:"read_only"`
	CapDrop         []string `yaml:"cap_drop"`
	SecurityOpt     []string `yaml:"security_opt"`
	StopGracePeriod string   `yaml:"stop_grace_period"`
	Restart         string   `yaml:"restart"`
}

type composeMount struct {
	Type     string `yaml:"type"`
	Source   string `yaml:"source"`
	Target   string `yaml:"target"`
	ReadOnly bool   `yaml:"read_only"`
}

type composeVolume struct {
	Driver     string            `yaml:"driver"`
	DriverOpts map[string]string `yaml:"driver_opts"`
}

// decodeStrict decodes one YAML document; unknown keys are errors.
func decodeStrict(r io.Reader, v any) error {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	return dec.Decode(v)
}

// interpolate applies compose's ${VAR:-default}, ${VAR-default}, ${VAR} and
// $$ with every variable unset: the values a plain `docker compose up` gets.
var interpolation = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

func interpolate(s string) string {
	return interpolation.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		g := interpolation.FindStringSubmatch(m)
		return g[3] // the default, or "" for an unset variable without one
	})
}

// publishedPort finds the published "[ip:]host:container" entry of a
// container port.
func publishedPort(t *testing.T, ports []string, container int) (ip string, host int, ok bool) {
	t.Helper()
	for _, p := range ports {
		parts := strings.Split(strings.TrimSuffix(p, "/tcp"), ":")
		c, err := strconv.Atoi(parts[len(parts)-1])
		if err != nil {
			t.Fatalf("port %q", p)
		}
		if c != container {
			continue
		}
		if len(parts) == 1 {
			return "", 0, true // published on a random port
		}
		h, err := strconv.Atoi(parts[len(parts)-2])
		if err != nil {
			t.Fatalf("port %q", p)
		}
		if len(parts) == 3 {
			ip = parts[0]
		}
		return ip, h, true
	}
	return "", 0, false
}

func TestCompose(t *testing.T) {
	const file = "docker/docker-compose.yml"
	var cf composeFile
	if err := decodeStrict(strings.NewReader(readFile(t, file)), &cf); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	composeDir := "docker" // relative paths in the file are relative to it
	resolve := func(p string) string {
		return path.Clean(path.Join(composeDir, p))
	}
	php, okPHP := cf.Services["php"]
	bridge, okBridge := cf.Services["wsbridge"]
	redis, okRedis := cf.Services["redis"]
	prom, okProm := cf.Services["prometheus"]
	grafana, okGrafana := cf.Services["grafana"]
	if !okPHP || !okBridge || !okRedis || !okProm || !okGrafana || len(cf.Services) != 5 {
		t.Fatalf("services %v, want php, wsbridge, redis, prometheus and grafana", slices.Sorted(mapKeys(cf.Services)))
	}
	// Monitoring: behind its profile, its files bound from the repository,
	// the scrape's token a secret from the bridge's variable.
	for name, svc := range map[string]composeService{"prometheus": prom, "grafana": grafana} {
		if !slices.Equal(svc.Profiles, []string{"monitoring"}) {
			t.Errorf("%s profiles %v, want [monitoring]", name, svc.Profiles)
		}
		for _, m := range svc.Volumes {
			if m.Type == "bind" && !exists(resolve(m.Source)) {
				t.Errorf("%s mounts %s: not in the repository", name, m.Source)
			}
		}
	}
	if sec, ok := cf.Secrets["wsbridge_admin_token"]; !ok || sec.Environment != "WSBRIDGE_ADMIN_TOKEN" || !slices.Contains(prom.Secrets, "wsbridge_admin_token") {
		t.Errorf("prometheus does not get the admin token as a secret from WSBRIDGE_ADMIN_TOKEN: %+v, %v", cf.Secrets, prom.Secrets)
	}
	if !strings.Contains(readFile(t, "docker/prometheus/prometheus.yml"), "credentials_file: /run/secrets/wsbridge_admin_token") {
		t.Error("prometheus.yml does not read the token from the secret")
	}

	// The images and the build.
	if php.Image != "php:8.2-cli" {
		t.Errorf("php image %q, want php:8.2-cli", php.Image)
	}
	if redis.Image != "redis:7" {
		t.Errorf("redis image %q, want redis:7", redis.Image)
	}
	if bridge.Build == nil {
		t.Fatal("wsbridge has no build")
	}
	ctx := resolve(bridge.Build.Context)
	if ctx != "." {
		t.Errorf("wsbridge build context %s, want the repository root (.dockerignore and go.mod are there)", ctx)
	}
	if df := path.Join(ctx, bridge.Build.Dockerfile); df != "docker/Dockerfile" || !exists(df) {
		t.Errorf("wsbridge dockerfile %s, want docker/Dockerfile", df)
	}

	// Mounts: bind sources exist, named volumes are declared.
	for name, svc := range cf.Services {
		for _, m := range svc.Volumes {
			switch m.Type {
			case "bind":
				if !exists(resolve(m.Source)) { // a directory, or a file (monitoring's configuration)
					t.Errorf("%s: bind mount %s (%s): no such file or directory", name, m.Source, resolve(m.Source))
				}
			case "volume":
				if _, ok := cf.Volumes[m.Source]; !ok {
					t.Errorf("%s: volume %s is not declared under volumes:", name, m.Source)
				}
			default:
				t.Errorf("%s: mount type %q", name, m.Type)
			}
		}
	}

	// php serves examples/chat from the read-only repository.
	repoMount := slices.IndexFunc(php.Volumes, func(m composeMount) bool { return m.Type == "bind" && resolve(m.Source) == "." })
	if repoMount < 0 {
		t.Fatal("php does not mount the repository")
	}
	appDir := php.Volumes[repoMount].Target
	if !php.Volumes[repoMount].ReadOnly {
		t.Error("php mounts the repository writable, want read_only")
	}
	inRepo := func(containerPath string) string { // container path -> repository path
		if !path.IsAbs(containerPath) {
			containerPath = path.Join(php.WorkingDir, containerPath)
		}
		rel, ok := strings.CutPrefix(containerPath, appDir+"/")
		if !ok {
			t.Fatalf("php: %s is outside the repository mount %s", containerPath, appDir)
		}
		return rel
	}
	cmd := php.Command
	if len(cmd) != 6 || cmd[0] != "php" || cmd[1] != "-S" || cmd[3] != "-t" {
		t.Fatalf("php command %v, want php -S host:port -t docroot router.php", cmd)
	}
	phpHost, phpPort := splitAddr(t, "php -S", cmd[2])
	if !isWildcard(phpHost) {
		t.Errorf("php -S %s: want every interface (the bridge posts events from another container)", cmd[2])
	}
	if docroot := inRepo(cmd[4]); docroot != "examples/chat/public" || !isDir(docroot) {
		t.Errorf("php docroot %s, want examples/chat/public", docroot)
	}
	router := inRepo(cmd[5])
	if router != "examples/chat/public/index.php" || !exists(router) {
		t.Errorf("php router %s, want examples/chat/public/index.php", router)
	}
	if !strings.Contains(readFile(t, router), "'"+eventsPath+"'") {
		t.Errorf("%s does not route %s", router, eventsPath)
	}
	if !isDir("php-client") {
		t.Error("php-client/ is missing: the chat loads php-client/vendor/autoload.php")
	}

	// Settings.
	checkSettings(t, "wsbridge environment", bridge.Environment)
	checkPHPSettings(t, "php environment", php.Environment, router)
	benv := map[string]string{}
	for k, v := range bridge.Environment {
		benv[k] = interpolate(v)
	}
	// The addresses repeat the image's defaults, for the reader: the same.
	img := declaredImage(t)
	for _, k := range []string{"WSBRIDGE_WS_ADDR", "WSBRIDGE_RPC_ADDR", "WSBRIDGE_ADMIN_ADDR"} {
		if bv, ok := benv[k]; ok && bv != img.env[k] {
			t.Errorf("wsbridge %s=%q, the image's default is %q: keep them the same or drop it here", k, bv, img.env[k])
		}
	}

	// The shared RPC socket: one volume, one path, in both services.
	sock := unixSocketPath(t, benv["WSBRIDGE_RPC_ADDR"])
	if php.Environment["WSBRIDGE_RPC_ADDR"] != bridge.Environment["WSBRIDGE_RPC_ADDR"] {
		t.Errorf("WSBRIDGE_RPC_ADDR differs: php %q, wsbridge %q", php.Environment["WSBRIDGE_RPC_ADDR"], bridge.Environment["WSBRIDGE_RPC_ADDR"])
	}
	volumeAt := func(svc composeService) string {
		for _, m := range svc.Volumes {
			if m.Type == "volume" && m.Target == path.Dir(sock) {
				return m.Source
			}
		}
		return ""
	}
	shared := volumeAt(bridge)
	if shared == "" || volumeAt(php) != shared {
		t.Fatalf("the socket's directory %s is not one volume in both services (wsbridge %q, php %q)", path.Dir(sock), shared, volumeAt(php))
	}
	// The socket (mode 0660, group of the bridge's user) is reachable from php.
	if !slices.Contains(php.GroupAdd, strconv.Itoa(img.gid)) {
		t.Errorf("php group_add %v lacks the bridge's group %d (the socket's group)", php.GroupAdd, img.gid)
	}
	if v := cf.Volumes[shared]; v != nil && v.DriverOpts["o"] != "" {
		o := v.DriverOpts["o"]
		for _, want := range []string{fmt.Sprintf("uid=%d", img.uid), fmt.Sprintf("gid=%d", img.gid)} {
			if !slices.Contains(strings.Split(o, ","), want) {
				t.Errorf("volume %s options %q lack %s (the bridge's user creates the socket there)", shared, o, want)
			}
		}
	}

	// Events: to php's server and route, signed with the secret php checks.
	host, port := eventsURL(t, benv["WSBRIDGE_EVENTS_URL"])
	if host != "php" || port != phpPort {
		t.Errorf("WSBRIDGE_EVENTS_URL %s, want http://php:%d%s", benv["WSBRIDGE_EVENTS_URL"], phpPort, eventsPath)
	}
	bs, ps := bridge.Environment["WSBRIDGE_EVENTS_SECRET"], php.Environment["WSBRIDGE_EVENTS_SECRET"]
	if bs != ps || interpolate(bs) == "" || !strings.Contains(bs, "${WSBRIDGE_EVENTS_SECRET") {
		t.Errorf("WSBRIDGE_EVENTS_SECRET: wsbridge %q, php %q: want the same ${WSBRIDGE_EVENTS_SECRET:-dev default} in both", bs, ps)
	}
	if !strings.Contains(bridge.Environment["WSBRIDGE_ADMIN_TOKEN"], "${WSBRIDGE_ADMIN_TOKEN") {
		t.Errorf("WSBRIDGE_ADMIN_TOKEN %q: want it from the environment", bridge.Environment["WSBRIDGE_ADMIN_TOKEN"])
	}

	// Ports: the page on php's port, an allowed origin of the bridge.
	_, pagePort, ok := publishedPort(t, php.Ports, phpPort)
	if !ok || pagePort == 0 {
		t.Fatalf("php does not publish its port %d", phpPort)
	}
	origins := strings.Split(benv["WSBRIDGE_ALLOWED_ORIGINS"], ",")
	for _, o := range []string{fmt.Sprintf("http://localhost:%d", pagePort), fmt.Sprintf("http://127.0.0.1:%d", pagePort)} {
		if !slices.Contains(origins, o) {
			t.Errorf("WSBRIDGE_ALLOWED_ORIGINS %v lacks the chat page's origin %s", origins, o)
		}
	}
	wsPort := addrPort(t, "WSBRIDGE_WS_ADDR", benv["WSBRIDGE_WS_ADDR"])
	if _, _, ok := publishedPort(t, bridge.Ports, wsPort); !ok {
		t.Errorf("wsbridge does not publish the WebSocket port %d", wsPort)
	}
	_, adminPort := splitAddr(t, "WSBRIDGE_ADMIN_ADDR", benv["WSBRIDGE_ADMIN_ADDR"])
	if ip, _, ok := publishedPort(t, bridge.Ports, adminPort); ok && !isLoopback(ip) {
		t.Errorf("wsbridge publishes the admin port %d on %q: keep it on the host's loopback", adminPort, ip)
	}

	// Shutdown and limits.
	grace, err := time.ParseDuration(bridge.StopGracePeriod)
	if err != nil || grace <= durationSetting(t, "WSBRIDGE_SHUTDOWN_TIMEOUT") {
		t.Errorf("wsbridge stop_grace_period %q: want more than WSBRIDGE_SHUTDOWN_TIMEOUT", bridge.StopGracePeriod)
	}
	maxConns, _ := settingDefault(t, "WSBRIDGE_MAX_CONNECTIONS")
	if n, _ := strconv.Atoi(maxConns); bridge.Ulimits["nofile"].Soft <= n {
		t.Errorf("wsbridge nofile %d: want more than WSBRIDGE_MAX_CONNECTIONS (%s)", bridge.Ulimits["nofile"].Soft, maxConns)
	}
	if !bridge.ReadOnly || !slices.Contains(bridge.CapDrop, "ALL") {
		t.Error("wsbridge: want read_only and cap_drop ALL")
	}
	if bridge.Healthcheck != nil {
		t.Error("wsbridge overrides the image's HEALTHCHECK")
	}

	// Redis is there for the cluster layer, and nothing uses it yet.
	if !slices.Contains(redis.Profiles, "cluster") {
		t.Errorf("redis profiles %v, want cluster (not used yet)", redis.Profiles)
	}
	for name, svc := range cf.Services {
		if _, ok := svc.DependsOn["redis"]; ok {
			t.Errorf("%s depends on redis, which nothing uses yet", name)
		}
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestComposeConfig runs `docker compose config` where the docker CLI has
// the compose plugin (it needs no engine). Here it usually has not.
func TestComposeConfig(t *testing.T) {
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("no docker CLI")
	}
	if err := exec.Command(docker, "compose", "version").Run(); err != nil {
		t.Skip("the docker CLI has no compose plugin: TestCompose checks the file instead")
	}
	cmd := exec.Command(docker, "compose", "-f", "docker/docker-compose.yml", "config", "--quiet")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker compose config: %v\n%s", err, out)
	}
}

// ---------------------------------------------------------------------------
// kubernetes.yaml

type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Type       string            `yaml:"type"`       // Secret
	StringData map[string]string `yaml:"stringData"` // Secret
	Spec       yaml.Node         `yaml:"spec"`
}

type deploymentSpec struct {
	Replicas int `yaml:"replicas"`
	Selector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
	Strategy struct {
		Type          string `yaml:"type"`
		RollingUpdate struct {
			MaxSurge       int `yaml:"maxSurge"`
			MaxUnavailable int `yaml:"maxUnavailable"`
		} `yaml:"rollingUpdate"`
	} `yaml:"strategy"`
	Template struct {
		Metadata struct {
			Labels map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Spec podSpec `yaml:"spec"`
	} `yaml:"template"`
}

type podSpec struct {
	TerminationGracePeriodSeconds int  `yaml:"terminationGracePeriodSeconds"`
	AutomountServiceAccountToken  bool `yaml:"automountServiceAccountToken"`
	SecurityContext               struct {
		RunAsNonRoot   bool `yaml:"runAsNonRoot"`
		FSGroup        int  `yaml:"fsGroup"`
		SeccompProfile struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	Containers     []container `yaml:"containers"`
	InitContainers []container `yaml:"initContainers"`
	Volumes        []podVolume `yaml:"volumes"`
}

type podVolume struct {
	Name     string `yaml:"name"`
	EmptyDir *struct {
		Medium    string `yaml:"medium"`
		SizeLimit string `yaml:"sizeLimit"`
	} `yaml:"emptyDir"`
}

type container struct {
	Name            string   `yaml:"name"`
	Image           string   `yaml:"image"`
	ImagePullPolicy string   `yaml:"imagePullPolicy"`
	Args            []string `yaml:"args"`
	Ports           []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	Lifecycle      *struct {
		PreStop struct {
			Exec struct {
				Command []string `yaml:"command"`
			} `yaml:"exec"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		RunAsUser                int   `yaml:"runAsUser"`
		RunAsGroup               int   `yaml:"runAsGroup"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"` // a number or a port's name
	} `yaml:"httpGet"`
	TCPSocket *struct {
		Port any `yaml:"port"`
	} `yaml:"tcpSocket"`
	InitialDelaySeconds int `yaml:"initialDelaySeconds"`
	PeriodSeconds       int `yaml:"periodSeconds"`
	TimeoutSeconds      int `yaml:"timeoutSeconds"`
	FailureThreshold    int `yaml:"failureThreshold"`
}

type serviceSpec struct {
	Type     string            `yaml:"type"`
	Selector map[string]string `yaml:"selector"`
	Ports    []struct {
		Name       string `yaml:"name"`
		Port       int    `yaml:"port"`
		TargetPort any    `yaml:"targetPort"`
		Protocol   string `yaml:"protocol"`
	} `yaml:"ports"`
}

// port resolves a probe's or a Service's port (a number or a name) to a
// containerPort of c.
func (c container) port(t *testing.T, p any) (int, bool) {
	t.Helper()
	for _, cp := range c.Ports {
		switch v := p.(type) {
		case int:
			if cp.ContainerPort == v {
				return v, true
			}
		case string:
			if cp.Name == v {
				return cp.ContainerPort, true
			}
		}
	}
	return 0, false
}

func (c container) env() map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		m[e.Name] = e.Value
	}
	return m
}

func (c container) mountPath(volume string) string {
	for _, m := range c.VolumeMounts {
		if m.Name == volume {
			return m.MountPath
		}
	}
	return ""
}

func subset(sub, super map[string]string) bool {
	if len(sub) == 0 {
		return false
	}
	for k, v := range sub {
		if super[k] != v {
			return false
		}
	}
	return true
}

func TestKubernetes(t *testing.T) {
	const file = "docker/kubernetes.yaml"
	dec := yaml.NewDecoder(strings.NewReader(readFile(t, file)))
	dec.KnownFields(true)
	byKind := map[string][]k8sObject{}
	for {
		var o k8sObject
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if o.Kind == "" {
			continue // an empty document
		}
		want := map[string]string{"Deployment": "apps/v1", "Service": "v1", "Secret": "v1"}[o.Kind]
		if want == "" || o.APIVersion != want || o.Metadata.Name == "" {
			t.Errorf("%s %q: apiVersion %q (want %q), a name", o.Kind, o.Metadata.Name, o.APIVersion, want)
		}
		byKind[o.Kind] = append(byKind[o.Kind], o)
	}
	if len(byKind["Deployment"]) != 1 || len(byKind["Service"]) != 1 {
		t.Fatalf("want one Deployment and one Service, have %d and %d", len(byKind["Deployment"]), len(byKind["Service"]))
	}
	strict := func(n yaml.Node, v any) {
		t.Helper()
		b, err := yaml.Marshal(&n)
		if err != nil {
			t.Fatal(err)
		}
		if err := decodeStrict(bytes.NewReader(b), v); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	var dep deploymentSpec
	strict(byKind["Deployment"][0].Spec, &dep)
	var svc serviceSpec
	strict(byKind["Service"][0].Spec, &svc)
	pod := dep.Template.Spec
	labels := dep.Template.Metadata.Labels
	if !subset(dep.Selector.MatchLabels, labels) {
		t.Errorf("Deployment selector %v does not match the pod's labels %v", dep.Selector.MatchLabels, labels)
	}
	if !subset(svc.Selector, labels) {
		t.Errorf("Service selector %v does not match the pod's labels %v", svc.Selector, labels)
	}

	var hyperf, bridge container
	for _, c := range pod.Containers {
		switch c.Name {
		case "hyperf":
			hyperf = c
		case "wsbridge":
			bridge = c
		}
	}
	if len(pod.Containers) != 2 || hyperf.Name == "" || bridge.Name == "" {
		t.Fatalf("containers: want hyperf and wsbridge in one pod")
	}
	benv, henv := bridge.env(), hyperf.env()
	checkSettings(t, "wsbridge env", benv)
	// The init container checks the bridge's own settings with its image.
	if len(pod.InitContainers) != 1 || pod.InitContainers[0].Image != bridge.Image ||
		!slices.Equal(pod.InitContainers[0].Args, []string{"config", "check"}) || !maps.Equal(pod.InitContainers[0].env(), benv) {
		t.Errorf("init containers %+v: want one running the bridge's image with config check and the bridge's variables", pod.InitContainers)
	}
	checkPHPSettings(t, "hyperf env", henv, "php-client/publish/wsbridge.php")

	// Secrets the containers read exist, with their keys.
	secrets := map[string]map[string]string{}
	for _, s := range byKind["Secret"] {
		secrets[s.Metadata.Name] = s.StringData
	}
	for _, c := range pod.Containers {
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			ref := e.ValueFrom.SecretKeyRef
			if _, ok := secrets[ref.Name][ref.Key]; !ok {
				t.Errorf("%s %s: secret %s has no key %s in this file", c.Name, e.Name, ref.Name, ref.Key)
			}
		}
	}

	// Ports and probes: the WebSocket and admin ports the settings bind,
	// probes on the admin port at the admin paths.
	wsPort := addrPort(t, "WSBRIDGE_WS_ADDR", benv["WSBRIDGE_WS_ADDR"])
	adminHost, adminPort := splitAddr(t, "WSBRIDGE_ADMIN_ADDR", benv["WSBRIDGE_ADMIN_ADDR"])
	if !isWildcard(adminHost) {
		t.Errorf("WSBRIDGE_ADMIN_ADDR %s: the kubelet probes the pod's IP, so the admin server binds every interface", benv["WSBRIDGE_ADMIN_ADDR"])
	}
	if _, defPort := splitAddr(t, "admin default", adminDefaultAddr); adminPort != defPort {
		t.Errorf("admin port %d, want the admin default's %d", adminPort, defPort)
	}
	if p, ok := bridge.port(t, "ws"); !ok || p != wsPort {
		t.Errorf("wsbridge port ws = %d, want WSBRIDGE_WS_ADDR's %d", p, wsPort)
	}
	if p, ok := bridge.port(t, "admin"); !ok || p != adminPort {
		t.Errorf("wsbridge port admin = %d, want WSBRIDGE_ADMIN_ADDR's %d", p, adminPort)
	}
	for _, pr := range []struct {
		name string
		p    *probe
		path string
	}{{"readinessProbe", bridge.ReadinessProbe, readyzPath}, {"livenessProbe", bridge.LivenessProbe, healthzPath}} {
		if pr.p == nil || pr.p.HTTPGet == nil {
			t.Errorf("wsbridge has no %s.httpGet", pr.name)
			continue
		}
		if pr.p.HTTPGet.Path != pr.path {
			t.Errorf("wsbridge %s path %s, want %s", pr.name, pr.p.HTTPGet.Path, pr.path)
		}
		if p, ok := bridge.port(t, pr.p.HTTPGet.Port); !ok || p != adminPort {
			t.Errorf("wsbridge %s port %v is not the declared admin containerPort %d", pr.name, pr.p.HTTPGet.Port, adminPort)
		}
	}

	// The Service exposes the WebSocket port and nothing else.
	if len(svc.Ports) != 1 {
		t.Errorf("Service ports %v, want the WebSocket port only", svc.Ports)
	}
	for _, sp := range svc.Ports {
		if p, ok := bridge.port(t, sp.TargetPort); !ok || p != wsPort {
			t.Errorf("Service port %d targets %v, not wsbridge's WebSocket port %d", sp.Port, sp.TargetPort, wsPort)
		}
	}

	// The RPC socket: an emptyDir mounted in both at the socket's directory.
	sock := unixSocketPath(t, benv["WSBRIDGE_RPC_ADDR"])
	if henv["WSBRIDGE_RPC_ADDR"] != benv["WSBRIDGE_RPC_ADDR"] {
		t.Errorf("WSBRIDGE_RPC_ADDR differs: hyperf %q, wsbridge %q", henv["WSBRIDGE_RPC_ADDR"], benv["WSBRIDGE_RPC_ADDR"])
	}
	shared := ""
	for _, v := range pod.Volumes {
		if v.EmptyDir != nil && bridge.mountPath(v.Name) == path.Dir(sock) {
			shared = v.Name
		}
	}
	if shared == "" || hyperf.mountPath(shared) != path.Dir(sock) {
		t.Errorf("the socket's directory %s is not one emptyDir mounted in both containers", path.Dir(sock))
	}
	for _, c := range pod.Containers {
		for _, m := range c.VolumeMounts {
			if !slices.ContainsFunc(pod.Volumes, func(v podVolume) bool { return v.Name == m.Name }) {
				t.Errorf("%s mounts volume %s, which the pod does not declare", c.Name, m.Name)
			}
		}
	}
	img := declaredImage(t)
	if pod.SecurityContext.FSGroup != img.gid {
		t.Errorf("pod fsGroup %d, want the bridge's group %d (the socket's group, in every container)", pod.SecurityContext.FSGroup, img.gid)
	}

	// Events go to Hyperf in the same pod.
	host, port := eventsURL(t, benv["WSBRIDGE_EVENTS_URL"])
	if !isLoopback(host) {
		t.Errorf("WSBRIDGE_EVENTS_URL host %s, want localhost (Hyperf is in the pod)", host)
	}
	if p, ok := hyperf.port(t, port); !ok {
		t.Errorf("WSBRIDGE_EVENTS_URL port %d is not a port of the hyperf container", p)
	}
	if benv["WSBRIDGE_ALLOWED_ORIGINS"] == "" {
		t.Error("wsbridge has no WSBRIDGE_ALLOWED_ORIGINS: browsers on the app's pages would be refused")
	}

	// Security and resources.
	if !pod.SecurityContext.RunAsNonRoot || pod.SecurityContext.SeccompProfile.Type != "RuntimeDefault" {
		t.Error("pod securityContext: want runAsNonRoot and seccompProfile RuntimeDefault")
	}
	for _, c := range pod.Containers {
		sc := c.SecurityContext
		if sc.RunAsUser <= 0 || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			!sc.ReadOnlyRootFilesystem || !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
			t.Errorf("%s securityContext %+v: want a non-root user, no privilege escalation, a read-only root, capabilities drop ALL", c.Name, sc)
		}
		if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" {
			t.Errorf("%s: want cpu and memory requests", c.Name)
		}
	}
	if bridge.SecurityContext.RunAsUser != img.uid {
		t.Errorf("wsbridge runAsUser %d, the image's USER is %d", bridge.SecurityContext.RunAsUser, img.uid)
	}
	if time.Duration(pod.TerminationGracePeriodSeconds)*time.Second <= durationSetting(t, "WSBRIDGE_SHUTDOWN_TIMEOUT") {
		t.Errorf("terminationGracePeriodSeconds %d: want more than WSBRIDGE_SHUTDOWN_TIMEOUT", pod.TerminationGracePeriodSeconds)
	}
}
