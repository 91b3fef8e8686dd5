package events

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/wsbridge/wsbridge/bridge"
)

// authRequest is the body of an auth request.
type authRequest struct {
	Node       int         `json:"node"`
	Path       string      `json:"path"`
	Query      string      `json:"query"`
	Headers    http.Header `json:"headers"`
	RemoteAddr string      `json:"remote_addr"`
}

// authAnswer is the body of a 2xx answer to an auth request.
type authAnswer struct {
	Allow   *bool           `json:"allow"`
	User    json.RawMessage `json:"user"`
	Groups  []string        `json:"groups"`
	Status  int             `json:"status"`
	Message string          `json:"message"`
}

// errBadAnswer: the application's answer to an auth request is not one the
// contract allows; the handshake is refused with 503.
var errBadAnswer = errors.New("events: bad authorization answer")

// unavailable is the refusal of a handshake the application did not answer.
var unavailable = bridge.Authorization{Status: http.StatusServiceUnavailable, Message: "wsbridge: authorization unavailable"}

// Authorize asks the application whether the handshake r may be upgraded
// (docs/PROTOCOL.md, "Handshake authorization"); it fits
// bridge.Config.Authorize. Without Config.AuthURL it allows every
// handshake. It never takes longer than Config.AuthTimeout: a handshake the
// application does not answer in time, or answers with 5xx or something the
// contract does not allow, is refused with 503.
func (d *Dispatcher) Authorize(r *http.Request) bridge.Authorization {
	if d.cfg.AuthURL == "" {
		return bridge.Authorization{Allow: true}
	}
	headers := r.Header
	if headers == nil {
		headers = http.Header{}
	}
	body := marshal(authRequest{Node: d.cfg.NodeID, Path: r.URL.Path, Query: r.URL.RawQuery, Headers: headers, RemoteAddr: r.RemoteAddr})
	start := time.Now()
	auth, err := d.askAuth(r.Context(), body)
	if obs := d.cfg.Observer; obs != nil {
		outcome := OutcomeDenied
		switch {
		case err != nil:
			outcome = OutcomeFailed
		case auth.Allow:
			outcome = OutcomeAllowed
		}
		obs.ObserveAuth(outcome, time.Since(start))
	}
	switch {
	case err != nil:
		d.authFailed.Add(1)
		d.limit.logf("auth", slog.LevelWarn, "authorization failed, handshake refused with 503", "remote", r.RemoteAddr, "err", redactError(err))
		return unavailable
	case auth.Allow:
		d.allowed.Add(1)
	default:
		d.denied.Add(1)
		d.log.Debug("handshake refused by the application", "remote", r.RemoteAddr, "status", auth.Status)
	}
	return auth
}

func (d *Dispatcher) askAuth(ctx context.Context, body []byte) (bridge.Authorization, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.AuthTimeout)
	defer cancel()
	req, err := d.newRequest(ctx, d.cfg.AuthURL, kindAuth, body, 1)
	if err != nil {
		return bridge.Authorization{}, err
	}
	resp, err := d.auth.Do(req)
	if err != nil {
		return bridge.Authorization{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return bridge.Authorization{}, fmt.Errorf("reading the answer (HTTP %d): %w", resp.StatusCode, err)
	}
	if len(data) > maxAnswer {
		return bridge.Authorization{}, fmt.Errorf("%w: HTTP %d with a body over %d bytes", errBadAnswer, resp.StatusCode, maxAnswer)
	}
	return decodeAuthAnswer(resp.StatusCode, data)
}

// decodeAuthAnswer reads the application's answer to an auth request:
//
//   - 2xx with {"allow": true, "user": "42", "groups": ["vip"]} (user and
//     groups optional; user may be a JSON integer too): allowed;
//   - 2xx with {"allow": false, "status": 401, "message": "..."}: refused
//     with that status (400..599; otherwise 403) and message (default: the
//     status text);
//   - a 4xx status: refused with it;
//   - anything else (5xx, 1xx, 3xx, a 2xx body that is not such an object):
//     an error wrapping errBadAnswer, refused with 503 by Authorize.
func decodeAuthAnswer(status int, body []byte) (bridge.Authorization, error) {
	switch {
	case status >= 400 && status <= 499:
		return bridge.Authorization{Status: status, Message: http.StatusText(status)}, nil
	case status < 200 || status > 299:
		return bridge.Authorization{}, fmt.Errorf("%w: HTTP %d", errBadAnswer, status)
	}
	var a authAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return bridge.Authorization{}, fmt.Errorf("%w: HTTP %d: %v", errBadAnswer, status, err)
	}
	if a.Allow == nil {
		return bridge.Authorization{}, fmt.Errorf("%w: HTTP %d without \"allow\"", errBadAnswer, status)
	}
	if !*a.Allow {
		st := a.Status
		if st < 400 || st > 599 {
			st = http.StatusForbidden
		}
		msg := a.Message
		if msg == "" {
			msg = http.StatusText(st)
		}
		return bridge.Authorization{Status: st, Message: msg}, nil
	}
	user, err := decodeUser(a.User)
	if err != nil {
		return bridge.Authorization{}, fmt.Errorf("%w: HTTP %d: %v", errBadAnswer, status, err)
	}
	return bridge.Authorization{Allow: true, User: user, Groups: a.Groups}, nil
}

// decodeUser reads "user": a string, an integer (PHP's json_encode writes
// an int id as a number), or null/absent for none.
func decodeUser(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	if raw[0] == '"' {
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return strconv.FormatInt(n, 10), nil
	}
	return "", fmt.Errorf("\"user\" %s is neither a string nor an integer", raw)
}
