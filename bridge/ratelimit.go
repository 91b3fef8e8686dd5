package bridge

import (
	"math"
	"time"

	"github.com/wsbridge/wsbridge/internal/config"
)

// RatePolicy says what happens to a client's message over the client rate
// limits (Config.ClientMessageRate, Config.ClientByteRate).
type RatePolicy string

const (
	// RatePolicyClose closes the connection with 1008 (policy violation).
	// The default: the client learns that it went too fast, and no message
	// is lost without either side knowing.
	RatePolicyClose RatePolicy = "close"
	// RatePolicyDrop drops the message (the Listener never sees it) and
	// keeps the connection; the drop is counted.
	RatePolicyDrop RatePolicy = "drop"
)

// RateUnlimited, as a client rate, turns that limit off.
const RateUnlimited = -1

// Defaults of the client rate limits: well above what an interactive
// client sends (a game at 60 updates/s, a burst of subscriptions when a
// page loads), well below what one client can make the application
// process when every message becomes an event.
const (
	DefaultClientMessageRate  = 100
	DefaultClientMessageBurst = 1000
	DefaultClientByteRate     = 1 << 20
	// DefaultClientByteBurst: the byte burst is the larger of this and
	// MaxMessageSize, so that a message of the largest size can pass.
	DefaultClientByteBurst = 2 << 20
)

// rateBucket is a connection's token buckets for messages and bytes: three
// words in the conn, refilled from the clock when a message arrives (no
// timer, no goroutine). Only the connection's reader touches it.
type rateBucket struct {
	last  time.Duration // since the connection opened, at the last refill
	msgs  float64
	bytes float64
}

// fill starts the buckets full.
func (b *rateBucket) fill(cfg *Config) {
	b.msgs, b.bytes = float64(cfg.ClientMessageBurst), float64(cfg.ClientByteBurst)
}

// refill adds the tokens earned since the last refill; now is the time
// since the connection opened (monotonic).
func (b *rateBucket) refill(cfg *Config, now time.Duration) {
	dt := (now - b.last).Seconds()
	if dt <= 0 {
		return
	}
	b.last = now
	if cfg.ClientMessageRate > 0 {
		b.msgs = min(b.msgs+dt*cfg.ClientMessageRate, float64(cfg.ClientMessageBurst))
	}
	if cfg.ClientByteRate > 0 {
		b.bytes = min(b.bytes+dt*float64(cfg.ClientByteRate), float64(cfg.ClientByteBurst))
	}
}

// allow refills and reports whether a message may start, and how many
// bytes it may have (-1 for no byte limit checked here: readMessage's
// MaxMessageSize still applies).
func (b *rateBucket) allow(cfg *Config, now time.Duration) (ok bool, maxBytes int64) {
	b.refill(cfg, now)
	maxBytes = 1<<63 - 1
	if cfg.ClientByteRate > 0 {
		maxBytes = int64(b.bytes)
	}
	return cfg.ClientMessageRate <= 0 || b.msgs >= 1, maxBytes
}

// take charges a message of which n bytes were read, whether it was
// given to the application or refused.
func (b *rateBucket) take(cfg *Config, n int) {
	if cfg.ClientMessageRate > 0 {
		b.msgs--
	}
	if cfg.ClientByteRate > 0 {
		b.bytes -= float64(n)
	}
}

// rateLimited reports whether any client rate limit is on.
func (cfg *Config) rateLimited() bool { return cfg.ClientMessageRate > 0 || cfg.ClientByteRate > 0 }

// readDefaults sets the read path's defaults (after MaxMessageSize's).
func (c *Config) readDefaults() {
	config.Default(&c.ClientMessageRate, DefaultClientMessageRate)
	config.Default(&c.ClientMessageBurst, DefaultClientMessageBurst)
	config.Default(&c.ClientByteRate, DefaultClientByteRate)
	config.Default(&c.ClientByteBurst, max(DefaultClientByteBurst, c.MaxMessageSize))
	config.Default(&c.ClientRatePolicy, RatePolicyClose)
}

func (c *Config) validateRead(check func(ok bool, format string, args ...any)) {
	check(!math.IsNaN(c.ClientMessageRate) && !math.IsInf(c.ClientMessageRate, 0), "client message rate: %v must be a number", c.ClientMessageRate)
	check(c.ClientMessageBurst > 0, "client message burst: %d must be positive", c.ClientMessageBurst)
	check(c.ClientByteBurst >= c.MaxMessageSize || c.ClientByteRate < 0,
		"client byte burst: %d must be at least max message size %d (a message of that size could never pass)", c.ClientByteBurst, c.MaxMessageSize)
	check(c.ClientRatePolicy == RatePolicyClose || c.ClientRatePolicy == RatePolicyDrop,
		"client rate policy: %q must be %q or %q", c.ClientRatePolicy, RatePolicyClose, RatePolicyDrop)
}
