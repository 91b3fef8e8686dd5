package docker_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"gopkg.in/yaml.v3"
)

// TestMonitoringNamesExist: every metric that docker/prometheus/alerts.yml
// and docker/grafana/wsbridge.json query is one a running bridge exports:
// the test runs the binary (events and RPC on), scrapes its /metrics and
// fails on any query naming another. The alerts cover what the issue asks:
// event drops, queue overflows, delivery latency, a bridge not ready.
func TestMonitoringNamesExist(t *testing.T) {
	buildBinaries(t)
	exported := scrapeNames(t)

	var alerts struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, "docker/prometheus/alerts.yml")), &alerts); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	var exprs []string
	var allAlerts string
	for _, g := range alerts.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("alerts.yml: rule %+v lacks alert, expr, severity or summary", r)
			}
			exprs = append(exprs, r.Expr)
			allAlerts += r.Expr + "\n"
		}
	}
	for _, need := range []string{"wsbridge_events_dropped_total", "wsbridge_send_queue_overflows_total", "wsbridge_events_request_duration_seconds_bucket", "wsbridge_ready"} {
		if !strings.Contains(allAlerts, need) {
			t.Errorf("alerts.yml has no rule on %s", need)
		}
	}

	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal([]byte(readFile(t, "docker/grafana/wsbridge.json")), &dash); err != nil {
		t.Fatalf("wsbridge.json: %v", err)
	}
	if dash.UID == "" || len(dash.Panels) < 8 {
		t.Errorf("wsbridge.json: uid %q, %d panels", dash.UID, len(dash.Panels))
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		exprs = append(exprs, v.Definition)
	}

	metricName := regexp.MustCompile(`\b[a-z_][a-z0-9_]*\b`)
	checked := 0
	for _, e := range exprs {
		for _, name := range metricName.FindAllString(e, -1) {
			if !strings.HasPrefix(name, "wsbridge_") {
				continue
			}
			checked++
			if !exported[name] {
				t.Errorf("the query %q names %s, which the bridge does not export", e, name)
			}
		}
	}
	if checked < 20 {
		t.Errorf("only %d metric names checked", checked)
	}
}

// scrapeNames runs the binary and returns the names of the series its
// /metrics exports.
func scrapeNames(t *testing.T) map[string]bool {
	t.Helper()
	const token = "monitoring-test-token-0123456789"
	cmd := exec.Command(bridgeBinary, "-ws-addr", "127.0.0.1:0", "-rpc-addr", "tcp://127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-log-format", "json")
	cmd.Env = []string{"WSBRIDGE_ADMIN_TOKEN=" + token, "WSBRIDGE_EVENTS_URL=http://127.0.0.1:9/events"}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	addrs := make(chan string, 2)
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &rec) == nil && (rec.Msg == "admin listening" || rec.Msg == "websocket listening") {
				addrs <- rec.Msg + " " + rec.Addr
			}
		}
		_ = cmd.Wait()
	}()
	var addr, wsAddr string
	for addr == "" || wsAddr == "" {
		select {
		case a := <-addrs:
			if v, ok := strings.CutPrefix(a, "admin listening "); ok {
				addr = v
			} else {
				wsAddr = strings.TrimPrefix(a, "websocket listening ")
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the bridge did not log its listeners")
		}
	}
	// A connection that opens and closes: the close counters have a series.
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+wsAddr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	_, _, _ = ws.ReadMessage() // the bridge's answer
	ws.Close()
	var body []byte
	for deadline := time.Now().Add(10 * time.Second); ; {
		req, _ := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /metrics: %d %s", resp.StatusCode, body)
		}
		if strings.Contains(string(body), "wsbridge_connections_closed_total{") || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	names := map[string]bool{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		names[name] = true
	}
	for _, need := range []string{"wsbridge_connections", "wsbridge_ready", "wsbridge_events_dropped_total"} {
		if !names[need] {
			t.Fatalf("the scrape lacks %s: %v", need, slices.Sorted(func(yield func(string) bool) {
				for n := range names {
					if !yield(n) {
						return
					}
				}
			}))
		}
	}
	return names
}
