package cluster

import (
	"context"
	"errors"
	"time"
)

// Broker carries messages between nodes: a payload published to a channel
// reaches every node subscribed to it at that moment (at most once; a
// message published while a subscriber is disconnected is lost to it).
// Another engine (NATS) implements the same interface; callers never see
// which one runs.
type Broker interface {
	// Publish sends payload to channel and returns how many nodes
	// received it (subscribers of the channel at that moment; -1 when the
	// engine cannot tell). While the engine is down it fails at once with
	// an error that wraps ErrUnavailable; it never waits longer than ctx
	// and the engine's own publish timeout.
	Publish(ctx context.Context, channel string, payload []byte) (int, error)
	// Subscribe adds channels to the node's subscriptions; the handler
	// given to the engine receives their messages. The channels stay
	// subscribed, through reconnects, until Unsubscribe. Subscribe returns
	// once the engine has confirmed them, or with ctx's error or
	// ErrUnavailable while the engine is down: the channels stay
	// registered either way and are subscribed as soon as it is back.
	// Subscribing a subscribed channel does nothing.
	Subscribe(ctx context.Context, channels ...string) error
	// Unsubscribe ends the subscriptions; once it returns, the handler
	// receives no more messages of these channels.
	Unsubscribe(ctx context.Context, channels ...string) error
	// Health says whether the engine is reachable, and why not.
	Health() Health
	// Close ends every subscription and stops the engine's goroutines.
	// It does not close a client the engine was given.
	Close() error
}

// Handler receives a message of a subscribed channel. Calls for one
// channel come one after the other, in order; calls for different
// channels may run concurrently. A Handler must not block for long and
// must not keep payload past its return.
type Handler func(channel string, payload []byte)

// Health is a Broker's state.
type Health struct {
	Up         bool      `json:"up"`
	Reason     string    `json:"reason,omitempty"` // why it is down
	Since      time.Time `json:"since"`            // when the current state began
	Reconnects uint64    `json:"reconnects"`       // times it came back after being down
	Channels   int       `json:"channels"`         // channels subscribed
}

// Errors of the cluster layer.
var (
	// ErrUnavailable: Redis (the broker's engine) is out of reach; the
	// operation failed at once.
	ErrUnavailable = errors.New("cluster: redis unavailable")
	// ErrClosed: the component was closed.
	ErrClosed = errors.New("cluster: closed")
	// ErrTooManyChannels: Subscribe would pass the broker's MaxChannels.
	ErrTooManyChannels = errors.New("cluster: too many channels subscribed")
)
