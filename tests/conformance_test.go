package tests

import (
	"bytes"
	"encoding/base64"
	be "encoding/binary" // big-endian lengths and codes; "binary" is the built executable
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/wsbridge/wsbridge/rpc"
)

// TestConformance encodes the categories of the Autobahn|Testsuite
// fuzzing client (1–7, 9, 10, 12, 13; issue 8, "Conformance and fuzzing")
// as table tests against the real binary over raw sockets, through the
// real event path: client → bridge → events (an echo application, echoApp,
// standing in for PHP) → Sender.Push over goridge RPC → bridge → client.
// Each subtest is named by the Autobahn case it reproduces ("6.4.1"); rows
// with no Autobahn counterpart are named by the RFC section they test
// ("rfc6455-5.1 …", "rfc7692 …"). Sizes and message counts are scaled down
// from Autobahn's (its 16 MiB messages and 1000-message runs) so the suite
// runs in seconds; the message limit is the bridge's configured one.
//
// Besides what Autobahn checks on the wire, every case checks what the
// application saw: exactly the messages the client completed before the
// end, and a close event whose code is the one actually on the wire and
// whose "by" names who closed (a protocol error is the server's close).
func TestConformance(t *testing.T) {
	t.Parallel()
	bridges := map[string]*conformBridge{
		"":     startConformBridge(t, "-compression", "-max-message-size", fmt.Sprint(conformLimit)),
		"frag": startConformBridge(t, "-fragment-size", fmt.Sprint(conformFragment)),
	}
	cases := conformanceCases()
	seen := map[string]bool{}
	for _, cc := range cases {
		if seen[cc.id] {
			t.Fatalf("case %q twice in the table", cc.id)
		}
		seen[cc.id] = true
	}
	// Cases in flight: most wait on sockets; few move large messages.
	light, heavy := make(chan struct{}, 24), make(chan struct{}, 3)
	for _, cc := range cases {
		t.Run(cc.id, func(t *testing.T) {
			done := make(chan *caseRun, 1)
			r := &caseRun{cc: cc, br: bridges[cc.bridge]}
			sem := light
			if cc.heavy() {
				sem = heavy
			}
			go func() {
				sem <- struct{}{}
				began := time.Now()
				defer func() {
					r.took = time.Since(began)
					<-sem
					if r.c != nil {
						_ = r.c.Close()
					}
					done <- r
				}()
				r.run()
			}()
			t.Parallel()
			<-done
			for _, e := range r.errs {
				t.Errorf("%s: %s", cc.id, e)
			}
			if testing.Verbose() {
				t.Logf("%s took %s", cc.id, r.took)
			}
			if len(r.errs) > 0 {
				t.Logf("%s transcript:\n  %s", cc.id, strings.Join(r.trace, "\n  "))
			}
		})
	}
}

const (
	conformLimit    = 1 << 20 // -max-message-size of the main bridge
	conformFragment = 1300    // -fragment-size of the "frag" bridge (Autobahn 10.1.1's)
	caseTimeout     = 10 * time.Second
)

// conformBridge is a running binary with its echo application.
type conformBridge struct {
	addr string
	app  *echoApp
}

func startConformBridge(t *testing.T, args ...string) *conformBridge {
	app := newEchoApp(t)
	p := startDefault(t, []string{"WSBRIDGE_EVENTS_URL=" + app.srv.URL + "/events"}, args...)
	rpcAddr, _ := p.waitFor("rpc listening")["addr"].(string)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		// What the bridge had to say about the failures (warnings and
		// errors only; the first 50).
		recs, _ := p.records()
		var lines []string
		for _, r := range recs {
			if r["level"] != "INFO" && r["level"] != "DEBUG" && len(lines) < 50 {
				b, _ := json.Marshal(r)
				lines = append(lines, string(b))
			}
		}
		t.Logf("bridge %s %q, its warnings:\n%s", p.addr, args, strings.Join(lines, "\n"))
	})
	app.startEchoing(t, rpcAddr)
	return &conformBridge{addr: p.addr, app: app}
}

// echoApp is the application behind the bridge: it records every event
// per connection and echoes every message event back to its connection
// with Sender.Push (same opcode), in order per connection. It acknowledges
// a batch at once and pushes afterwards (as a PHP worker that answers and
// then pushes would), so a slow push never makes the bridge retry a batch.
type echoApp struct {
	srv *httptest.Server

	pushMu  sync.RWMutex     // held to send to pushers (read) and to close them (write)
	pushers []chan echoEvent // one per RPC connection; an fd always uses the same one; nil once stopped
	stopped sync.WaitGroup   // the pushers

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced when events arrive
	fds      map[string]int64
	events   map[int64][]echoEvent
	lastSeq  map[int64]int
	problems []string
}

type echoEvent struct {
	Type     string `json:"type"`
	FD       int64  `json:"fd"`
	Seq      int    `json:"seq"`
	Query    string `json:"query"`
	Opcode   int    `json:"opcode"`
	Data     string `json:"data"`
	Encoding string `json:"encoding"`
	Code     int    `json:"code"`
	Reason   string `json:"reason"`
	By       string `json:"by"`
}

func newEchoApp(t *testing.T) *echoApp {
	a := &echoApp{
		changed: make(chan struct{}),
		fds:     map[string]int64{},
		events:  map[int64][]echoEvent{},
		lastSeq: map[int64]int{},
	}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(func() {
		a.srv.Close()
		for _, p := range a.problems {
			t.Error("echo application:", p)
		}
	})
	return a
}

// startEchoing starts the pushers, each with its RPC connection. At
// cleanup they finish what is queued and stop, before the bridge does.
func (a *echoApp) startEchoing(t *testing.T, rpcAddr string) {
	a.pushMu.Lock()
	defer a.pushMu.Unlock()
	t.Cleanup(a.stopEchoing)
	for range 4 {
		c, err := rpc.Dial(rpcAddr, rpc.JSON, caseTimeout)
		if err != nil {
			t.Fatalf("rpc dial %s: %v", rpcAddr, err)
		}
		ch := make(chan echoEvent, 4096)
		a.pushers = append(a.pushers, ch)
		a.stopped.Add(1)
		go func() {
			defer a.stopped.Done()
			defer c.Close()
			for e := range ch {
				a.echo(c, e)
			}
		}()
	}
}

func (a *echoApp) stopEchoing() {
	a.pushMu.Lock()
	for _, ch := range a.pushers {
		close(ch)
	}
	a.pushers = nil
	a.pushMu.Unlock()
	a.stopped.Wait()
}

func (a *echoApp) problem(format string, args ...any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.problems = append(a.problems, fmt.Sprintf(format, args...))
}

func (a *echoApp) serve(w http.ResponseWriter, r *http.Request) {
	var batch struct {
		Events []echoEvent `json:"events"`
	}
	body, err := io.ReadAll(r.Body)
	if err == nil {
		err = json.Unmarshal(body, &batch)
	}
	if err != nil || r.Header.Get("X-Wsbridge-Kind") != "events" {
		a.problem("request %s %q: %v", r.Header.Get("X-Wsbridge-Kind"), body, err)
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	var fresh []echoEvent
	for _, e := range batch.Events {
		if e.Seq <= a.lastSeq[e.FD] {
			continue // a retried batch: delivery is at least once (PROTOCOL.md)
		}
		a.lastSeq[e.FD] = e.Seq
		if e.Type == "open" {
			a.fds[e.Query] = e.FD
		}
		a.events[e.FD] = append(a.events[e.FD], e)
		fresh = append(fresh, e)
	}
	close(a.changed)
	a.changed = make(chan struct{})
	a.mu.Unlock()
	// Queue the echoes before acknowledging: the bridge sends an fd's
	// next batch only then, so its echoes stay in order.
	a.pushMu.RLock()
	for _, e := range fresh {
		if e.Type == "message" && len(a.pushers) > 0 {
			a.pushers[e.FD%int64(len(a.pushers))] <- e
		}
	}
	a.pushMu.RUnlock()
	w.WriteHeader(http.StatusNoContent)
}

// echo pushes a message event back to its connection; false (the
// connection has closed meanwhile) is not a problem.
func (a *echoApp) echo(c *rpc.Client, e echoEvent) {
	args := map[string]any{"fd": e.FD, "data": e.Data, "opcode": e.Opcode}
	if e.Encoding != "" {
		args["encoding"] = e.Encoding
	}
	var ok bool
	if err := c.Call("Sender.Push", args, &ok); err != nil {
		a.problem("Sender.Push to fd %d (opcode %d, %d bytes): %v", e.FD, e.Opcode, len(e.Data), err)
	}
}

// opened waits for the open event of the connection opened with query.
func (a *echoApp) opened(query string) error {
	timeout := time.NewTimer(caseTimeout)
	defer timeout.Stop()
	for {
		a.mu.Lock()
		_, opened := a.fds[query]
		changed := a.changed
		a.mu.Unlock()
		if opened {
			return nil
		}
		select {
		case <-changed:
		case <-timeout.C:
			return fmt.Errorf("no open event within %s", caseTimeout)
		}
	}
}

// closed waits for the close event of the connection opened with query and
// returns it with the message events before it.
func (a *echoApp) closed(query string) (echoEvent, []msg, error) {
	timeout := time.NewTimer(caseTimeout)
	defer timeout.Stop()
	for {
		a.mu.Lock()
		fd, opened := a.fds[query]
		evs, changed := a.events[fd], a.changed
		a.mu.Unlock()
		if opened {
			var msgs []msg
			for _, e := range evs {
				switch e.Type {
				case "message":
					m := msg{op: byte(e.Opcode), data: []byte(e.Data)}
					if e.Encoding == "base64" {
						b, err := base64.StdEncoding.DecodeString(e.Data)
						if err != nil {
							return e, nil, fmt.Errorf("message event %d: %w", e.Seq, err)
						}
						m.data = b
					}
					msgs = append(msgs, m)
				case "close":
					return e, msgs, nil
				}
			}
		}
		select {
		case <-changed:
		case <-timeout.C:
			return echoEvent{}, nil, fmt.Errorf("no close event within %s (open event seen: %t, %d events)", caseTimeout, opened, len(evs))
		}
	}
}

// msg is a data message: its opcode and payload.
type msg struct {
	op   byte
	data []byte
}

func txt(s string) msg       { return msg{op: opText, data: []byte(s)} }
func bin(b []byte) msg       { return msg{op: opBinary, data: b} }
func (m msg) frame() wsFrame { return frame(m.op, m.data) }

func (m msg) String() string {
	kind := "text"
	if m.op == opBinary {
		kind = "binary"
	}
	if len(m.data) > 40 {
		return fmt.Sprintf("%s %q…(%d bytes)", kind, m.data[:40], len(m.data))
	}
	return fmt.Sprintf("%s %q", kind, m.data)
}

// A conformance case: steps on a fresh connection, then an end step that
// reads the close handshake and checks the close event.
type conformCase struct {
	id      string
	bridge  string // "" (main bridge, compression on) or "frag"
	offer   string // Sec-WebSocket-Extensions of the handshake
	deflate string // with an offer: "accept", "decline" or "" (either, per RFC 7692)
	steps   []step
	end     step
	events  []msg // the message events the application receives, in order
	mayEcho bool  // echoes of events may come before a failing close (issue 8: acceptable)
	large   bool  // sends a large message that the application does not get
}

// heavy: the case moves 64 KiB or more.
func (cc conformCase) heavy() bool {
	n := 0
	for _, m := range cc.events {
		n += len(m.data)
	}
	return cc.large || n >= 64<<10
}

type step func(r *caseRun)

// caseRun is one case on its connection.
type caseRun struct {
	cc        conformCase
	br        *conformBridge
	c         *rawConn
	query     string
	sentClose bool
	echoes    int // echoes seen before a failing close
	took      time.Duration
	errs      []string
	trace     []string
}

func (r *caseRun) errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// fatalf records an error and ends the case (its goroutine).
func (r *caseRun) fatalf(format string, args ...any) {
	r.errorf(format, args...)
	runtime.Goexit()
}

func (r *caseRun) tracef(format string, args ...any) {
	if len(r.trace) < 200 {
		r.trace = append(r.trace, fmt.Sprintf(format, args...))
	}
}

func (r *caseRun) run() {
	r.query = "case=" + url.QueryEscape(r.cc.id)
	c, err := rawDial(r.br.addr, "/?"+r.query, r.cc.offer, caseTimeout)
	if err != nil {
		r.fatalf("dial: %v", err)
	}
	r.c = c
	resp := parseExtensions(c.resp.Header.Values("Sec-WebSocket-Extensions"))
	r.tracef("handshake: offered %q, answered %q", r.cc.offer, c.resp.Header.Values("Sec-WebSocket-Extensions"))
	d, err := acceptDeflate(parseExtensions([]string{r.cc.offer}), resp)
	switch {
	case len(resp) > 0 && r.cc.deflate == "decline":
		r.fatalf("offer %q: the server accepted %q, want it declined (no permessage-deflate in the response)", r.cc.offer, c.resp.Header.Values("Sec-WebSocket-Extensions"))
	case err != nil:
		r.fatalf("extension negotiation: offered %q: %v", r.cc.offer, err)
	case d == nil && r.cc.deflate == "accept":
		r.fatalf("offer %q: the server declined, want it accepted", r.cc.offer)
	}
	c.deflate = d
	// The application hears of the connection before the case begins: a
	// connection that ends before its open event is delivered is withdrawn
	// (the application never hears of it, docs/PROTOCOL.md), and the case
	// checks the close event.
	if err := r.br.app.opened(r.query); err != nil {
		r.fatalf("application: %v", err)
	}
	for _, s := range r.cc.steps {
		s(r)
	}
	r.cc.end(r)
	_, got, err := r.br.app.closed(r.query)
	if err != nil {
		r.fatalf("application: %v", err)
	}
	if !slices.EqualFunc(got, r.cc.events, func(a, b msg) bool { return a.op == b.op && bytes.Equal(a.data, b.data) }) {
		r.errorf("application got message events %v, want %v", got, r.cc.events)
	}
}

// next returns the server's next control frame or message; it answers the
// bridge's keepalive pings and skips them.
func (r *caseRun) next() (*wsFrame, *wsMessage, error) {
	for {
		f, m, err := r.c.readItem(caseTimeout)
		switch {
		case err != nil:
			r.tracef("read: %v", err)
		case m != nil:
			r.tracef("got message op %d, %d bytes in %d frames, compressed %t", m.op, len(m.data), len(m.frames), m.compressed)
		default:
			r.tracef("got %v", *f)
		}
		if err == nil && f != nil && f.op == opPing {
			// The client never expects a ping: this is the bridge's
			// keepalive. Answer it as a client must.
			_ = r.c.write(frame(opPong, f.payload).encode(), 0, caseTimeout)
			continue
		}
		return f, m, err
	}
}

// sendFrames writes frames: chop 0 in one write, chopFrames one write per
// frame, chop > 0 in writes of that many bytes (Autobahn's "chops").
func sendFrames(chop int, frames ...wsFrame) step {
	return func(r *caseRun) {
		var all []byte
		for _, f := range frames {
			r.tracef("send %v", f)
			if f.op == opClose {
				r.sentClose = true
			}
			b := f.encode()
			if chop == chopFrames {
				r.write(b, 0)
				continue
			}
			all = append(all, b...)
		}
		if chop != chopFrames {
			r.write(all, chop)
		}
	}
}

const chopFrames = -1

func send(frames ...wsFrame) step { return sendFrames(0, frames...) }

// write errors are not failures: the server may have failed the
// connection already; what it sent says whether it was right.
func (r *caseRun) write(b []byte, chop int) {
	if err := r.c.write(b, chop, caseTimeout); err != nil {
		r.tracef("write: %v", err)
	}
}

// sendPartial writes the first n bytes of f on the wire (a frame the
// client never finishes).
func sendPartial(f wsFrame, n int) step {
	return func(r *caseRun) {
		b := f.encode()
		hdr := len(b) - len(f.payload)
		r.tracef("send the header and %d of %d payload bytes of %v", n, len(f.payload), f)
		r.write(b[:hdr+n], 0)
	}
}

// expectEcho: the next thing from the server is the message m.
func expectEcho(m msg) step {
	return func(r *caseRun) {
		f, got, err := r.next()
		switch {
		case err != nil:
			r.fatalf("want the echo %v: %v", m, err)
		case f != nil:
			r.fatalf("want the echo %v, got frame %v", m, *f)
		case got.op != m.op || !bytes.Equal(got.data, m.data):
			r.fatalf("want the echo %v, got %v%s", m, msg{got.op, got.data}, firstDiff(m.data, got.data))
		}
	}
}

func firstDiff(want, got []byte) string {
	if len(want) != len(got) {
		return fmt.Sprintf(" (length %d, want %d)", len(got), len(want))
	}
	for i := range want {
		if want[i] != got[i] {
			return fmt.Sprintf(" (first difference at byte %d)", i)
		}
	}
	return ""
}

// expectPong: the next thing from the server is a pong with payload.
func expectPong(payload []byte) step {
	return func(r *caseRun) {
		f, m, err := r.next()
		switch {
		case err != nil:
			r.fatalf("want pong %q: %v", payload, err)
		case m != nil:
			r.fatalf("want pong %q, got message %v", payload, msg{m.op, m.data})
		case f.op != opPong || !bytes.Equal(f.payload, payload):
			r.fatalf("want pong %q, got %v", payload, *f)
		}
	}
}

// expectAlive: the connection is open and nothing is pending from the
// server (a ping's pong comes next).
func expectAlive(tag string) step {
	p := []byte("alive " + tag)
	return func(r *caseRun) {
		send(frame(opPing, p))(r)
		expectPong(p)(r)
	}
}

// awaitClose reads the server's close frame and returns its code (1005 for
// an empty payload): one of codes. Messages before it are errors unless
// mayEcho (then they must be echoes of the case's events). It answers the
// close (unless the client sent one) and requires the server to close the
// TCP connection afterwards.
func (r *caseRun) awaitClose(codes ...int) int {
	var f *wsFrame
	for {
		cf, m, err := r.next()
		if err == errServerClosed {
			r.fatalf("the server closed the connection without a close frame, want close %v", codes)
		}
		if err != nil {
			r.fatalf("want close %v: %v", codes, err)
		}
		if m != nil {
			if r.cc.mayEcho && r.echoes < len(r.cc.events) {
				if w := r.cc.events[r.echoes]; w.op == m.op && bytes.Equal(w.data, m.data) {
					r.echoes++
					continue
				}
			}
			r.fatalf("want close %v, got message %v", codes, msg{m.op, m.data})
		}
		if cf.op == opClose {
			f = cf
			break
		}
		r.fatalf("want close %v, got %v", codes, *cf)
	}
	code, reason := 1005, ""
	switch {
	case len(f.payload) == 1:
		r.fatalf("the server's close frame has a 1-byte payload %q", f.payload)
	case len(f.payload) >= 2:
		code, reason = int(be.BigEndian.Uint16(f.payload)), string(f.payload[2:])
		if !utf8.ValidString(reason) {
			r.errorf("the server's close reason %q is not UTF-8", reason)
		}
	}
	if !slices.Contains(codes, code) {
		r.errorf("close code %d (reason %q), want %v", code, reason, codes)
	}
	if !r.sentClose {
		reply := closeFrame(code, "")
		if code == 1005 {
			reply = closeFrame(-1, "")
		}
		send(reply)(r)
	}
	cf, m, err := r.next()
	switch {
	case err == errServerClosed:
	case err != nil:
		r.errorf("after the close handshake: %v, want the server to close the TCP connection", err)
	case m != nil:
		r.errorf("message after the close frame: %v", msg{m.op, m.data})
	default:
		r.errorf("frame after the close frame: %v", *cf)
	}
	return code
}

// closeEvent checks the application's close event.
func (r *caseRun) closeEvent(code int, by, reason string) {
	ev, _, err := r.br.app.closed(r.query)
	if err != nil {
		r.fatalf("application: %v", err)
	}
	if ev.Code != code || ev.By != by || (reason != "" && ev.Reason != reason) {
		want := fmt.Sprintf("code %d by %s", code, by)
		if reason != "" {
			want += fmt.Sprintf(" reason %q", reason)
		}
		r.errorf("close event: code %d by %s reason %q, want %s", ev.Code, ev.By, ev.Reason, want)
	}
}

// closeNormal: the client closes with 1000; the server answers 1000.
func closeNormal() step {
	return func(r *caseRun) {
		send(closeFrame(1000, ""))(r)
		r.awaitClose(1000)
		r.closeEvent(1000, "client", "")
	}
}

// clientClosed: the client's close frame (code, reason; 1005 for none) is
// already sent; the server answers with one of replies.
func clientClosed(code int, reason string, replies ...int) step {
	return func(r *caseRun) {
		r.awaitClose(replies...)
		r.closeEvent(code, "client", reason)
	}
}

// failWith: the server fails the connection with one of codes, and the
// application's close event reports that code, by the server.
func failWith(codes ...int) step {
	return func(r *caseRun) {
		code := r.awaitClose(codes...)
		if !slices.Contains(codes, code) {
			code = codes[0] // reported already; the event must say what should have been sent
		}
		r.closeEvent(code, "server", "")
	}
}

// echoCase: frames sent as chop says come back as want; then a normal close.
func echoCase(id string, chop int, frames []wsFrame, want ...msg) conformCase {
	steps := []step{sendFrames(chop, frames...)}
	for _, m := range want {
		steps = append(steps, expectEcho(m))
	}
	return conformCase{id: id, steps: steps, end: closeNormal(), events: want}
}

// failCase: frames sent as chop says fail the connection with code; the
// messages completed before the failure reach the application (their
// echoes may come before the close or not: issue 8 accepts both).
func failCase(id string, chop int, frames []wsFrame, code int, before ...msg) conformCase {
	return conformCase{id: id, steps: []step{sendFrames(chop, frames...)}, end: failWith(code), events: before, mayEcho: true}
}

func repeat(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

func conformanceCases() []conformCase {
	var cs []conformCase
	cs = append(cs, framingCases()...)
	cs = append(cs, pingCases()...)
	cs = append(cs, reservedCases()...)
	cs = append(cs, fragmentationCases()...)
	cs = append(cs, utf8Cases()...)
	cs = append(cs, closeCases()...)
	cs = append(cs, limitCases()...)
	cs = append(cs, autoFragmentCases()...)
	cs = append(cs, deflateCases()...)
	return cs
}

// Category 1: framing, payload lengths 0..65536 in the 7-, 16- and 64-bit
// length encodings.
func framingCases() []conformCase {
	var cs []conformCase
	lengths := []int{0, 125, 126, 127, 128, 65535, 65536}
	for i, n := range lengths {
		t := txt(strings.Repeat("*", n))
		b := bin(repeat(0xfe, n))
		cs = append(cs,
			echoCase(fmt.Sprintf("1.1.%d", i+1), 0, []wsFrame{t.frame()}, t), // 1.1.1–1.1.7
			echoCase(fmt.Sprintf("1.2.%d", i+1), 0, []wsFrame{b.frame()}, b), // 1.2.1–1.2.7
		)
	}
	t, b := txt(strings.Repeat("*", 65536)), bin(repeat(0xfe, 65536))
	cs = append(cs,
		echoCase("1.1.8", 997, []wsFrame{t.frame()}, t), // 65536 bytes in chops of 997
		echoCase("1.2.8", 997, []wsFrame{b.frame()}, b),
	)
	return cs
}

// Category 2: pings and pongs.
func pingCases() []conformCase {
	ping := func(p []byte) wsFrame { return frame(opPing, p) }
	hello := []byte("Hello, world!")
	binp := []byte{0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff}
	p125 := repeat(0xfe, 125)
	unsolicited := []byte("unsolicited pong payload")
	cs := []conformCase{
		{id: "2.1", steps: []step{send(ping(nil)), expectPong(nil)}, end: closeNormal()},
		{id: "2.2", steps: []step{send(ping(hello)), expectPong(hello)}, end: closeNormal()},
		{id: "2.3", steps: []step{send(ping(binp)), expectPong(binp)}, end: closeNormal()},
		{id: "2.4", steps: []step{send(ping(p125)), expectPong(p125)}, end: closeNormal()},
		// 2.5: a control frame longer than 125 bytes.
		failCase("2.5", 0, []wsFrame{ping(repeat(0xfe, 126))}, 1002),
		{id: "2.6", steps: []step{sendFrames(1, ping(p125)), expectPong(p125)}, end: closeNormal()},
		// 2.7–2.9: an unsolicited pong is ignored.
		{id: "2.7", steps: []step{send(frame(opPong, nil)), expectAlive("2.7")}, end: closeNormal()},
		{id: "2.8", steps: []step{send(frame(opPong, unsolicited)), expectAlive("2.8")}, end: closeNormal()},
		{id: "2.9", steps: []step{send(frame(opPong, unsolicited), ping([]byte("ping payload"))), expectPong([]byte("ping payload"))}, end: closeNormal()},
	}
	for _, c := range []struct {
		id   string
		chop int
	}{{"2.10", 0}, {"2.11", 1}} { // 10 pings; 2.11 in 1-byte chops
		var frames []wsFrame
		var steps []step
		for i := range 10 {
			p := []byte(fmt.Sprintf("payload-%d", i))
			frames = append(frames, ping(p))
			steps = append(steps, expectPong(p))
		}
		cs = append(cs, conformCase{id: c.id, steps: append([]step{sendFrames(c.chop, frames...)}, steps...), end: closeNormal()})
	}
	return cs
}

// Categories 3 and 4: reserved bits and reserved opcodes fail the
// connection with 1002; a valid message before them still reaches the
// application (issue 8: its echo may not arrive before the close).
func reservedCases() []conformCase {
	hello := txt("Hello, world!")
	withRSV := func(f wsFrame, rsv byte) wsFrame { f.rsv = rsv; return f }
	ping := frame(opPing, []byte("ping payload"))
	cs := []conformCase{
		failCase("3.1", 0, []wsFrame{withRSV(hello.frame(), 1)}, 1002),
		failCase("3.2", 0, []wsFrame{hello.frame(), withRSV(hello.frame(), 2), ping}, 1002, hello),
		failCase("3.3", chopFrames, []wsFrame{hello.frame(), withRSV(hello.frame(), 3), ping}, 1002, hello),
		failCase("3.4", 1, []wsFrame{hello.frame(), withRSV(hello.frame(), 4), ping}, 1002, hello),
		failCase("3.5", 0, []wsFrame{withRSV(frame(opBinary, repeat(0xff, 8)), 5)}, 1002),
		failCase("3.6", 0, []wsFrame{withRSV(frame(opPing, []byte("Hello, world!")), 6)}, 1002),
		failCase("3.7", 0, []wsFrame{withRSV(closeFrame(1000, ""), 7)}, 1002),
		// Not in Autobahn: a client frame without a mask (RFC 6455 5.1).
		failCase("rfc6455-5.1 unmasked client frame", 0, []wsFrame{{fin: true, op: opText, payload: []byte("Hello"), unmasked: true}}, 1002),
	}
	payload := []byte("reserved opcode payload")
	for i, op := range []byte{3, 4, 5, 6, 7} { // 4.1.1–4.1.5
		cs = append(cs, reservedOpcode(fmt.Sprintf("4.1.%d", i+1), op, i, payload, hello, ping))
	}
	for i, op := range []byte{11, 12, 13, 14, 15} { // 4.2.1–4.2.5
		cs = append(cs, reservedOpcode(fmt.Sprintf("4.2.%d", i+1), op, i, payload, hello, ping))
	}
	return cs
}

// reservedOpcode: x.1 alone, x.2 with a payload, x.3–x.5 after a valid
// message and before a ping (x.3 without a payload).
func reservedOpcode(id string, op byte, i int, payload []byte, hello msg, ping wsFrame) conformCase {
	bad := frame(op, nil)
	if i == 1 || i >= 3 {
		bad.payload = payload
	}
	if i < 2 {
		return failCase(id, 0, []wsFrame{bad}, 1002)
	}
	return failCase(id, 0, []wsFrame{hello.frame(), bad, ping}, 1002, hello)
}

// Category 5: fragmentation.
func fragmentationCases() []conformCase {
	f1, f2 := []byte("fragment1"), []byte("fragment2")
	joined := txt("fragment1fragment2")
	ping := frame(opPing, []byte("ping payload"))
	twoFrags := []wsFrame{fragment(opText, false, f1), fragment(opCont, true, f2)}
	withPing := []wsFrame{fragment(opText, false, f1), ping, fragment(opCont, true, f2)}
	cs := []conformCase{
		// 5.1, 5.2: control frames must not be fragmented.
		failCase("5.1", 0, []wsFrame{fragment(opPing, false, f1), fragment(opCont, true, f2)}, 1002),
		failCase("5.2", 0, []wsFrame{fragment(opPong, false, f1), fragment(opCont, true, f2)}, 1002),
		echoCase("5.3", 0, twoFrags, joined),
		echoCase("5.4", chopFrames, twoFrags, joined),
		echoCase("5.5", 1, twoFrags, joined),
	}
	// 5.6–5.8: a ping between fragments is answered before the message.
	for _, c := range []struct {
		id   string
		chop int
	}{{"5.6", 0}, {"5.7", chopFrames}, {"5.8", 1}} {
		cs = append(cs, conformCase{id: c.id, steps: []step{sendFrames(c.chop, withPing...), expectPong(ping.payload), expectEcho(joined)}, end: closeNormal(), events: []msg{joined}})
	}
	// 5.9–5.14: a continuation frame with no message started.
	hello := txt("Hello, world!")
	for i, c := range []struct {
		fin  bool
		chop int
	}{{true, 0}, {true, chopFrames}, {true, 1}, {false, 0}, {false, chopFrames}, {false, 1}} {
		cs = append(cs, failCase(fmt.Sprintf("5.%d", 9+i), c.chop, []wsFrame{fragment(opCont, c.fin, []byte("non-continuation payload")), hello.frame()}, 1002))
	}
	f3, f4 := []byte("fragment3"), []byte("fragment4")
	cs = append(cs,
		// 5.15: a finished message, then a continuation with none started.
		failCase("5.15", 0, []wsFrame{fragment(opText, false, f1), fragment(opCont, true, f2), fragment(opCont, false, f3), fragment(opText, true, f4)}, 1002, joined),
		// 5.16, 5.17: continuation first, then a message, twice.
		failCase("5.16", 0, []wsFrame{fragment(opCont, false, f1), fragment(opText, false, f2), fragment(opCont, true, f3), fragment(opCont, false, f1), fragment(opText, false, f2), fragment(opCont, true, f3)}, 1002),
		failCase("5.17", 0, []wsFrame{fragment(opCont, true, f1), fragment(opText, false, f2), fragment(opCont, true, f3), fragment(opCont, true, f1), fragment(opText, false, f2), fragment(opCont, true, f3)}, 1002),
		// 5.18: a new data frame while a fragmented message is open.
		failCase("5.18", 0, []wsFrame{fragment(opText, false, f1), fragment(opText, true, f2)}, 1002),
	)
	// 5.19, 5.20: five fragments with pings in between; each pong arrives
	// while the message is still open (5.20: every frame in 1-byte chops).
	for _, c := range []struct {
		id   string
		chop int
	}{{"5.19", 0}, {"5.20", 1}} {
		p1, p2 := frame(opPing, []byte("pongme 1!")), frame(opPing, []byte("pongme 2!"))
		frags := [][]byte{[]byte("fragment1"), []byte("fragment2"), []byte("fragment3"), []byte("fragment4"), []byte("fragment5")}
		want := txt("fragment1fragment2fragment3fragment4fragment5")
		cs = append(cs, conformCase{id: c.id, steps: []step{
			sendFrames(c.chop, fragment(opText, false, frags[0]), fragment(opCont, false, frags[1]), p1),
			expectPong(p1.payload),
			sendFrames(c.chop, fragment(opCont, false, frags[2]), fragment(opCont, false, frags[3]), p2),
			expectPong(p2.payload),
			sendFrames(c.chop, fragment(opCont, true, frags[4])),
			expectEcho(want),
		}, end: closeNormal(), events: []msg{want}})
	}
	return cs
}

// kosme is "κόσμε", Autobahn's UTF-8 sample.
const kosme = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"

// Category 6: UTF-8 handling.
func utf8Cases() []conformCase {
	mid := []byte("middle frame payload")
	cs := []conformCase{
		echoCase("6.1.1", 0, []wsFrame{frame(opText, nil)}, txt("")),
		echoCase("6.1.2", 0, []wsFrame{fragment(opText, false, nil), fragment(opCont, false, nil), fragment(opCont, true, nil)}, txt("")),
		echoCase("6.1.3", 0, []wsFrame{fragment(opText, false, nil), fragment(opCont, false, mid), fragment(opCont, true, nil)}, txt(string(mid))),
	}
	hello := []byte("Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!")
	cs = append(cs,
		echoCase("6.2.1", 0, []wsFrame{frame(opText, hello)}, txt(string(hello))),
		// 6.2.2: two fragments split on a code point boundary.
		echoCase("6.2.2", 0, []wsFrame{fragment(opText, false, hello[:6]), fragment(opCont, true, hello[6:])}, txt(string(hello))),
		echoCase("6.2.3", 0, byteFragments(hello, true), txt(string(hello))),
		echoCase("6.2.4", 0, byteFragments([]byte(kosme), true), txt(kosme)),
	)
	invalid := []byte(kosme + "\xed\xa0\x80edited")
	cs = append(cs,
		failCase("6.3.1", 0, []wsFrame{frame(opText, invalid)}, 1007),
		// 6.3.2: in 1-byte fragments; the connection fails at the first
		// byte that no continuation can make valid (\xa0 after \xed).
		failFast("6.3.2", invalid),
	)
	// 6.4.x: fail fast. The message is never finished: the bridge must
	// close 1007 on the invalid bytes, before the rest arrives.
	p1, p2 := kosme, "\xf4\x90\x80\x80" // a code point above U+10FFFF
	cs = append(cs,
		conformCase{id: "6.4.1", steps: []step{send(fragment(opText, false, []byte(p1)), fragment(opCont, false, []byte(p2)))}, end: failWith(1007)},
		conformCase{id: "6.4.2", steps: []step{send(fragment(opText, false, []byte(p1+"\xf4")), fragment(opCont, false, []byte("\x90")))}, end: failWith(1007)},
		// 6.4.3, 6.4.4: one frame, of which only the part up to the
		// invalid bytes is sent.
		conformCase{id: "6.4.3", steps: []step{sendPartial(frame(opText, []byte(p1+p2+"edited")), len(p1)+len(p2))}, end: failWith(1007)},
		conformCase{id: "6.4.4", steps: []step{sendPartial(frame(opText, []byte(p1+p2+"edited")), len(p1)+2)}, end: failWith(1007)},
	)
	// 6.5–6.23: Markus Kuhn's UTF-8 decoder tests, each as one frame (as
	// Autobahn sends them) and in 1-byte fragments ("-frag").
	for _, s := range autobahnUTF8() {
		if s.valid {
			cs = append(cs,
				echoCase(s.id, 0, []wsFrame{frame(opText, s.data)}, txt(string(s.data))),
				echoCase(s.id+"-frag", 0, byteFragments(s.data, true), txt(string(s.data))),
			)
			continue
		}
		cs = append(cs,
			failCase(s.id, 0, []wsFrame{frame(opText, s.data)}, 1007),
			failFast(s.id+"-frag", s.data),
		)
	}
	return cs
}

// byteFragments splits data into 1-byte fragments of a text message; the
// last has FIN set when fin.
func byteFragments(data []byte, fin bool) []wsFrame {
	var fs []wsFrame
	for i := range data {
		op := opCont
		if i == 0 {
			op = opText
		}
		fs = append(fs, fragment(op, fin && i == len(data)-1, data[i:i+1]))
	}
	return fs
}

// failFast sends invalid UTF-8 text in 1-byte fragments up to the first
// byte no continuation can make valid, and leaves the message open: the
// bridge must close 1007 without waiting for the end. Text whose only
// fault is an unfinished character at its end is sent whole.
func failFast(id string, data []byte) conformCase {
	n := len(data)
	fin := true
	for i := 1; i <= len(data); i++ {
		if !utf8Viable(data[:i]) {
			n, fin = i, false
			break
		}
	}
	frames := byteFragments(data[:n], fin)
	if n == 0 {
		frames = []wsFrame{frame(opText, nil)}
	}
	return conformCase{id: id, steps: []step{send(frames...)}, end: failWith(1007)}
}

// utf8Viable: p is valid UTF-8, or valid UTF-8 followed by the beginning of
// a character that more bytes can complete.
func utf8Viable(p []byte) bool {
	for len(p) > 0 {
		if !utf8.FullRune(p) {
			return true
		}
		r, size := utf8.DecodeRune(p)
		if r == utf8.RuneError && size == 1 {
			return false
		}
		p = p[size:]
	}
	return true
}

type utf8Sample struct {
	id    string
	valid bool
	data  []byte
}

// autobahnUTF8 is the list of Autobahn's case6_x_x.py: cases 6.5.x to
// 6.23.x, numbered as there.
func autobahnUTF8() []utf8Sample {
	var groups [][]utf8Sample
	add := func(vs ...any) {
		var g []utf8Sample
		for i := 0; i < len(vs); i += 2 {
			g = append(g, utf8Sample{valid: vs[i].(bool), data: []byte(vs[i+1].(string))})
		}
		groups = append(groups, g)
	}
	// 6.5: some valid UTF-8.
	add(true, "hello\x24world", true, "hello\xc2\xa2world", true, "hello\xe2\x82\xacworld", true, "hello\xf0\xa4\xad\xa2world", true, kosme)
	// 6.6: every prefix of κόσμε.
	var prefixes []any
	for i := 1; i <= len(kosme); i++ {
		prefixes = append(prefixes, utf8.ValidString(kosme[:i]), kosme[:i])
	}
	add(prefixes...)
	// 6.7, 6.8: first possible sequence of each length; 5 and 6 bytes.
	add(true, "\x00", true, "\xc2\x80", true, "\xe0\xa0\x80", true, "\xf0\x90\x80\x80")
	add(false, "\xf8\x88\x80\x80\x80", false, "\xfc\x84\x80\x80\x80\x80")
	// 6.9, 6.10: last possible sequence of each length; beyond U+10FFFF.
	add(true, "\x7f", true, "\xdf\xbf", true, "\xef\xbf\xbf", true, "\xf4\x8f\xbf\xbf")
	add(false, "\xf7\xbf\xbf\xbf", false, "\xfb\xbf\xbf\xbf\xbf", false, "\xfd\xbf\xbf\xbf\xbf\xbf")
	// 6.11: other boundary conditions.
	add(true, "\xed\x9f\xbf", true, "\xee\x80\x80", true, "\xef\xbf\xbd", true, "\xf4\x8f\xbf\xbf", false, "\xf4\x90\x80\x80")
	// 6.12: unexpected continuation bytes.
	var cont strings.Builder
	for b := 0x80; b < 0xbf; b++ {
		cont.WriteByte(byte(b))
	}
	add(false, "\x80", false, "\xbf", false, "\x80\xbf", false, "\x80\xbf\x80", false, "\x80\xbf\x80\xbf", false, "\x80\xbf\x80\xbf\x80", false, "\x80\xbf\x80\xbf\x80\xbf", false, cont.String())
	// 6.13: lonely start characters, each followed by a space.
	var lonely []any
	for _, rg := range [][2]int{{0xc0, 0xdf}, {0xe0, 0xef}, {0xf0, 0xf7}, {0xf8, 0xfb}, {0xfc, 0xfd}} {
		var s strings.Builder
		for b := rg[0]; b < rg[1]; b++ {
			s.WriteByte(byte(b))
			s.WriteByte(' ')
		}
		lonely = append(lonely, false, s.String())
	}
	add(lonely...)
	// 6.14, 6.15: sequences with the last continuation byte missing, alone
	// and concatenated.
	missing := []string{"\xc0", "\xe0\x80", "\xf0\x80\x80", "\xf8\x80\x80\x80", "\xfc\x80\x80\x80\x80", "\xdf", "\xef\xbf", "\xf7\xbf\xbf", "\xfb\xbf\xbf\xbf", "\xfd\xbf\xbf\xbf\xbf"}
	var miss []any
	for _, m := range missing {
		miss = append(miss, false, m)
	}
	add(miss...)
	add(false, strings.Join(missing, ""))
	// 6.16: impossible bytes.
	add(false, "\xfe", false, "\xff", false, "\xfe\xfe\xff\xff")
	// 6.17–6.19: overlong forms.
	add(false, "\xc0\xaf", false, "\xe0\x80\xaf", false, "\xf0\x80\x80\xaf", false, "\xf8\x80\x80\x80\xaf", false, "\xfc\x80\x80\x80\x80\xaf")
	add(false, "\xc1\xbf", false, "\xe0\x9f\xbf", false, "\xf0\x8f\xbf\xbf", false, "\xf8\x87\xbf\xbf\xbf", false, "\xfc\x83\xbf\xbf\xbf\xbf")
	add(false, "\xc0\x80", false, "\xe0\x80\x80", false, "\xf0\x80\x80\x80", false, "\xf8\x80\x80\x80\x80", false, "\xfc\x80\x80\x80\x80\x80")
	// 6.20, 6.21: UTF-16 surrogates, single and paired.
	add(false, "\xed\xa0\x80", false, "\xed\xad\xbf", false, "\xed\xae\x80", false, "\xed\xaf\xbf", false, "\xed\xb0\x80", false, "\xed\xbe\x80", false, "\xed\xbf\xbf")
	add(false, "\xed\xa0\x80\xed\xb0\x80", false, "\xed\xa0\x80\xed\xbf\xbf", false, "\xed\xad\xbf\xed\xb0\x80", false, "\xed\xad\xbf\xed\xbf\xbf",
		false, "\xed\xae\x80\xed\xb0\x80", false, "\xed\xae\x80\xed\xbf\xbf", false, "\xed\xaf\xbf\xed\xb0\x80", false, "\xed\xaf\xbf\xed\xbf\xbf")
	// 6.22: non-characters (valid UTF-8).
	nonchars := []any{true, "\xef\xbf\xbe", true, "\xef\xbf\xbf"}
	for _, z1 := range []byte{0xf0, 0xf1, 0xf2, 0xf3, 0xf4} {
		for _, z2 := range []byte{0x8f, 0x9f, 0xaf, 0xbf} {
			if z1 == 0xf4 && z2 != 0x8f {
				continue
			}
			for _, z3 := range []byte{0xbe, 0xbf} {
				if z1 == 0xf0 && z2 == 0x8f {
					continue // overlong
				}
				nonchars = append(nonchars, true, string([]byte{z1, z2, 0xbf, z3}))
			}
		}
	}
	add(nonchars...)
	// 6.23: Unicode specials.
	add(true, "\xef\xbf\xb9", true, "\xef\xbf\xba", true, "\xef\xbf\xbb", true, "\xef\xbf\xbc", true, "\xef\xbf\xbd", true, "\xef\xbf\xbe", true, "\xef\xbf\xbf")

	var out []utf8Sample
	for i, g := range groups {
		for j, s := range g {
			s.id = fmt.Sprintf("6.%d.%d", i+5, j+1)
			if s.valid != utf8.Valid(s.data) {
				panic(fmt.Sprintf("case %s: %q marked valid=%t", s.id, s.data, s.valid))
			}
			out = append(out, s)
		}
	}
	return out
}

// Category 7: close handling.
func closeCases() []conformCase {
	hello := txt("Hello World!")
	cs := []conformCase{
		echoCase("7.1.1", 0, []wsFrame{hello.frame()}, hello),
		// 7.1.2–7.1.5: what follows a close frame is ignored.
		{id: "7.1.2", steps: []step{send(closeFrame(1000, ""), closeFrame(1000, ""))}, end: clientClosed(1000, "", 1000)},
		{id: "7.1.3", steps: []step{send(closeFrame(1000, ""), frame(opPing, []byte("Hello World!")))}, end: clientClosed(1000, "", 1000)},
		{id: "7.1.4", steps: []step{send(closeFrame(1000, ""), hello.frame())}, end: clientClosed(1000, "", 1000)},
		{id: "7.1.5", steps: []step{send(fragment(opText, false, []byte("fragment1")), closeFrame(1000, ""), fragment(opCont, true, []byte("fragment2")))}, end: clientClosed(1000, "", 1000)},
	}
	// 7.1.6: a large message, a small one, close, ping, back to back. Their
	// echoes may or may not come before the close (Autobahn: informational);
	// both messages reach the application.
	big := txt(strings.Repeat("BAsd7&jh23", 256<<10/10))
	cs = append(cs, conformCase{id: "7.1.6", steps: []step{send(big.frame(), hello.frame(), closeFrame(1000, ""), frame(opPing, nil))},
		end: clientClosed(1000, "", 1000), events: []msg{big, hello}, mayEcho: true})
	// 7.3.x: close payload sizes.
	reason123 := strings.Repeat("*", 123)
	cs = append(cs,
		// 7.3.1: empty close: answered with an empty close or 1000; the
		// application sees 1005 (no status, RFC 6455 7.1.5).
		conformCase{id: "7.3.1", steps: []step{send(closeFrame(-1, ""))}, end: clientClosed(1005, "", 1005, 1000)},
		// 7.3.2: a 1-byte payload is invalid.
		failCase("7.3.2", 0, []wsFrame{frame(opClose, []byte("a"))}, 1002),
		conformCase{id: "7.3.3", steps: []step{send(closeFrame(1000, ""))}, end: clientClosed(1000, "", 1000)},
		conformCase{id: "7.3.4", steps: []step{send(closeFrame(1000, "Hello World!"))}, end: clientClosed(1000, "Hello World!", 1000)},
		conformCase{id: "7.3.5", steps: []step{send(closeFrame(1000, reason123))}, end: clientClosed(1000, reason123, 1000)},
		// 7.3.6: 2+124 bytes: a control frame over 125 bytes.
		failCase("7.3.6", 0, []wsFrame{closeFrame(1000, reason123+"*")}, 1002),
		// 7.5.1: a reason that is not UTF-8: 1002 or 1007 (Autobahn
		// accepts either), reported as sent.
		conformCase{id: "7.5.1", steps: []step{send(closeFrame(1000, kosme+"\xed\xa0\x80edited"))}, end: failWith(1002, 1007)},
	)
	// 7.7.1–7.7.13: valid codes: answered with the same code or 1000.
	for i, code := range []int{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999} {
		cs = append(cs, conformCase{id: fmt.Sprintf("7.7.%d", i+1), steps: []step{send(closeFrame(code, ""))}, end: clientClosed(code, "", code, 1000)})
	}
	// 7.9.1–7.9.9: invalid codes fail the connection with 1002.
	for i, code := range []int{0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999} {
		cs = append(cs, failCase(fmt.Sprintf("7.9.%d", i+1), 0, []wsFrame{closeFrame(code, "")}, 1002))
	}
	// 7.13.1, 7.13.2: codes above 4999 (Autobahn: informational; RFC 6455
	// 7.4 defines none, so they are invalid here too).
	cs = append(cs,
		failCase("7.13.1", 0, []wsFrame{closeFrame(5000, "")}, 1002),
		failCase("7.13.2", 0, []wsFrame{closeFrame(65535, "")}, 1002),
	)
	return cs
}

// Category 9: limits and many messages, scaled to the configured limit
// (conformLimit instead of Autobahn's 16 MiB) and to fewer messages.
func limitCases() []conformCase {
	text := func(n int) msg { return txt(strings.Repeat("BAsd7&jh23", n/10+1)[:n]) }
	binMsg := func(n int) msg { return bin(repeat(0xfe, n)) }
	var cs []conformCase
	for i, n := range []int{64 << 10, 256 << 10, conformLimit} { // 9.1.1–9.1.3, 9.2.1–9.2.3
		cs = append(cs,
			echoCase(fmt.Sprintf("9.1.%d", i+1), 0, []wsFrame{text(n).frame()}, text(n)),
			echoCase(fmt.Sprintf("9.2.%d", i+1), 0, []wsFrame{binMsg(n).frame()}, binMsg(n)),
		)
	}
	// 9.1.4, 9.2.4 (scaled): one byte over the limit closes 1009 and
	// nothing reaches the application.
	over := []conformCase{
		failCase("9.1.4", 0, []wsFrame{text(conformLimit + 1).frame()}, 1009),
		failCase("9.2.4", 0, []wsFrame{binMsg(conformLimit + 1).frame()}, 1009),
	}
	for _, c := range over {
		c.large = true
		cs = append(cs, c)
	}
	// 9.3.x, 9.4.x: a 64 KiB message (Autobahn: 4 MiB) in fragments of
	// 64 B … 64 KiB (Autobahn: … 4 MiB).
	const fragMsg = 64 << 10
	for i, size := range []int{64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10} {
		for _, m := range []struct {
			cat string
			m   msg
		}{{"9.3", text(fragMsg)}, {"9.4", binMsg(fragMsg)}} {
			var frames []wsFrame
			for off := 0; off < len(m.m.data); off += size {
				op := opCont
				if off == 0 {
					op = m.m.op
				}
				frames = append(frames, fragment(op, off+size >= len(m.m.data), m.m.data[off:min(off+size, len(m.m.data))]))
			}
			cs = append(cs, echoCase(fmt.Sprintf("%s.%d", m.cat, i+1), 0, frames, m.m))
		}
	}
	// 9.5.x, 9.6.x: one 64 KiB frame (Autobahn: 1 MiB) written in chops
	// of 64 … 2048 bytes.
	for i, chop := range []int{64, 128, 256, 512, 1024, 2048} {
		cs = append(cs,
			echoCase(fmt.Sprintf("9.5.%d", i+1), chop, []wsFrame{text(fragMsg).frame()}, text(fragMsg)),
			echoCase(fmt.Sprintf("9.6.%d", i+1), chop, []wsFrame{binMsg(fragMsg).frame()}, binMsg(fragMsg)),
		)
	}
	// 9.7.x, 9.8.x: 50 messages (Autobahn: 1000) of 0 … 4096 bytes, each
	// sent after the previous echo.
	for i, n := range []int{0, 16, 64, 256, 1024, 4096} {
		for _, m := range []struct {
			cat string
			m   msg
		}{{"9.7", text(n)}, {"9.8", binMsg(n)}} {
			var steps []step
			var events []msg
			for range 50 {
				steps = append(steps, send(m.m.frame()), expectEcho(m.m))
				events = append(events, m.m)
			}
			cs = append(cs, conformCase{id: fmt.Sprintf("%s.%d", m.cat, i+1), steps: steps, end: closeNormal(), events: events})
		}
	}
	return cs
}

// Category 10: auto-fragmentation.
func autoFragmentCases() []conformCase {
	m := txt(strings.Repeat("*", 65536))
	var frames []wsFrame
	for off := 0; off < len(m.data); off += conformFragment {
		op := opCont
		if off == 0 {
			op = opText
		}
		frames = append(frames, fragment(op, off+conformFragment >= len(m.data), m.data[off:min(off+conformFragment, len(m.data))]))
	}
	return []conformCase{
		// 10.1.1: the client fragments a 64 KiB message into 1300-byte frames.
		echoCase("10.1.1", 0, frames, m),
		// 10.1.1 the other way: with -fragment-size 1300 the bridge sends
		// the echo in frames of at most 1300 bytes.
		{id: "10.1.1-server", bridge: "frag", steps: []step{send(m.frame()), func(r *caseRun) {
			f, got, err := r.next()
			switch {
			case err != nil:
				r.fatalf("want the echo: %v", err)
			case f != nil:
				r.fatalf("want the echo, got %v", *f)
			case got.op != opText || !bytes.Equal(got.data, m.data):
				r.fatalf("echo %v, want %v", msg{got.op, got.data}, m)
			case len(got.frames) < len(m.data)/conformFragment:
				r.errorf("echo in %d frames, want at least %d", len(got.frames), len(m.data)/conformFragment)
			}
			for i, n := range got.frames {
				if n > conformFragment {
					r.errorf("echo frame %d has %d bytes, over the fragment size %d", i, n, conformFragment)
				}
			}
		}}, end: closeNormal(), events: []msg{m}},
	}
}

// Categories 12 and 13: permessage-deflate (RFC 7692).

// autobahnOffer is Autobahn's default offer: the client accepts
// client_no_context_takeover and client_max_window_bits.
const autobahnOffer = "permessage-deflate; client_no_context_takeover; client_max_window_bits"

// deflateSizes is Autobahn's MSG_SIZES: (message size, auto-fragment size).
var deflateSizes = [][2]int{
	{16, 0}, {64, 0}, {256, 0}, {1024, 0}, {4096, 0}, {8192, 0}, {16384, 0}, {32768, 0}, {65536, 0}, {131072, 0},
	{8192, 256}, {16384, 256}, {32768, 256}, {65536, 256}, {131072, 256}, {131072, 1024}, {131072, 4096}, {131072, 32768},
}

// deflateMessages is how many messages each 12.x/13.x case echoes
// (Autobahn: 1000).
const deflateMessages = 2

type deflateData struct {
	desc string
	op   byte
	src  []byte
}

// deflateSets stand in for Autobahn's test files (not available here):
// compressible and incompressible, text and binary.
func deflateSets() []deflateData {
	rng := rand.New(rand.NewPCG(7692, 1))
	const size = 160 << 10
	var jsonText, human, html bytes.Buffer
	words := []string{"Faust", "Gretchen", "Mephisto", "über", "schön", "Straße", "κόσμε", "and", "the", "of", "night", "Walpurgis"}
	for i := 0; jsonText.Len() < size; i++ {
		fmt.Fprintf(&jsonText, `{"id":%d,"name":"user%d","score":%d.%02d,"tags":["a%d","b%d"],"active":%t},`, i, rng.IntN(5000), rng.IntN(1000), rng.IntN(100), rng.IntN(9), rng.IntN(9), rng.IntN(2) == 0)
	}
	for human.Len() < size {
		human.WriteString(words[rng.IntN(len(words))])
		if rng.IntN(12) == 0 {
			human.WriteString(".\n")
		} else {
			human.WriteByte(' ')
		}
	}
	for i := 0; html.Len() < size; i++ {
		fmt.Fprintf(&html, "<div class=\"row r%d\"><a href=\"/item/%d\">Item %d</a><span>%d</span></div>\n", i%7, rng.IntN(100000), i, rng.IntN(1000))
	}
	random := make([]byte, size)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	structured := make([]byte, 0, size)
	for len(structured) < size {
		structured = be.BigEndian.AppendUint32(structured, uint32(rng.IntN(256)))
		structured = append(structured, 0, 0, byte(len(structured)), 0xff)
	}
	return []deflateData{
		{"JSON text", opText, jsonText.Bytes()},
		{"random binary", opBinary, random},
		{"human-readable text", opText, human.Bytes()},
		{"HTML text", opText, html.Bytes()},
		{"structured binary", opBinary, structured},
	}
}

// messages cuts count messages of n bytes from d (text stays UTF-8).
func (d deflateData) messages(count, n int) []msg {
	var out []msg
	off := 0
	for range count {
		b := make([]byte, n)
		for i := range b {
			b[i] = d.src[(off+i)%len(d.src)]
		}
		off += n
		if d.op == opText {
			b = fixUTF8(b)
		}
		out = append(out, msg{op: d.op, data: b})
	}
	return out
}

// fixUTF8 replaces the bytes of characters cut at the ends with '.'.
func fixUTF8(b []byte) []byte {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			b[i] = '.'
		}
		i += size
	}
	return b
}

// sendDeflated sends m compressed when permessage-deflate was negotiated
// (else as it is), in frames of at most frag bytes (0: one frame).
func sendDeflated(m msg, frag int) step {
	return func(r *caseRun) {
		payload, rsv := m.data, byte(0)
		if r.c.deflate != nil {
			payload, rsv = r.c.deflate.deflate(m.data), rsv1
		}
		var frames []wsFrame
		for off := 0; off == 0 || off < len(payload); {
			n := len(payload) - off
			if frag > 0 && n > frag {
				n = frag
			}
			f := fragment(opCont, off+n >= len(payload), payload[off:off+n])
			if off == 0 {
				f.op, f.rsv = m.op, rsv
			}
			frames = append(frames, f)
			off += n
			if n == 0 {
				break
			}
		}
		sendFrames(0, frames...)(r)
	}
}

// deflateCase echoes msgs, sent compressed (when negotiated) in frames of
// at most frag bytes.
func deflateCase(id, offer, want string, frag int, msgs []msg) conformCase {
	var steps []step
	for _, m := range msgs {
		steps = append(steps, sendDeflated(m, frag), expectEcho(m))
	}
	return conformCase{id: id, offer: offer, deflate: want, steps: steps, end: closeNormal(), events: msgs}
}

func deflateCases() []conformCase {
	var cs []conformCase
	sets := deflateSets()
	// 12.x.y: data set x (ours), Autobahn's size row y, default offer:
	// every row for the first set, six rows (small to 128 KiB, unfragmented
	// and fragmented) for the others.
	for i, d := range sets {
		for j, s := range deflateSizes {
			if i > 0 && !slices.Contains([]int{1, 4, 7, 10, 11, 16}, j+1) {
				continue
			}
			cs = append(cs, deflateCase(fmt.Sprintf("12.%d.%d", i+1, j+1), autobahnOffer, "accept", s[1], d.messages(deflateMessages, s[0])))
		}
	}
	// 13.x.y: Autobahn's offers on JSON text, a few of its size rows. A
	// server that cannot honour server_max_window_bits below 15 (Go's
	// compress/flate always uses a 32 KiB window) must decline the offer
	// (RFC 7692 7.1.2.1): the messages then travel uncompressed.
	offers := []struct{ offer, want string }{
		{autobahnOffer, "accept"},                                                             // 13.1
		{autobahnOffer + "; server_no_context_takeover", "accept"},                            // 13.2
		{autobahnOffer + "; server_max_window_bits=8", "decline"},                             // 13.3
		{autobahnOffer + "; server_max_window_bits=15", ""},                                   // 13.4
		{autobahnOffer + "; server_no_context_takeover; server_max_window_bits=8", "decline"}, // 13.5
		{autobahnOffer + "; server_no_context_takeover; server_max_window_bits=15", ""},       // 13.6
		{autobahnOffer + "; server_no_context_takeover; server_max_window_bits=8, " + autobahnOffer + "; server_no_context_takeover, " + autobahnOffer, "accept"}, // 13.7
	}
	for i, o := range offers {
		for _, j := range []int{1, 4, 13} {
			s := deflateSizes[j-1]
			cs = append(cs, deflateCase(fmt.Sprintf("13.%d.%d", i+1, j), o.offer, o.want, s[1], sets[0].messages(deflateMessages, s[0])))
		}
	}
	// Negotiation (RFC 7692 section 7), no Autobahn number: offers the
	// bridge must decline (it cannot honour them, or they are invalid) and
	// offers it must accept. Either way two messages are echoed.
	two := sets[2].messages(2, 300)
	for _, o := range []struct{ name, offer, want string }{
		{"server_max_window_bits=9", "permessage-deflate; server_max_window_bits=9", "decline"},
		{"server_max_window_bits=99", "permessage-deflate; server_max_window_bits=99", "decline"},
		{"server_max_window_bits=7", "permessage-deflate; server_max_window_bits=7", "decline"},
		{"server_max_window_bits without value", "permessage-deflate; server_max_window_bits", "decline"},
		{"client_max_window_bits=16", "permessage-deflate; client_max_window_bits=16", "decline"},
		{"client_max_window_bits=abc", "permessage-deflate; client_max_window_bits=abc", "decline"},
		{"unknown parameter with value", "permessage-deflate; foo=1", "decline"},
		{"unknown parameter", "permessage-deflate; x-unknown", "decline"},
		{"server_no_context_takeover with value", "permessage-deflate; server_no_context_takeover=1", "decline"},
		{"duplicate parameter", "permessage-deflate; client_no_context_takeover; client_no_context_takeover", "decline"},
		{"unknown extension", "x-webkit-deflate-frame", "decline"},
		{"plain offer", "permessage-deflate", "accept"},
		{"server_no_context_takeover", "permessage-deflate; server_no_context_takeover", "accept"},
		{"client_max_window_bits=8", "permessage-deflate; client_max_window_bits=8", "accept"},
		{"server_max_window_bits=15", "permessage-deflate; server_max_window_bits=15", ""},
		{"declined offer then acceptable one", "permessage-deflate; server_max_window_bits=9, permessage-deflate", "accept"},
	} {
		cs = append(cs, deflateCase("rfc7692 "+o.name, o.offer, o.want, 0, two))
	}
	hello := txt("Hello, world!")
	compressed := func(r *caseRun) []byte { return (&pmDeflate{}).deflate(hello.data) }
	zeros := func(n int) msg { return bin(make([]byte, n)) }
	cs = append(cs,
		// A declined offer leaves RSV1 reserved: a compressed frame fails
		// the connection (Autobahn 3.x on a declined 13.3 offer).
		conformCase{id: "rfc7692 declined then RSV1", offer: "permessage-deflate; server_max_window_bits=9", deflate: "decline",
			steps: []step{func(r *caseRun) { send(wsFrame{fin: true, rsv: rsv1, op: opText, payload: compressed(r)})(r) }}, end: failWith(1002)},
		// RFC 7692 6.1: RSV1 only on the first frame of a data message.
		conformCase{id: "rfc7692-6.1 RSV1 on a continuation frame", offer: autobahnOffer, deflate: "accept",
			steps: []step{send(fragment(opText, false, []byte("Hello, ")), wsFrame{fin: true, rsv: rsv1, op: opCont, payload: []byte("world!")})}, end: failWith(1002)},
		conformCase{id: "rfc7692-6.1 RSV1 on a ping", offer: autobahnOffer, deflate: "accept",
			steps: []step{send(wsFrame{fin: true, rsv: rsv1, op: opPing, payload: []byte("ping")})}, end: failWith(1002)},
		// The message limit applies to the inflated size (issue 8, defect
		// 2): a message that inflates to the limit is echoed; one byte more
		// closes 1009 and nothing reaches the application.
		deflateCase("limit: inflates to the limit", autobahnOffer, "accept", 0, []msg{zeros(conformLimit)}),
		conformCase{id: "limit: inflates over the limit", offer: autobahnOffer, deflate: "accept", large: true,
			steps: []step{sendDeflated(zeros(conformLimit+1), 0)}, end: failWith(1009)},
		conformCase{id: "limit: inflates over the limit, fragmented", offer: autobahnOffer, deflate: "accept", large: true,
			steps: []step{sendDeflated(zeros(2*conformLimit), 256)}, end: failWith(1009)},
	)
	return cs
}
