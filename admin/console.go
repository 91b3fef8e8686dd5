package admin

import (
	"bytes"
	"embed"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/sender"
)

// The operator console (docs/CONSOLE.md): static pages under /ui/, built
// into the binary, that call the /v1 API with the token the operator types
// in. The pages hold no data and are served without the token (a browser
// cannot send a bearer header when it navigates); every piece of data
// comes from /v1, behind the token. The token stays in the tab's
// sessionStorage: never in a URL, a cookie or a log.

//go:embed ui
var uiFiles embed.FS

// uiFS is the console's files: ui/index.html is /ui/.
func uiFS() fs.FS {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err) // the directory is embedded: a build error otherwise
	}
	return sub
}

// contentSecurityPolicy lets the console load its own files only, run no
// inline script and no eval, reach only its own origin, and never be
// framed: markup that slipped into the page could not run or leak.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"

// uiRoutes serves the console's files.
func (s *Server) uiRoutes(r chi.Router) {
	r.Get("/ui", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/", http.StatusMovedPermanently)
	})
	r.Get("/ui/", func(w http.ResponseWriter, r *http.Request) { s.uiFile(w, r, "index.html") })
	r.Get("/ui/{file}", func(w http.ResponseWriter, r *http.Request) { s.uiFile(w, r, chi.URLParam(r, "file")) })
}

func (s *Server) uiFile(w http.ResponseWriter, r *http.Request, name string) {
	data, err := fs.ReadFile(s.ui, name)
	if err != nil || !fs.ValidPath(name) {
		writeError(w, r, sender.CodeNotFound, "no such console file: "+name)
		return
	}
	h := w.Header()
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	h.Set("Content-Type", ctype)
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache") // revalidated: a new binary's pages are seen at once
	http.ServeContent(w, r, name, s.started, bytes.NewReader(data))
}

// BuildInfo describes the binary, for GET /v1/about.
type BuildInfo struct {
	Version   string `json:"version"`
	Revision  string `json:"revision,omitempty"` // the VCS commit, when built from a checkout
	Time      string `json:"time,omitempty"`     // the commit's time
	Modified  bool   `json:"modified,omitempty"` // built from a checkout with changes
	GoVersion string `json:"go_version"`
}

// Setting is one setting in effect, as GET /v1/about shows it: secrets
// masked, URLs without their password (the binary's effective config).
type Setting struct {
	Name    string `json:"name"` // the flag, like ws-addr
	Env     string `json:"env"`  // its variable, like WSBRIDGE_WS_ADDR
	Group   string `json:"group"`
	Value   string `json:"value"`
	Default bool   `json:"default"` // the built-in default
}

// About is the answer of GET /v1/about.
type About struct {
	Build         BuildInfo   `json:"build"`
	NodeID        int         `json:"node_id"`
	Started       time.Time   `json:"started"`
	UptimeSeconds float64     `json:"uptime_seconds"`
	Settings      []Setting   `json:"settings"`
	Stream        StreamStats `json:"stream"`
	Traced        []int64     `json:"traced"` // fds whose trace is kept now
}

func (s *Server) about(w http.ResponseWriter, r *http.Request) {
	settings := s.cfg.Settings
	if settings == nil {
		settings = []Setting{}
	}
	writeJSON(w, r, http.StatusOK, About{
		Build: s.cfg.Build, NodeID: s.svc.NodeID(), Started: s.started,
		UptimeSeconds: time.Since(s.started).Seconds(), Settings: settings,
		Stream: s.streams.stats(), Traced: s.hub.Traced(),
	})
}

// Trace bounds of POST /v1/connections/{fd}/trace.
const (
	DefaultTraceSeconds = 60
	MaxTraceSeconds     = int(bridge.MaxTraceDuration / time.Second)
)

// traceBody is the body of POST /v1/connections/{fd}/trace; it may be
// left out.
type traceBody struct {
	Seconds int `json:"seconds,omitempty"` // 1..MaxTraceSeconds; default DefaultTraceSeconds
}

// TraceOn is the answer of POST /v1/connections/{fd}/trace.
type TraceOn struct {
	FD    int64     `json:"fd"`
	Until time.Time `json:"until"`
}

// TraceAnswer is the answer of GET /v1/connections/{fd}/trace: the trace,
// and the connection's queue and bytes while it is open (null after).
type TraceAnswer struct {
	bridge.Trace
	Connection *bridge.ConnStats `json:"connection"`
}

// TraceStopped is the answer of DELETE /v1/connections/{fd}/trace.
type TraceStopped struct {
	Stopped bool `json:"stopped"`
}

func (s *Server) startTrace(w http.ResponseWriter, r *http.Request) {
	var b traceBody
	if err := readBody(w, r, s.cfg.MaxBody, &b, true); err != nil {
		fail(w, r, err)
		return
	}
	if err := checkTraceSeconds(&b); err != nil {
		fail(w, r, err)
		return
	}
	until, err := s.svc.Trace(fdOf(r), time.Duration(b.Seconds)*time.Second)
	if err != nil {
		fail(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, TraceOn{FD: fdOf(r), Until: until})
}

// checkTraceSeconds applies the default and the bounds of a trace's time.
func checkTraceSeconds(b *traceBody) error {
	if b.Seconds == 0 {
		b.Seconds = DefaultTraceSeconds
	}
	if b.Seconds < 1 || b.Seconds > MaxTraceSeconds {
		return sender.BadRequest("seconds: want 1.." + strconv.Itoa(MaxTraceSeconds))
	}
	return nil
}

func (s *Server) getTrace(w http.ResponseWriter, r *http.Request) {
	tr, st, err := s.svc.TraceOf(fdOf(r))
	if err != nil {
		fail(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, TraceAnswer{Trace: tr, Connection: st})
}

func (s *Server) stopTrace(w http.ResponseWriter, r *http.Request) {
	ok, err := s.svc.StopTrace(fdOf(r))
	if err != nil {
		fail(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, TraceStopped{ok})
}
