package events

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/internal/config"
)

// Overflow says what happens to a message event that finds its connection's
// queue, or the total, at its bound.
type Overflow string

const (
	// OverflowClose drops the message and closes its connection with
	// CloseTryAgainLater, so the client knows and the application sees a
	// close event instead of a conversation with a hole in it. The default.
	OverflowClose Overflow = "close"
	// OverflowDrop drops the message and keeps the connection.
	OverflowDrop Overflow = "drop"
)

// CloseTryAgainLater is the close code of a connection closed by
// OverflowClose (RFC 6455: "try again later").
const CloseTryAgainLater = 1013

// Config configures a Dispatcher. The zero value of every field means its
// documented default; Config is passed by value.
type Config struct {
	// URL receives the event batches (http or https with a host). Empty:
	// events are off; the Dispatcher then only authorizes.
	URL string
	// AuthURL receives the handshakes to authorize (it may equal URL).
	// Empty: Authorize allows every handshake.
	AuthURL string
	// Secret signs every request (X-Wsbridge-Signature). Empty: requests
	// are not signed.
	Secret string
	// NodeID is sent in every request (X-Wsbridge-Node and "node").
	// Default 0.
	NodeID int
	// Concurrency bounds the event requests in flight, and the connections
	// to URL. Auth requests have their own connections, as many at most.
	// Default 8.
	Concurrency int
	// BatchSize bounds the events of one request. Default 100.
	BatchSize int
	// BatchBytes bounds the encoded events of one request; a single larger
	// event travels alone. Default 1 MiB.
	BatchBytes int
	// Timeout bounds one event request, connecting included. Default 5s.
	Timeout time.Duration
	// RetryMax caps the backoff between retries of a request, which starts
	// at 100 ms (or RetryMax, if lower) and doubles. Default 5s.
	RetryMax time.Duration
	// Retries is the retry budget of a request: past it a batch of several
	// connections is split into one request per connection, and a
	// connection's events into one request per event, the latter only
	// while the application acknowledges other requests; an event that
	// then fails Retries times more, alone, while the application
	// acknowledges others, is dropped (DropPoison). While the application
	// fails everything, nothing is dropped. Default 5 (with the default
	// backoff, about 3 s of retries at each step).
	Retries int
	// AuthTimeout bounds one authorization request; past it the handshake
	// is refused with 503. Default 3s.
	AuthTimeout time.Duration
	// QueuePerFD bounds the pending (not yet acknowledged) events of one
	// connection's messages: its open and close events always fit.
	// Default 1000.
	QueuePerFD int
	// QueueTotal bounds the pending events of all connections, counting
	// one close event reserved for each connection whose open event was
	// accepted and that has not closed yet. It is a hard bound: an open
	// event that does not fit with its close event is dropped and its
	// connection closed, and Admit refuses handshakes before that.
	// Default 100000.
	QueueTotal int
	// QueueBytes bounds the encoded size of the pending events of all
	// connections, so that large messages and headers cannot exhaust
	// memory within QueueTotal; each reserved close event counts
	// MaxCloseEventSize. A hard bound, like QueueTotal. Default 64 MiB.
	QueueBytes int
	// Overflow is the policy for a message event that does not fit.
	// Default OverflowClose.
	Overflow Overflow
	// Logger receives the Dispatcher's logs. Default slog.Default().
	Logger *slog.Logger
	// Observer, when set, is told of every event request and
	// authorization request (for metrics). Default: none.
	Observer Observer
}

// Observer is told of every request the Dispatcher makes, when its outcome
// is known and before the Dispatcher acts on it. Calls come from many
// goroutines at once and must not block.
type Observer interface {
	// ObserveDelivery: one attempt to deliver a batch of events, with its
	// outcome (OutcomeAcknowledged, OutcomeRefused, OutcomeFailed: it will
	// be retried, OutcomeCancelled: the shutdown deadline cut it) and how
	// long the request took.
	ObserveDelivery(outcome string, events int, d time.Duration)
	// ObserveAuth: one handshake authorization, with its outcome
	// (OutcomeAllowed, OutcomeDenied, OutcomeFailed: refused with 503).
	ObserveAuth(outcome string, d time.Duration)
}

// Outcomes an Observer is told of.
const (
	OutcomeAcknowledged = "acknowledged"
	OutcomeRefused      = "refused"
	OutcomeFailed       = "failed"
	OutcomeCancelled    = "cancelled"
	OutcomeAllowed      = "allowed"
	OutcomeDenied       = "denied"
)

// Defaults of Config; exported so the binary's flags show the same values.
const (
	DefaultConcurrency = 8
	DefaultBatchSize   = 100
	DefaultBatchBytes  = 1 << 20
	DefaultTimeout     = 5 * time.Second
	DefaultRetryMax    = 5 * time.Second
	DefaultRetries     = 5
	DefaultAuthTimeout = 3 * time.Second
	DefaultQueuePerFD  = 1000
	DefaultQueueTotal  = 100000
	DefaultQueueBytes  = 64 << 20
)

// retryMin is the first backoff after a failed request.
const retryMin = 100 * time.Millisecond

// withDefaults returns c with every zero field set to its default and
// reports every invalid field.
func (c Config) withDefaults() (Config, error) {
	config.Default(&c.Concurrency, DefaultConcurrency)
	config.Default(&c.BatchSize, DefaultBatchSize)
	config.Default(&c.BatchBytes, DefaultBatchBytes)
	config.Default(&c.QueuePerFD, DefaultQueuePerFD)
	config.Default(&c.QueueTotal, DefaultQueueTotal)
	config.Default(&c.QueueBytes, DefaultQueueBytes)
	config.Default(&c.Timeout, DefaultTimeout)
	config.Default(&c.RetryMax, DefaultRetryMax)
	config.Default(&c.Retries, DefaultRetries)
	config.Default(&c.AuthTimeout, DefaultAuthTimeout)
	config.Default(&c.Overflow, OverflowClose)
	config.Default(&c.Logger, slog.Default())
	return c, c.validate()
}

func (c Config) validate() error {
	var checks config.Checks
	check := checks.Check
	if c.URL != "" {
		if err := CheckURL(c.URL); err != nil {
			checks.Add(fmt.Errorf("url: %w", err))
		}
	}
	if c.AuthURL != "" {
		if err := CheckURL(c.AuthURL); err != nil {
			checks.Add(fmt.Errorf("auth url: %w", err))
		}
	}
	check(c.NodeID >= 0 && c.NodeID <= bridge.MaxNodeID, "node id: %d is out of range 0..%d", c.NodeID, bridge.MaxNodeID)
	check(c.Concurrency > 0, "concurrency: %d must be positive", c.Concurrency)
	check(c.BatchSize > 0, "batch size: %d must be positive", c.BatchSize)
	check(c.BatchBytes > 0, "batch bytes: %d must be positive", c.BatchBytes)
	check(c.QueuePerFD > 0, "queue per fd: %d must be positive", c.QueuePerFD)
	check(c.QueueTotal > 0, "queue total: %d must be positive", c.QueueTotal)
	check(c.QueueBytes > 0, "queue bytes: %d must be positive", c.QueueBytes)
	check(c.Timeout > 0, "timeout: %s must be positive", c.Timeout)
	check(c.RetryMax > 0, "retry max: %s must be positive", c.RetryMax)
	check(c.Retries > 0, "retries: %d must be positive", c.Retries)
	check(c.AuthTimeout > 0, "auth timeout: %s must be positive", c.AuthTimeout)
	check(c.Overflow == OverflowClose || c.Overflow == OverflowDrop, "overflow: %q must be %q or %q", c.Overflow, OverflowClose, OverflowDrop)
	return checks.Err()
}

// CheckURL reports whether s can receive events: an absolute http or https
// URL with a host.
func CheckURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("scheme %q: want http or https", u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return errors.New("no host")
	}
	return nil
}
