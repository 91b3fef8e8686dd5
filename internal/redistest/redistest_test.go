package redistest

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestServerRestart(t *testing.T) {
	s := Start(t)
	if out, err := s.CLI("set", "k", "v"); err != nil || out != "OK" {
		t.Fatalf("SET: %q, %v", out, err)
	}
	port := s.Port
	s.Restart(50 * time.Millisecond)
	if s.Port != port {
		t.Fatalf("port changed: %d → %d", port, s.Port)
	}
	// Nothing is persisted: the restarted server is empty.
	if out, err := s.CLI("get", "k"); err != nil || out != "" {
		t.Fatalf("GET after restart: %q, %v", out, err)
	}
	s.Stop()
	if _, err := s.CLI("ping"); err == nil {
		t.Fatal("PING answered after Stop")
	}
}

func TestCluster(t *testing.T) {
	c := StartCluster(t)
	if len(c.Servers) != 3 {
		t.Fatalf("%d servers", len(c.Servers))
	}
	out, err := c.Servers[0].CLI("cluster", "info")
	if err != nil || !strings.Contains(out, "cluster_known_nodes:3") || !strings.Contains(out, "cluster_slots_ok:16384") {
		t.Fatalf("cluster info: %v\n%s", err, out)
	}
	if !strings.Contains(c.URL(), "addr=") {
		t.Fatalf("URL %q names one node", c.URL())
	}
	// "{a}" is in slot 15495 and "{b}" in 3300: the last and the first
	// master of a cluster made of three.
	for key, want := range map[string]*Server{"{a}x": c.Servers[2], "{b}y": c.Servers[0]} {
		if s, err := c.ServerOf(key); err != nil || s != want {
			t.Errorf("ServerOf(%q) = %p, %v; want the server of %s", key, s, err, want.Addr())
		}
	}
}
