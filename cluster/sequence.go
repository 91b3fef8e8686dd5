package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/wsbridge/wsbridge/bridge"
)

var _ bridge.Sequence = (*BlockSequence)(nil)

// DefaultBlockSize is the sequence numbers reserved at a time.
const DefaultBlockSize = 4096

// reserveScript reserves the next block of a node id's fd sequence: the
// counter, raised to the clock floor (bridge.ClockUnits) if it is below
// (a Redis that lost the key still never hands out an fd of an earlier
// run), plus the block size. It returns the block's last number.
var reserveScript = rueidis.NewLuaScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur < tonumber(ARGV[2]) then redis.call('SET', KEYS[1], ARGV[2]) end
return redis.call('INCRBY', KEYS[1], ARGV[1])
`)

// BlockSequenceConfig configures a BlockSequence.
type BlockSequenceConfig struct {
	// Client is the Redis client; required.
	Client rueidis.Client
	// Keys names the counter.
	Keys Keys
	// NodeID is the node whose sequence this is (its claimed id).
	NodeID int
	// BlockSize is how many numbers one reservation takes. Default 4096.
	BlockSize int64
	// Logger receives the sequence's logs. Default slog.Default().
	Logger *slog.Logger
}

// BlockSequence is the fd sequence of a node in cluster mode
// (bridge.Sequence): numbers reserved in Redis a block at a time, from a
// counter per node id that only grows, so that fds are never reused by any
// run of any node that holds the id. Next is one atomic add; when half of
// the current block is used, the next block is reserved in the background,
// so a handshake never waits on Redis. If Redis is away until the block is
// used up, Next fails with bridge.ErrFDUnavailable (the handshake gets 503)
// until a block can be reserved again.
type BlockSequence struct {
	cfg   BlockSequenceConfig
	log   *slog.Logger
	cur   atomic.Pointer[seqBlock]
	spare atomic.Pointer[seqBlock]
	kick  chan struct{}

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	blocks, reserveErrors, unavailable atomic.Uint64
}

type seqBlock struct {
	next  atomic.Int64 // the last number handed out
	end   int64        // the block's last number
	refil int64        // handing out this number asks for the next block
}

// NewBlockSequence reserves the first block (Redis must be reachable) and
// starts the goroutine that reserves the next ones; Close stops it.
func NewBlockSequence(ctx context.Context, cfg BlockSequenceConfig) (*BlockSequence, error) {
	if cfg.Client == nil {
		return nil, fmt.Errorf("cluster: a BlockSequence needs a Client")
	}
	if cfg.BlockSize <= 0 {
		cfg.BlockSize = DefaultBlockSize
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Keys.p == "" {
		cfg.Keys, _ = NewKeys("")
	}
	s := &BlockSequence{cfg: cfg, log: cfg.Logger, kick: make(chan struct{}, 1), stop: make(chan struct{})}
	b, err := s.reserve(ctx)
	if err != nil {
		return nil, err
	}
	s.cur.Store(b)
	s.wg.Add(1)
	go s.refill()
	s.poke() // the spare
	return s, nil
}

// reserve takes the next block from Redis.
func (s *BlockSequence) reserve(ctx context.Context) (*seqBlock, error) {
	n := s.cfg.BlockSize
	end, err := reserveScript.Exec(ctx, s.cfg.Client, []string{s.cfg.Keys.Seq(s.cfg.NodeID)},
		[]string{strconv.FormatInt(n, 10), strconv.FormatInt(bridge.ClockUnits(time.Now()), 10)}).AsInt64()
	if err != nil {
		s.reserveErrors.Add(1)
		return nil, fmt.Errorf("cluster: reserve fds: %w", err)
	}
	if end > bridge.MaxSeq {
		return nil, fmt.Errorf("cluster: reserve fds: %w (counter at %d)", bridge.ErrFDSpaceExhausted, end)
	}
	s.blocks.Add(1)
	b := &seqBlock{end: end, refil: end - n/2}
	b.next.Store(end - n)
	return b, nil
}

// Next hands out the next number of the current block, moving to the
// spare block when it is used up.
func (s *BlockSequence) Next() (int64, error) {
	for {
		b := s.cur.Load()
		n := b.next.Add(1)
		if n <= b.end {
			if n == b.refil {
				s.poke()
			}
			return n, nil
		}
		sp := s.spare.Load()
		if sp == nil {
			if s.cur.Load() != b {
				continue // another goroutine installed the spare meanwhile
			}
			s.poke()
			s.unavailable.Add(1)
			return 0, bridge.ErrFDUnavailable
		}
		// Whoever takes the spare installs it; the others retry on it.
		// Blocks never overlap, so no interleaving hands out a number
		// twice (at worst a block's rest is skipped).
		if s.spare.CompareAndSwap(sp, nil) {
			s.cur.Store(sp)
			s.poke()
		}
	}
}

func (s *BlockSequence) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// refill keeps a spare block ready: it reserves one when poked and none
// is there, retrying with a backoff while Redis is away.
func (s *BlockSequence) refill() {
	defer s.wg.Done()
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
		}
		for s.spare.Load() == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			b, err := s.reserve(ctx)
			cancel()
			if err == nil {
				s.spare.Store(b)
				backoff = 100 * time.Millisecond
				break
			}
			s.log.Warn("cannot reserve the next block of fds", "err", err, "retry", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-s.stop:
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}

// SequenceStats counts a BlockSequence's work.
type SequenceStats struct {
	Blocks        uint64 `json:"blocks"`         // blocks reserved
	ReserveErrors uint64 `json:"reserve_errors"` // reservations that failed
	Unavailable   uint64 `json:"unavailable"`    // Next calls refused: no block
}

// Stats returns the counters.
func (s *BlockSequence) Stats() SequenceStats {
	return SequenceStats{Blocks: s.blocks.Load(), ReserveErrors: s.reserveErrors.Load(), Unavailable: s.unavailable.Load()}
}

// Close stops the refill goroutine. Numbers still reserved are never
// handed out (the next run starts above them).
func (s *BlockSequence) Close() {
	s.stopOnce.Do(func() { close(s.stop) })
	s.wg.Wait()
}
