package events

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Request kinds (X-Wsbridge-Kind).
const (
	kindEvents = "events"
	kindAuth   = "auth"
)

// Headers of every request (docs/PROTOCOL.md, "Requests").
const (
	HeaderKind      = "X-Wsbridge-Kind"
	HeaderNode      = "X-Wsbridge-Node"
	HeaderTimestamp = "X-Wsbridge-Timestamp"
	HeaderSignature = "X-Wsbridge-Signature"
	HeaderAttempt   = "X-Wsbridge-Attempt"
)

// maxAnswer bounds the response body read from the application: an auth
// answer is decoded from it; an events answer is read (to reuse the
// connection) and ignored.
const maxAnswer = 64 << 10

// newClient returns an HTTP client of its own, with at most conns
// connections to a host, each request bounded by timeout. It does not
// follow redirects (a 3xx is a failed request) and uses no proxy: the
// application is next to the bridge.
func newClient(conns int, timeout time.Duration) *http.Client {
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxConnsPerHost:        conns,
		MaxIdleConns:           conns,
		MaxIdleConnsPerHost:    conns,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    timeout,
		ResponseHeaderTimeout:  timeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: maxAnswer,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// RedactURL returns s for logs and errors: its query string (which may
// hold a token) cut to "?…", its fragment dropped, the password of its user
// info hidden; "(unparsable URL)" when it does not parse (the text could
// be anything).
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.RawQuery != "" || u.ForceQuery {
		u.RawQuery, u.ForceQuery = "…", false
	}
	u.Fragment, u.RawFragment = "", ""
	return u.Redacted()
}

// redactError returns err's text for a log line, the URL of a failed
// request redacted (RedactURL): net/http's errors quote it whole.
func redactError(err error) string {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err.Error()
	}
	safe := ue.Op + " " + strconv.Quote(RedactURL(ue.URL)) + ": " + redactError(ue.Err)
	return strings.ReplaceAll(err.Error(), ue.Error(), safe)
}

// sign returns the X-Wsbridge-Signature value of body signed at timestamp.
func sign(secret, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// newRequest builds a signed POST of body to url.
func (d *Dispatcher) newRequest(ctx context.Context, url, kind string, body []byte, attempt int) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "wsbridge")
	h.Set(HeaderKind, kind)
	h.Set(HeaderNode, strconv.Itoa(d.cfg.NodeID))
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderAttempt, strconv.Itoa(attempt))
	if d.cfg.Secret != "" {
		h.Set(HeaderSignature, sign(d.cfg.Secret, ts, body))
	}
	return req, nil
}

// postEvents sends one event request and returns the status of the
// answer, whose body it reads (at most maxAnswer) and discards.
func (d *Dispatcher) postEvents(body []byte, attempt int) (int, error) {
	ctx, cancel := context.WithTimeout(d.ctx, d.cfg.Timeout)
	defer cancel()
	req, err := d.newRequest(ctx, d.cfg.URL, kindEvents, body, attempt)
	if err != nil {
		return 0, err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}
