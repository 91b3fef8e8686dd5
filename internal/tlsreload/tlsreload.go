// Package tlsreload serves a certificate and key pair from files to a TLS
// listener and reloads it when the files change or when asked (SIGHUP),
// without touching the connections already open: a TLS handshake asks
// for the certificate (tls.Config.GetCertificate), so a new certificate
// serves the next handshakes while the connections made with the old one
// go on.
//
// A reload that fails (a missing, unreadable, half-written or mismatched
// file) keeps the certificate in use; it is logged and counted, and tried
// again when the files change again or at the next Reload.
package tlsreload

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wsbridge/wsbridge/internal/config"
)

// Defaults and bounds.
const (
	// DefaultInterval is how often Run looks at the files.
	DefaultInterval = 10 * time.Second
	// MaxFileSize bounds a certificate or key file; a chain of a few
	// certificates is a few KiB.
	MaxFileSize = 1 << 20
)

// ErrFileTooLarge is returned for a file over MaxFileSize.
var ErrFileTooLarge = errors.New("tlsreload: file larger than 1MiB")

// Config configures a Reloader; zero fields take their documented defaults.
type Config struct {
	// Name says which listener the certificate serves ("websocket",
	// "admin"), in logs and Stats.
	Name string
	// CertFile is the PEM certificate chain, leaf first; KeyFile its
	// PEM private key. Both are required.
	CertFile, KeyFile string
	// Interval is how often Run checks the files for a change (size,
	// modification time, inode: a Kubernetes secret's symlink swap
	// changes the inode). Default DefaultInterval.
	Interval time.Duration
	// Logger receives a record per load and per failed reload. Default
	// slog.Default().
	Logger *slog.Logger
}

// Stats are a Reloader's counts and the certificate it serves.
type Stats struct {
	Name     string
	Reloads  uint64 // certificates loaded after the first
	Failures uint64 // reloads that failed (the previous certificate stayed)
	Subject  string
	NotAfter time.Time // the certificate's expiry
	Loaded   time.Time // when the certificate in use was loaded
}

// Reloader holds the certificate of one listener. Its methods are safe for
// concurrent use.
type Reloader struct {
	cfg Config
	log *slog.Logger

	cur      atomic.Pointer[loaded]
	reloads  atomic.Uint64
	failures atomic.Uint64

	mu      sync.Mutex // serialises loads; guards seen and pending
	seen    state      // the files as the last load found them
	pending state      // the files as the last check found them
}

// loaded is a certificate in use.
type loaded struct {
	cert *tls.Certificate
	at   time.Time
}

// New loads the pair named by cfg; an error (a file missing, unreadable,
// too large, not PEM, or a key that does not match) leaves no Reloader.
func New(cfg Config) (*Reloader, error) {
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, errors.New("tlsreload: both a certificate and a key file are required")
	}
	config.Default(&cfg.Interval, DefaultInterval)
	if cfg.Interval < 0 {
		return nil, errors.New("tlsreload: interval must be positive")
	}
	config.Default(&cfg.Logger, slog.Default())
	r := &Reloader{cfg: cfg, log: cfg.Logger}
	st, cert, err := r.load()
	if err != nil {
		return nil, err
	}
	r.seen, r.pending = st, st
	r.install(cert, "start")
	return r, nil
}

// GetCertificate serves the current certificate; it is the
// tls.Config.GetCertificate of the listener.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cur.Load().cert, nil
}

// Leaf returns the certificate in use.
func (r *Reloader) Leaf() *x509.Certificate { return r.cur.Load().cert.Leaf }

// ServerConfig returns a TLS configuration for an HTTP/1.1 listener that
// serves the Reloader's certificate: TLS 1.2 at least, Go's default cipher
// suites (all with forward secrecy for TLS 1.2), no client certificates.
// HTTP/2 is not offered: a WebSocket upgrade needs HTTP/1.1.
func (r *Reloader) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
		NextProtos:     []string{"http/1.1"},
	}
}

// Stats returns the counts and the certificate in use.
func (r *Reloader) Stats() Stats {
	l := r.cur.Load()
	return Stats{
		Name:     r.cfg.Name,
		Reloads:  r.reloads.Load(),
		Failures: r.failures.Load(),
		Subject:  l.cert.Leaf.Subject.String(),
		NotAfter: l.cert.Leaf.NotAfter,
		Loaded:   l.at,
	}
}

// Reload loads the files now, changed or not (SIGHUP). On an error the
// certificate in use stays; the error is logged, counted and returned.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reloadLocked("signal")
}

// Run checks the files every Interval and reloads them once they have
// changed and then stayed the same for an Interval (so that files being
// written are not read half-way), until ctx ends. A failed reload is tried
// again once the files change again.
func (r *Reloader) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.check()
		}
	}
}

// check reloads the files if they changed since the last load and not
// since the last check.
func (r *Reloader) check() {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, _ := r.stat()
	last := r.pending
	r.pending = st
	if st == r.seen || st != last {
		return // unchanged (or still missing: the failure was logged once), or still changing
	}
	_ = r.reloadLocked("file change")
}

func (r *Reloader) reloadLocked(reason string) error {
	st, cert, err := r.load()
	r.seen = st
	if err != nil {
		r.failures.Add(1)
		r.log.Error("tls certificate reload failed; the previous certificate stays in use",
			"listener", r.cfg.Name, "reason", reason, "err", err)
		return err
	}
	r.reloads.Add(1)
	r.install(cert, reason)
	return nil
}

func (r *Reloader) install(cert *tls.Certificate, reason string) {
	r.cur.Store(&loaded{cert: cert, at: time.Now()})
	leaf := cert.Leaf
	attrs := []any{"listener", r.cfg.Name, "reason", reason, "cert_file", r.cfg.CertFile,
		"subject", leaf.Subject.String(), "dns_names", strings.Join(leaf.DNSNames, ","),
		"not_before", leaf.NotBefore.UTC().Format(time.RFC3339), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339)}
	switch now := time.Now(); {
	case now.After(leaf.NotAfter):
		r.log.Warn("tls certificate loaded, but it has expired: clients will refuse it", attrs...)
	case now.Before(leaf.NotBefore):
		r.log.Warn("tls certificate loaded, but it is not valid yet: clients will refuse it", attrs...)
	default:
		r.log.Info("tls certificate loaded", attrs...)
	}
}

// state identifies the files' contents without reading them: what a
// replaced file (rename, Kubernetes' ..data symlink swap) or one written in
// place changes. The zero state stands for files that could not be found.
type state struct{ cert, key fileState }

type fileState struct {
	dev, ino uint64
	size     int64
	mtime    int64
}

func (r *Reloader) stat() (state, error) {
	var st state
	var err error
	if st.cert, err = statFile(r.cfg.CertFile); err != nil {
		return state{}, err
	}
	if st.key, err = statFile(r.cfg.KeyFile); err != nil {
		return state{}, err
	}
	return st, nil
}

func statFile(path string) (fileState, error) {
	fi, err := os.Stat(path) // through symlinks: the file they name now
	if err != nil {
		return fileState{}, err
	}
	fs := fileState{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		fs.dev, fs.ino = uint64(sys.Dev), sys.Ino
	}
	return fs, nil
}

// load reads and parses the pair. The state is taken before the reads: a
// file replaced while it is read changes the state again, so the next check
// loads it.
func (r *Reloader) load() (state, *tls.Certificate, error) {
	st, err := r.stat()
	if err != nil {
		return st, nil, fmt.Errorf("tlsreload: %w", err)
	}
	certPEM, err := readFile(r.cfg.CertFile)
	if err != nil {
		return st, nil, fmt.Errorf("tlsreload: certificate: %w", err)
	}
	keyPEM, err := readFile(r.cfg.KeyFile)
	if err != nil {
		return st, nil, fmt.Errorf("tlsreload: key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return st, nil, fmt.Errorf("tlsreload: %s and %s: %w", r.cfg.CertFile, r.cfg.KeyFile, err)
	}
	if cert.Leaf == nil { // set by X509KeyPair since Go 1.23
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return st, nil, fmt.Errorf("tlsreload: %s: %w", r.cfg.CertFile, err)
		}
	}
	return st, &cert, nil
}

// readFile reads path, refusing one over MaxFileSize.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("%s: %w", path, ErrFileTooLarge)
	}
	return b, nil
}
