package tlsreload

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wsbridge/wsbridge/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout turns a reload that never comes into a failure; it is no
// speed target.
const waitTimeout = 20 * time.Second

func newReloader(t *testing.T, certFile, keyFile string, logs *testutil.LogBuffer) *Reloader {
	t.Helper()
	r, err := New(Config{Name: "test", CertFile: certFile, KeyFile: keyFile, Interval: 10 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// echoServer serves r's certificate on a real TLS listener; each
// connection echoes lines.
func echoServer(t *testing.T, r *Reloader) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", r.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := c.Write(append(sc.Bytes(), '\n')); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// dial connects with a client that trusts only ca and returns the
// connection and the certificate the server presented.
func dial(t *testing.T, addr string, ca *testutil.CA) (*tls.Conn, *x509.Certificate) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, ca.ClientConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, c.ConnectionState().PeerCertificates[0]
}

func echo(t *testing.T, c *tls.Conn, line string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(waitTimeout))
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		t.Fatalf("write on the old connection: %v", err)
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || got != line+"\n" {
		t.Fatalf("echo %q: %q, %v", line, got, err)
	}
}

func sameCert(a, b *x509.Certificate) bool { return a.Equal(b) }

// TestReloadKeepsOpenConnections: after Reload a new handshake gets the
// new certificate; a connection made with the old one goes on.
func TestReloadKeepsOpenConnections(t *testing.T) {
	ca := testutil.NewCA(t, "test CA")
	dir := t.TempDir()
	a, b := ca.Issue(t, "first", time.Time{}), ca.Issue(t, "second", time.Time{})
	certFile, keyFile := a.Write(t, dir)
	var logs testutil.LogBuffer
	r := newReloader(t, certFile, keyFile, &logs)
	addr := echoServer(t, r)

	old, seen := dial(t, addr, ca)
	if !sameCert(seen, a.Cert) {
		t.Fatalf("first handshake got %v, want %v", seen.Subject, a.Cert.Subject)
	}
	echo(t, old, "before")

	b.Write(t, dir)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, seen := dial(t, addr, ca); !sameCert(seen, b.Cert) {
		t.Fatalf("handshake after reload got %v, want %v", seen.Subject, b.Cert.Subject)
	}
	echo(t, old, "after") // the old connection is untouched
	st := r.Stats()
	if st.Reloads != 1 || st.Failures != 0 || st.Subject != "CN=second" || !st.NotAfter.Equal(b.Cert.NotAfter) {
		t.Errorf("stats %+v", st)
	}
	if recs := logs.Records("tls certificate loaded"); len(recs) != 2 || recs[1]["subject"] != "CN=second" || recs[1]["reason"] != "signal" {
		t.Errorf("load records %v", recs)
	}
}

// TestInvalidFilesKeepTheCertificate: every way a reload can fail keeps
// the certificate in use, and is counted and logged.
func TestInvalidFilesKeepTheCertificate(t *testing.T) {
	ca := testutil.NewCA(t, "test CA")
	a, b := ca.Issue(t, "first", time.Time{}), ca.Issue(t, "second", time.Time{})
	for _, tc := range []struct {
		name      string
		cert, key []byte // nil: remove the file
		want      error  // when the error has a sentinel
	}{
		{"cert half written", b.CertPEM[:len(b.CertPEM)/2], a.KeyPEM, nil},
		{"key half written", a.CertPEM, b.KeyPEM[:len(b.KeyPEM)/2], nil},
		{"new cert, old key", b.CertPEM, a.KeyPEM, nil},
		{"empty cert", []byte{}, a.KeyPEM, nil},
		{"not PEM", []byte("hello"), []byte("world"), nil},
		{"cert removed", nil, a.KeyPEM, fs.ErrNotExist},
		{"key removed", a.CertPEM, nil, fs.ErrNotExist},
		{"cert too large", append(append([]byte{}, b.CertPEM...), make([]byte, MaxFileSize)...), b.KeyPEM, ErrFileTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			certFile, keyFile := a.Write(t, dir)
			var logs testutil.LogBuffer
			r := newReloader(t, certFile, keyFile, &logs)
			addr := echoServer(t, r)
			old, _ := dial(t, addr, ca)
			for _, f := range []struct {
				path string
				data []byte
			}{{certFile, tc.cert}, {keyFile, tc.key}} {
				if f.data == nil {
					if err := os.Remove(f.path); err != nil {
						t.Fatal(err)
					}
					continue
				}
				testutil.WriteFileAtomic(t, f.path, f.data, 0o600)
			}
			err := r.Reload()
			if err == nil {
				t.Fatal("Reload succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Reload: %v, want %v", err, tc.want)
			}
			if _, seen := dial(t, addr, ca); !sameCert(seen, a.Cert) {
				t.Errorf("after a failed reload the server presents %v, want the old %v", seen.Subject, a.Cert.Subject)
			}
			echo(t, old, "still here")
			if st := r.Stats(); st.Failures != 1 || st.Reloads != 0 || st.Subject != "CN=first" {
				t.Errorf("stats %+v", st)
			}
			recs := logs.Records("tls certificate reload failed; the previous certificate stays in use")
			if len(recs) != 1 || !strings.Contains(recs[0]["err"].(string), "tlsreload") {
				t.Errorf("failure records %v", recs)
			}
		})
	}
}

// TestCheck: a change of the files is noticed (replaced by a rename,
// written in place, removed) and loaded once they have stayed the same for
// one check; a failure is logged once and not retried until the files
// change again; a pair written one file at a time loads once both are
// there.
func TestCheck(t *testing.T) {
	ca := testutil.NewCA(t, "test CA")
	a, b, c := ca.Issue(t, "first", time.Time{}), ca.Issue(t, "second", time.Time{}), ca.Issue(t, "third", time.Time{})
	dir := t.TempDir()
	certFile, keyFile := a.Write(t, dir)
	var logs testutil.LogBuffer
	r := newReloader(t, certFile, keyFile, &logs)
	want := func(step string, reloads, failures uint64, subject string) {
		t.Helper()
		if st := r.Stats(); st.Reloads != reloads || st.Failures != failures || st.Subject != subject {
			t.Fatalf("%s: %+v, want %d reloads, %d failures, %s", step, st, reloads, failures, subject)
		}
	}
	// settle is what Run does over two intervals: the first check sees
	// the change, the second loads it if the files stayed the same.
	settle := func(step string, reloads, failures uint64, subject string) {
		t.Helper()
		before := r.Stats()
		r.check()
		want(step+", first check", before.Reloads, before.Failures, before.Subject)
		r.check()
		want(step, reloads, failures, subject)
	}

	r.check()
	r.check()
	want("unchanged files", 0, 0, "CN=first")
	// The new certificate first: the pair does not match yet.
	testutil.WriteFileAtomic(t, certFile, b.CertPEM, 0o644)
	settle("the certificate alone", 0, 1, "CN=first")
	r.check() // unchanged since the failure: not retried, not logged again
	want("the certificate alone, checked again", 0, 1, "CN=first")
	testutil.WriteFileAtomic(t, keyFile, b.KeyPEM, 0o600)
	settle("then the key", 1, 1, "CN=second")
	// Written in place (same inode): size and time change.
	if err := os.WriteFile(certFile, c.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, c.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	settle("written in place", 2, 1, "CN=third")
	// Still being written: a change at every check is not loaded.
	testutil.WriteFileAtomic(t, certFile, a.CertPEM[:100], 0o644)
	r.check()
	testutil.WriteFileAtomic(t, certFile, a.CertPEM[:200], 0o644)
	r.check()
	want("while the file changes", 2, 1, "CN=third")
	testutil.WriteFileAtomic(t, certFile, c.CertPEM, 0o644)
	settle("written to the end", 3, 1, "CN=third")
	// Removed: one failure, logged once; back: loaded.
	os.Remove(certFile)
	settle("removed", 3, 2, "CN=third")
	r.check()
	want("still removed", 3, 2, "CN=third")
	a.Write(t, dir)
	settle("restored", 4, 2, "CN=first")
	if n := len(logs.Records("tls certificate reload failed; the previous certificate stays in use")); n != 2 {
		t.Errorf("%d failure records, want 2:\n%s", n, logs.String())
	}
}

// k8sSecret lays out a directory as the kubelet mounts a secret: the
// files are symlinks through ..data to a timestamped directory, and an
// update swaps ..data atomically.
type k8sSecret struct {
	t   *testing.T
	dir string
	n   int
}

func (s *k8sSecret) write(l testutil.Leaf) {
	s.t.Helper()
	s.n++
	ts := filepath.Join(s.dir, "..2026_12_03_01_00_0"+string(rune('0'+s.n)))
	if err := os.Mkdir(ts, 0o755); err != nil {
		s.t.Fatal(err)
	}
	for name, data := range map[string][]byte{"tls.crt": l.CertPEM, "tls.key": l.KeyPEM} {
		if err := os.WriteFile(filepath.Join(ts, name), data, 0o600); err != nil {
			s.t.Fatal(err)
		}
	}
	tmp := filepath.Join(s.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, "..data")); err != nil {
		s.t.Fatal(err)
	}
	for _, name := range []string{"tls.crt", "tls.key"} {
		link := filepath.Join(s.dir, name)
		if _, err := os.Lstat(link); errors.Is(err, fs.ErrNotExist) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				s.t.Fatal(err)
			}
		}
	}
}

// TestRun: the poller notices a Kubernetes secret update and exits with
// its context.
func TestRun(t *testing.T) {
	ca := testutil.NewCA(t, "test CA")
	a, b := ca.Issue(t, "first", time.Time{}), ca.Issue(t, "second", time.Time{})
	sec := &k8sSecret{t: t, dir: t.TempDir()}
	sec.write(a)
	var logs testutil.LogBuffer
	r := newReloader(t, filepath.Join(sec.dir, "tls.crt"), filepath.Join(sec.dir, "tls.key"), &logs)
	addr := echoServer(t, r)
	old, _ := dial(t, addr, ca)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	sec.write(b)
	for deadline := time.Now().Add(waitTimeout); !sameCert(r.Leaf(), b.Cert); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the secret's update was not loaded within %s:\n%s", waitTimeout, logs.String())
		}
	}
	if _, seen := dial(t, addr, ca); !sameCert(seen, b.Cert) {
		t.Errorf("new handshake got %v", seen.Subject)
	}
	echo(t, old, "after the swap")
	if recs := logs.Records("tls certificate loaded"); len(recs) != 2 || recs[1]["reason"] != "file change" {
		t.Errorf("load records %v", recs)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestNewErrors(t *testing.T) {
	ca := testutil.NewCA(t, "test CA")
	a, b := ca.Issue(t, "first", time.Time{}), ca.Issue(t, "second", time.Time{})
	dir := t.TempDir()
	certFile, keyFile := a.Write(t, dir)
	mismatch := filepath.Join(dir, "other.key")
	if err := os.WriteFile(mismatch, b.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		cert, key string
		want      error
		text      string
	}{
		{"no cert", "", keyFile, nil, "both"},
		{"no key", certFile, "", nil, "both"},
		{"missing cert", filepath.Join(dir, "nope.crt"), keyFile, fs.ErrNotExist, "nope.crt"},
		{"missing key", certFile, filepath.Join(dir, "nope.key"), fs.ErrNotExist, "nope.key"},
		{"key of another cert", certFile, mismatch, nil, "private key does not match public key"},
		{"swapped", keyFile, certFile, nil, "tls.key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(Config{CertFile: tc.cert, KeyFile: tc.key})
			if err == nil {
				t.Fatalf("New succeeded: %+v", r.Stats())
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("New: %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("New: %v, want it to mention %q", err, tc.text)
			}
		})
	}
}

// TestServerConfig: TLS 1.1 is refused, 1.2 and 1.3 are served, HTTP/1.1
// is the protocol offered.
func TestServerConfig(t *testing.T) {
	ca := testutil.NewCA(t, "test CA")
	certFile, keyFile := ca.Issue(t, "server", time.Time{}).Write(t, t.TempDir())
	var logs testutil.LogBuffer
	addr := echoServer(t, newReloader(t, certFile, keyFile, &logs))
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cfg := ca.ClientConfig(nil)
		cfg.MinVersion, cfg.MaxVersion, cfg.NextProtos = v, v, []string{"h2", "http/1.1"}
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatalf("%s: %v", tls.VersionName(v), err)
		}
		if p := c.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
			t.Errorf("%s: negotiated %q", tls.VersionName(v), p)
		}
		c.Close()
	}
	cfg := ca.ClientConfig(nil)
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if c, err := tls.Dial("tcp", addr, cfg); err == nil {
		c.Close()
		t.Error("a TLS 1.1 client was served")
	}
}

// TestExpiredIsWarned: an expired certificate loads (the operator may have
// nothing better), with a warning.
func TestExpiredIsWarned(t *testing.T) {
	ca := testutil.NewCA(t, "test CA")
	certFile, keyFile := ca.Issue(t, "old", time.Now().Add(-time.Minute)).Write(t, t.TempDir())
	var logs testutil.LogBuffer
	newReloader(t, certFile, keyFile, &logs)
	if recs := logs.Records("tls certificate loaded, but it has expired: clients will refuse it"); len(recs) != 1 {
		t.Errorf("no expiry warning:\n%s", logs.String())
	}
}

// FuzzReload: whatever the files hold, a reload either serves a pair
// whose key matches its certificate, or fails, is counted, and keeps the
// certificate in use.
func FuzzReload(f *testing.F) {
	ca := testutil.NewCA(f, "fuzz CA")
	a, b := ca.Issue(f, "first", time.Time{}), ca.Issue(f, "second", time.Time{})
	f.Add(b.CertPEM, b.KeyPEM)
	f.Add(b.CertPEM[:len(b.CertPEM)/2], b.KeyPEM)
	f.Add(b.CertPEM, a.KeyPEM)
	f.Add(b.KeyPEM, b.CertPEM)
	f.Add(append(append([]byte{}, b.CertPEM...), a.CertPEM...), b.KeyPEM)
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		dir := t.TempDir()
		certFile, keyFile := a.Write(t, dir)
		r, err := New(Config{CertFile: certFile, KeyFile: keyFile, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		testutil.WriteFileAtomic(t, certFile, certPEM, 0o644)
		testutil.WriteFileAtomic(t, keyFile, keyPEM, 0o600)
		err = r.Reload()
		cert, _ := r.GetCertificate(nil)
		st := r.Stats()
		if err != nil {
			if !cert.Leaf.Equal(a.Cert) || st.Failures != 1 || st.Reloads != 0 {
				t.Fatalf("a failed reload (%v) left %v served, stats %+v", err, cert.Leaf.Subject, st)
			}
			return
		}
		if st.Reloads != 1 || st.Failures != 0 || st.Subject != cert.Leaf.Subject.String() {
			t.Fatalf("stats %+v after a reload", st)
		}
		if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			t.Fatalf("a pair X509KeyPair refuses was loaded: %v", err)
		}
	})
}
