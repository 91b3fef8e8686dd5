package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wsbridge/wsbridge/bench"
	"github.com/wsbridge/wsbridge/internal/redistest"
)

// TestMain lets the test binary serve as its own client processes and as
// the naive gorilla server: the tool re-executes itself (os.Executable).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "client":
			os.Exit(clientMain(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
		case "serve-gorilla":
			os.Exit(gorillaMain(os.Args[2:], os.Stdout, os.Stderr))
		}
	}
	goleak.VerifyTestMain(m)
}

// TestSmallRun runs the whole tool against wsbridge (the binary built from
// this module), the naive gorilla server and the floor server, with 60
// connections in two client processes: every broadcast, group push and
// push by fd (from Go and from PHP callers; the floor takes push rounds as
// broadcasts) must reach every client it was meant for, and the results
// and plots must be written.
func TestSmallRun(t *testing.T) {
	ensureAutoload(t)
	out := t.TempDir()
	res, stdout := runTool(t, out, []string{"-n", "60", "-targets", "wsbridge,gorilla,floor", "-broadcasts", "3,7", "-groups", "4", "-group-pushes", "8",
		"-pushes", "2", "-push-batch", "25", "-push-per-conn", "2", "-push-with", "go-push,go-batch,go-many,php-push,php-batch", "-php-procs", "2", "-go-callers", "3",
		"-settle", "200ms", "-pause", "50ms", "-timeout", "10s", "-src", "127.0.0.2-127.0.0.3", "-out", out})
	if len(res.Targets) != 3 {
		t.Fatalf("%d targets in results.json, want 3", len(res.Targets))
	}
	for _, tr := range res.Targets {
		want := []int64{3 * 60, 7 * 60, 8 * 15}
		switch tr.Name {
		case "wsbridge": // 2 rounds of 2 messages to each, five ways
			want = append(want, 4*60, 4*60, 4*60, 4*60, 4*60)
		case "floor": // the same rounds as broadcasts
			want = append(want, 4*60)
		}
		if len(tr.Scenarios) != len(want) {
			t.Fatalf("%s: %d scenarios, want %d", tr.Name, len(tr.Scenarios), len(want))
		}
		for i, sc := range tr.Scenarios {
			if sc.Expected != want[i] || sc.Delivered != want[i] {
				t.Errorf("%s %s: delivered %d, expected %d, want %d", tr.Name, sc.Name, sc.Delivered, sc.Expected, want[i])
			}
			if histCounts(sc.Latency).total() != uint64(sc.Delivered) {
				t.Errorf("%s %s: %d latencies for %d deliveries", tr.Name, sc.Name, histCounts(sc.Latency).total(), sc.Delivered)
			}
		}
		for _, sc := range tr.Scenarios {
			if strings.Contains(sc.Name, "PHP") && sc.CallerCPU <= 0 {
				t.Errorf("%s %s: no CPU time of the PHP callers", tr.Name, sc.Name)
			}
		}
		if tr.RSSIdle <= 0 || len(tr.Series) == 0 {
			t.Errorf("%s: RSS %d, %d samples", tr.Name, tr.RSSIdle, len(tr.Series))
		}
	}
	for _, f := range []string{"latency-cdf-1.png", "latency-cdf-3.svg", "deliveries-per-sec.png", "rss.svg"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("plot %s: %v", f, err)
		}
	}
	for _, s := range []string{"deliveries/CPU-s", "writes/deliv", "group push x8 (4 groups)", "push x2 (Go Push, 3 callers, 2 per connection)", "push x2 (Go PushBatch of 25, 3 callers, 2 per connection)",
		"push x2 (Go PushMany of 25, 3 callers, 2 per connection)", "push x2 (PHP push, 2 procs, 2 per connection)", "push x2 (PHP pushBatch of 25, 2 procs, 2 per connection)",
		"push x2 (broadcasts, 2 per connection)", "RSS/conn KiB"} {
		if !strings.Contains(stdout, s) {
			t.Errorf("the report lacks %q:\n%s", s, stdout)
		}
	}
}

// TestClusterRun runs the tool against 3 wsbridge nodes on one
// redis-server it starts, 20 clients on each: the broadcasts through the
// first node, before and after the idle period, and the pushes by fd
// through the first node (from Go and from PHP callers; the cluster routes
// them to the nodes holding the fds) must reach all 60 clients, and each
// node's RSS must be reported and drawn.
func TestClusterRun(t *testing.T) {
	redistest.Require(t, "redis-server")
	ensureAutoload(t)
	out := t.TempDir()
	res, stdout := runTool(t, out, []string{"-n", "20", "-nodes", "3", "-targets", "wsbridge", "-pre-broadcasts", "1", "-broadcasts", "2",
		"-pushes", "1", "-push-per-conn", "2", "-push-batch", "25", "-push-with", "go-push,go-batch,go-many,php-batch", "-go-callers", "2", "-php-procs", "2",
		"-settle", "200ms", "-pause", "50ms", "-timeout", "10s", "-src", "127.0.0.2-127.0.0.3", "-plots", "png", "-out", out})
	if res.Conns != 60 || len(res.Targets) != 1 {
		t.Fatalf("%d connections, %d targets; want 60 and 1", res.Conns, len(res.Targets))
	}
	tr := res.Targets[0]
	want := []struct {
		name string
		n    int64
	}{{"broadcast x1 (before idle)", 60}, {"broadcast x2", 120},
		{"push x1 (Go Push, 2 callers, 2 per connection)", 120}, {"push x1 (Go PushBatch of 25, 2 callers, 2 per connection)", 120},
		{"push x1 (Go PushMany of 25, 2 callers, 2 per connection)", 120}, {"push x1 (PHP pushBatch of 25, 2 procs, 2 per connection)", 120}}
	if len(tr.Scenarios) != len(want) {
		t.Fatalf("%d scenarios, want %d", len(tr.Scenarios), len(want))
	}
	for i, sc := range tr.Scenarios {
		if sc.Name != want[i].name || sc.Expected != want[i].n || sc.Delivered != want[i].n {
			t.Errorf("scenario %q: delivered %d of %d, want %q with %d", sc.Name, sc.Delivered, sc.Expected, want[i].name, want[i].n)
		}
	}
	if len(tr.Nodes) != 3 {
		t.Fatalf("%d nodes reported, want 3", len(tr.Nodes))
	}
	for i, n := range tr.Nodes {
		if n.PID == 0 || n.RSSIdle <= 0 {
			t.Errorf("node %d: %+v", i+1, n)
		}
	}
	if len(tr.Series) == 0 || len(tr.Series[len(tr.Series)-1].NodeRSS) != 3 {
		t.Errorf("the samples lack each node's RSS")
	}
	if st, err := os.Stat(filepath.Join(out, "rss-nodes.png")); err != nil || st.Size() == 0 {
		t.Errorf("plot rss-nodes.png: %v", err)
	}
	if !strings.Contains(stdout, "wsbridge 3") {
		t.Errorf("the report lacks the nodes' table:\n%s", stdout)
	}
}

// TestBaseTarget runs wsbridge and wsbridge-base (here the same build) in
// one run: each is one node of its own, takes the broadcasts and the
// pushes, and writes its own admin file.
func TestBaseTarget(t *testing.T) {
	out := t.TempDir()
	bin := filepath.Join(out, "wsbridge-bin")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/wsbridge")
	cmd.Dir = bench.ModuleRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	res, _ := runTool(t, out, []string{"-n", "10", "-targets", "wsbridge,wsbridge-base", "-wsbridge", bin, "-wsbridge-base", bin, "-broadcasts", "2",
		"-pushes", "1", "-push-with", "go-batch", "-push-batch", "4", "-plots", "none",
		"-settle", "100ms", "-pause", "50ms", "-timeout", "10s", "-src", "127.0.0.2-127.0.0.3", "-out", out})
	if len(res.Targets) != 2 || res.Targets[0].Name != "wsbridge" || res.Targets[1].Name != "wsbridge-base" {
		t.Fatalf("targets %+v, want wsbridge and wsbridge-base", res.Targets)
	}
	for _, tr := range res.Targets {
		if tr.Conns != 10 || len(tr.Nodes) != 0 || len(tr.Scenarios) != 2 {
			t.Errorf("%s: %d connections, %d nodes, %d scenarios; want 10, 0 (one node), 2", tr.Name, tr.Conns, len(tr.Nodes), len(tr.Scenarios))
		}
		for _, sc := range tr.Scenarios {
			if sc.Delivered != sc.Expected || sc.Expected == 0 {
				t.Errorf("%s %s: delivered %d of %d", tr.Name, sc.Name, sc.Delivered, sc.Expected)
			}
		}
		if _, err := os.Stat(filepath.Join(out, tr.Name+"-admin.txt")); err != nil {
			t.Errorf("%s: %v", tr.Name, err)
		}
	}
}

// ensureAutoload writes php-client's composer autoloader, which the PHP
// callers require, when it is missing (make test writes it before go-test).
func ensureAutoload(t *testing.T) {
	t.Helper()
	dir := filepath.Join(bench.ModuleRoot(), "php-client")
	if _, err := os.Stat(filepath.Join(dir, "vendor", "autoload.php")); err == nil {
		return
	}
	cmd := exec.Command("composer", "dump-autoload", "--dev", "--quiet", "--no-interaction")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("composer dump-autoload --dev in %s (make php-autoload): %v\n%s", dir, err, out)
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-n", "0"},
		{"-targets", "nginx"},
		{"-broadcasts", "0"},
		{"-payload", "10"},
		{"-wsbridge-env", "FOO=1"},
		{"-push-batch", "0"},
		{"-nodes", "0"},
		{"-nodes", "2", "-targets", "wsbridge,gorilla"},
		{"-nodes", "2", "-targets", "wsbridge", "-groups", "2"},
		{"-pre-broadcasts", "x"},
		{"-nodes", "2", "-targets", "wsbridge-base"},
		{"-push-batch", "10001"},
		{"-push-per-conn", "0"},
		{"-push-with", "go-batch,carrier-pigeon"},
		{"-php-procs", "0"},
		{"-go-callers", "0"},
		{"extra"},
	} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != 2 {
			t.Errorf("run(%q) = %d, want 2 (stderr %q)", args, code, errOut.String())
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"--help"}, &out, &errOut); code != 0 || !strings.Contains(errOut.String(), "-centrifugo") {
		t.Errorf("--help: exit %d, usage %q", code, errOut.String())
	}
}

// Fewer connections than client processes: one process per connection (a
// process of none would refuse to start).
func TestFewConnections(t *testing.T) {
	var errOut bytes.Buffer
	o, err := parseFlags([]string{"-n", "1", "-procs", "2"}, &errOut)
	if err != nil || o.procs != 1 {
		t.Fatalf("parseFlags(-n 1 -procs 2) = %+v, %v; want 1 process", o, err)
	}
}

func TestHistogram(t *testing.T) {
	var h hist
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Millisecond)
	}
	c := histCounts(h.snapshot())
	if c.total() != 1000 {
		t.Fatalf("total %d", c.total())
	}
	for _, q := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {1, time.Second}} {
		got := c.quantile(q.q)
		// A bucket is 1/40 of a decade wide: its bound is within 6%.
		if got < q.want || float64(got) > 1.06*float64(q.want) {
			t.Errorf("quantile(%v) = %v, want %v within 6%% above", q.q, got, q.want)
		}
	}
}

func TestPayload(t *testing.T) {
	for _, size := range []int{34, 40, 400} {
		p := makePayload(nil, size)
		var v struct {
			TS int64  `json:"ts"`
			P  string `json:"p"`
		}
		if len(p) != size || json.Unmarshal(p, &v) != nil || v.TS == 0 {
			t.Errorf("makePayload(%d) = %q", size, p)
		}
	}
}

// runTool runs the tool with args (whose -out is out), fails the test
// unless it exits 0, and returns its results.json and its report.
func runTool(t *testing.T, out string, args []string) (results, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res results
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	return res, stdout.String()
}
