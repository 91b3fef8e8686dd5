package events_test

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/events"
)

// observed records what an events.Observer is told.
type observed struct {
	mu         sync.Mutex
	deliveries []string // outcome
	events     int      // events of acknowledged requests
	auths      []string
	neg        bool
}

func (o *observed) ObserveDelivery(outcome string, n int, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.deliveries = append(o.deliveries, outcome)
	if outcome == events.OutcomeAcknowledged {
		o.events += n
	}
	o.neg = o.neg || d < 0
}

func (o *observed) ObserveAuth(outcome string, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.auths = append(o.auths, outcome)
	o.neg = o.neg || d < 0
}

func (o *observed) get() (deliveries []string, evs int, auths []string, neg bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.deliveries), o.events, slices.Clone(o.auths), o.neg
}

// TestObserver: every request attempt is observed with its outcome, and
// every authorization.
func TestObserver(t *testing.T) {
	s := newSink(t)
	var calls atomic.Int32
	s.setAnswer(func(_ *http.Request, req *sinkRequest) (int, string) {
		if req.Kind == "auth" {
			if strings.Contains(string(req.Body), "deny=1") {
				return http.StatusOK, `{"allow": false}`
			}
			return http.StatusOK, `{"allow": true}`
		}
		if len(req.Events) == 1 && req.Events[0].Data == "m0" {
			if calls.Add(1) == 1 {
				return http.StatusInternalServerError, "" // retried
			}
			return http.StatusBadRequest, "" // refused
		}
		return http.StatusOK, ""
	})
	obs := &observed{}
	d, _ := newDispatcher(t, events.Config{URL: s.url, AuthURL: s.url + "?auth=1", Concurrency: 1, Observer: obs})
	th := startHub(t, d, true, bridge.Config{})

	// The open event is acknowledged; m0 fails once, then is refused:
	// dropped; m1 is acknowledged.
	c := th.dial(t, "/?id=a", nil)
	s.fdOf(t, "a")
	send(t, c, "m0")
	waitStats(t, d, "a refusal", func(st events.Stats) bool { return st.Dropped.Refused == 1 })
	send(t, c, "m1")
	s.waitFor(t, "m1 acknowledged", func() bool {
		for _, r := range s.reqs {
			if r.Status == http.StatusOK && len(r.Events) > 0 && r.Events[0].Data == "m1" {
				return true
			}
		}
		return false
	})
	if _, resp, err := dialer.Dial(th.url+"/?deny=1", nil); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a denied handshake: %v (%s)", err, statusOf(resp))
	}
	settle(t, d)
	deliveries, n, auths, neg := obs.get()
	want := []string{events.OutcomeAcknowledged, events.OutcomeFailed, events.OutcomeRefused, events.OutcomeAcknowledged}
	if !slices.Equal(deliveries, want) {
		t.Errorf("deliveries %q, want %q", deliveries, want)
	}
	if n != 2 {
		t.Errorf("%d acknowledged events observed, want 2 (the open and m1)", n)
	}
	if want := []string{events.OutcomeAllowed, events.OutcomeDenied}; !slices.Equal(auths, want) {
		t.Errorf("authorizations %q, want %q", auths, want)
	}
	if neg {
		t.Error("a negative duration was observed")
	}
}
