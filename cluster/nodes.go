package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// AutoNodeID asks Join to claim the lowest free node id.
const AutoNodeID = -1

// maxNodeID is bridge.MaxNodeID (not imported: the cluster layer does not
// need the bridge for this).
const maxNodeID = 1023

// Defaults of RegistryConfig.
const (
	DefaultNodeTTL   = 10 * time.Second
	DefaultLostLease = time.Minute
	// maxLostPerSweep bounds the lost nodes one sweep takes on.
	maxLostPerSweep = 16
	// deadMarkTTL: how long a cleaned-up node's generation stays marked
	// dead, so that a node that was only stalled cannot take its id back.
	deadMarkTTL = 24 * time.Hour
)

// Errors of the node registry.
var (
	// ErrIDTaken: the node id is held by another live node; the error is an
	// *IDTakenError that names it.
	ErrIDTaken = errors.New("cluster: node id taken")
	// ErrNoFreeID: all 1024 node ids are held.
	ErrNoFreeID = errors.New("cluster: no free node id")
	// ErrClaimLost: this node's id was taken over, or its claim expired
	// and the survivors declared it lost. Its connections have been (or
	// are being) reported closed to the application: it must stop.
	ErrClaimLost = errors.New("cluster: this node lost its node id")
)

// IDTakenError says which live node holds the id asked for.
type IDTakenError struct {
	ID     int
	Holder Node
}

func (e *IDTakenError) Error() string {
	return fmt.Sprintf("cluster: node id %d is held by the node at %s (host %s, pid %d, heartbeat %v ago): two live nodes cannot share an id",
		e.ID, e.Holder.Address, e.Holder.Hostname, e.Holder.PID, e.Holder.HeartbeatAge.Round(time.Millisecond))
}

// Is makes errors.Is(err, ErrIDTaken) hold.
func (e *IDTakenError) Is(target error) bool { return target == ErrIDTaken }

// Node is a node's record in the registry.
type Node struct {
	ID          int    `json:"id"`
	Gen         int64  `json:"gen"` // one per claim: a restarted node gets a new one
	Address     string `json:"address"`
	Link        string `json:"link,omitempty"` // where other nodes dial its link (link.go); "": it takes none
	Hostname    string `json:"hostname"`
	PID         int    `json:"pid"`
	Started     int64  `json:"started"`     // unix seconds
	Connections int64  `json:"connections"` // as of its last heartbeat
	TTLMillis   int64  `json:"ttl_ms"`
	// HeartbeatAge is the time since its last heartbeat (from the claim's
	// remaining TTL on the Redis server's clock; List and IDTakenError).
	HeartbeatAge time.Duration `json:"-"`
	// Expired: its claim is gone and the survivors have not yet taken it
	// for lost (List only).
	Expired bool `json:"-"`
}

// RegistryConfig configures Join; zero fields take their documented
// defaults.
type RegistryConfig struct {
	// Client is the Redis client (NewClient); required. Not closed by the
	// registry.
	Client rueidis.Client
	// Keys names the registry's keys.
	Keys Keys
	// NodeID is the id to claim (0..1023), or AutoNodeID.
	NodeID int
	// Address is how an operator or another node finds this node (its
	// advertised RPC address); shown in errors and listings.
	Address string
	// Link is the address other nodes dial for a link to this node
	// ("": it takes none).
	Link string
	// Hostname defaults to os.Hostname().
	Hostname string
	// TTL: a node whose heartbeat is older is lost. Default 10s.
	TTL time.Duration
	// Heartbeat is how often the claim is renewed and the registry swept
	// for lost nodes. Default TTL/3.
	Heartbeat time.Duration
	// Connections, when set, is published with each heartbeat.
	Connections func() int64
	// OnNodeLost is called, on one surviving node only, for each node
	// whose heartbeat expired without a release. It runs on the
	// registry's sweeper goroutine with a context that ends before the
	// lease (LostLease) does. An error leaves the lost node to be taken
	// on again, by any node, at a later sweep.
	OnNodeLost func(ctx context.Context, lost Node) error
	// OnClaimLost is called once, on the heartbeat goroutine, when this
	// node finds it no longer holds its id (the error wraps ErrClaimLost).
	// The heartbeat stops; the caller decides (stop serving, most likely).
	OnClaimLost func(err error)
	// LostLease bounds the time a survivor holds a lost node's cleanup
	// before another may take it on. Default 1 minute.
	LostLease time.Duration
	// Logger receives the registry's logs. Default slog.Default().
	Logger *slog.Logger
}

// Registry holds this node's id: it claimed it, renews it, releases it
// on Close, and sweeps the registry for lost nodes.
type Registry struct {
	cfg   RegistryConfig
	log   *slog.Logger
	self  Node
	token string // this registry's cleanup-lock token

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
	lost     atomic.Bool            // the claim was lost
	addr     atomic.Pointer[string] // SetAddress's, for the next heartbeats

	renewals, renewErrors, sweeps, lostHandled atomic.Uint64
}

// The registry's scripts. Every key they touch carries the {prefix} hash
// tag, so they run on one Redis Cluster slot. Records are JSON; cjson
// keeps the integers exact (all are far below 10^14).
var (
	claimScript = rueidis.NewLuaScript(`
local function try(id)
  local ck = ARGV[1] .. id
  local cur = redis.call('GET', ck)
  if cur then return nil, cur, redis.call('PTTL', ck) end
  local gen = redis.call('INCR', KEYS[3])
  local rec = cjson.decode(ARGV[3])
  rec.id = tonumber(id)
  rec.gen = gen
  local prev = redis.call('HGET', KEYS[1], id)
  if prev then
    redis.call('HSET', KEYS[2], id .. ':' .. cjson.decode(prev).gen, prev)
  end
  local s = cjson.encode(rec)
  redis.call('SET', ck, s, 'PX', ARGV[2])
  redis.call('HSET', KEYS[1], id, s)
  return s
end
if ARGV[4] == 'auto' then
  for id = 0, tonumber(ARGV[5]) do
    local s = try(tostring(id))
    if s then return {1, s} end
  end
  return {0, '', 0}
end
local s, cur, pttl = try(ARGV[4])
if s then return {1, s} end
return {0, cur, pttl}
`)
	heartbeatScript = rueidis.NewLuaScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  if cjson.decode(cur).gen ~= tonumber(ARGV[1]) then return {-2, cur} end
else
  local h = redis.call('HGET', KEYS[2], ARGV[4])
  if h and cjson.decode(h).gen ~= tonumber(ARGV[1]) then return {-2, h} end
  if redis.call('HEXISTS', KEYS[3], ARGV[4] .. ':' .. ARGV[1]) == 1 or redis.call('EXISTS', KEYS[4]) == 1 then
    return {-1, ''}
  end
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[4], ARGV[3])
if cur then return {1, ''} end
return {2, ''}
`)
	releaseScript = rueidis.NewLuaScript(`
local cur = redis.call('GET', KEYS[1])
if cur and cjson.decode(cur).gen == tonumber(ARGV[1]) then redis.call('DEL', KEYS[1]) end
local h = redis.call('HGET', KEYS[2], ARGV[2])
if h and cjson.decode(h).gen == tonumber(ARGV[1]) then
  redis.call('HDEL', KEYS[2], ARGV[2])
  return 1
end
return 0
`)
	sweepScript = rueidis.NewLuaScript(`
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if all[i] ~= ARGV[6] and redis.call('EXISTS', ARGV[1] .. all[i]) == 0 then
    redis.call('HSET', KEYS[2], all[i] .. ':' .. cjson.decode(all[i+1]).gen, all[i+1])
    redis.call('HDEL', KEYS[1], all[i])
  end
end
local won = {}
local lost = redis.call('HGETALL', KEYS[2])
for i = 1, #lost, 2 do
  if #won >= tonumber(ARGV[5]) then break end
  if lost[i] ~= ARGV[4] and redis.call('SET', ARGV[2] .. lost[i], ARGV[4], 'NX', 'PX', ARGV[3]) then
    won[#won+1] = lost[i+1]
  end
end
return won
`)
	lostDoneScript = rueidis.NewLuaScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
return 1
`)
	lostRetryScript = rueidis.NewLuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)
	listScript = rueidis.NewLuaScript(`
local out = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  out[#out+1] = all[i+1]
  out[#out+1] = redis.call('PTTL', ARGV[1] .. all[i])
end
return out
`)
)

// Join claims a node id (cfg.NodeID, or the lowest free one with
// AutoNodeID) and starts the registry's two goroutines: the heartbeat and
// the sweeper. Close releases the id.
func Join(ctx context.Context, cfg RegistryConfig) (*Registry, error) {
	if cfg.Client == nil {
		return nil, errors.New("cluster: the registry needs a Client")
	}
	if cfg.NodeID != AutoNodeID && (cfg.NodeID < 0 || cfg.NodeID > maxNodeID) {
		return nil, fmt.Errorf("cluster: node id %d out of range 0..%d", cfg.NodeID, maxNodeID)
	}
	if cfg.Keys.p == "" {
		cfg.Keys, _ = NewKeys("")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultNodeTTL
	}
	if cfg.Heartbeat <= 0 || cfg.Heartbeat >= cfg.TTL {
		cfg.Heartbeat = cfg.TTL / 3
	}
	if cfg.LostLease <= 0 {
		cfg.LostLease = DefaultLostLease
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Registry{cfg: cfg, log: cfg.Logger, stop: make(chan struct{})}
	r.self = Node{Address: cfg.Address, Link: cfg.Link, Hostname: cfg.Hostname, PID: os.Getpid(), Started: time.Now().Unix(), TTLMillis: cfg.TTL.Milliseconds()}
	rec, err := json.Marshal(r.self)
	if err != nil {
		return nil, err
	}
	id := "auto"
	if cfg.NodeID != AutoNodeID {
		id = strconv.Itoa(cfg.NodeID)
	}
	k := cfg.Keys
	vals, err := claimScript.Exec(ctx, cfg.Client, []string{k.Nodes(), k.Lost(), k.Gen()},
		[]string{k.claimPrefix(), strconv.FormatInt(cfg.TTL.Milliseconds(), 10), string(rec), id, strconv.Itoa(maxNodeID)}).ToArray()
	if err != nil {
		return nil, fmt.Errorf("cluster: claim a node id: %w", err)
	}
	ok, _ := vals[0].AsInt64()
	body, _ := vals[1].ToString()
	if ok != 1 {
		if cfg.NodeID == AutoNodeID {
			return nil, ErrNoFreeID
		}
		var holder Node
		_ = json.Unmarshal([]byte(body), &holder)
		pttl, _ := vals[2].AsInt64()
		holder.HeartbeatAge = time.Duration(holder.TTLMillis-pttl) * time.Millisecond
		return nil, &IDTakenError{ID: cfg.NodeID, Holder: holder}
	}
	if err := json.Unmarshal([]byte(body), &r.self); err != nil {
		return nil, fmt.Errorf("cluster: the claim's record: %w", err)
	}
	r.token = strconv.Itoa(r.self.ID) + ":" + strconv.FormatInt(r.self.Gen, 10)
	r.log.Info("node id claimed", "id", r.self.ID, "gen", r.self.Gen, "address", r.self.Address)
	r.wg.Add(2)
	go r.every(r.heartbeat)
	go r.every(r.sweepBeat)
	return r, nil
}

// ID returns the claimed node id.
func (r *Registry) ID() int { return r.self.ID }

// Self returns this node's record as claimed.
func (r *Registry) Self() Node { return r.self }

// every runs beat each heartbeat period until Close, or until beat says
// to stop.
func (r *Registry) every(beat func() bool) {
	defer r.wg.Done()
	t := time.NewTicker(r.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		if !beat() {
			return
		}
	}
}

// heartbeat renews the claim; false once the claim is lost.
func (r *Registry) heartbeat() bool {
	err := r.renew()
	if err == nil {
		return true
	}
	if errors.Is(err, ErrClaimLost) {
		r.lost.Store(true)
		r.log.Error("this node lost its node id", "id", r.self.ID, "err", err)
		if r.cfg.OnClaimLost != nil {
			r.cfg.OnClaimLost(err)
		}
		return false
	}
	r.renewErrors.Add(1)
	r.log.Warn("node heartbeat failed", "id", r.self.ID, "err", err)
	return true
}

// SetAddress changes the address in this node's record (once the
// listeners are bound, the address with its real port) and renews the
// claim with it at once.
func (r *Registry) SetAddress(addr string) error {
	r.addr.Store(&addr)
	return r.renew()
}

// renew renews the claim if it is still this node's.
func (r *Registry) renew() error {
	n := r.self
	if a := r.addr.Load(); a != nil {
		n.Address = *a
	}
	if r.cfg.Connections != nil {
		n.Connections = r.cfg.Connections()
	}
	rec, err := json.Marshal(n)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Heartbeat)
	defer cancel()
	k, id, gen := r.cfg.Keys, strconv.Itoa(n.ID), strconv.FormatInt(n.Gen, 10)
	vals, err := heartbeatScript.Exec(ctx, r.cfg.Client, []string{k.Claim(n.ID), k.Nodes(), k.Lost(), k.deadPrefix() + id + ":" + gen},
		[]string{gen, strconv.FormatInt(r.cfg.TTL.Milliseconds(), 10), string(rec), id}).ToArray()
	if err != nil {
		return fmt.Errorf("cluster: heartbeat: %w", err)
	}
	code, _ := vals[0].AsInt64()
	switch code {
	case -2:
		body, _ := vals[1].ToString()
		var other Node
		_ = json.Unmarshal([]byte(body), &other)
		return fmt.Errorf("%w: node id %d is now held by the node at %s (host %s, generation %d)", ErrClaimLost, n.ID, other.Address, other.Hostname, other.Gen)
	case -1:
		return fmt.Errorf("%w: node id %d: the heartbeat expired and the survivors declared this node lost", ErrClaimLost, n.ID)
	case 2:
		r.log.Warn("node heartbeat renewed after its claim had expired (Redis restarted, or this node stalled)", "id", n.ID)
	}
	r.renewals.Add(1)
	return nil
}

// sweepBeat sweeps the registry for lost nodes; false once this node's
// own claim is lost.
func (r *Registry) sweepBeat() bool {
	if r.lost.Load() {
		return false
	}
	if err := r.sweep(); err != nil {
		r.log.Warn("registry sweep failed", "err", err)
	}
	return true
}

// sweep moves the expired claims to the lost hash, takes on the lost
// nodes no other survivor holds, and calls OnNodeLost for each.
func (r *Registry) sweep() error {
	k := r.cfg.Keys
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Heartbeat)
	vals, err := sweepScript.Exec(ctx, r.cfg.Client, []string{k.Nodes(), k.Lost()},
		// This node never sweeps itself (ARGV 6, and its own run ARGV 4): a
		// node that stalled past its TTL renews at its next heartbeat, or
		// learns there that the survivors took it for lost.
		[]string{k.claimPrefix(), k.lostLockPrefix(), strconv.FormatInt(r.cfg.LostLease.Milliseconds(), 10), r.token, strconv.Itoa(maxLostPerSweep), strconv.Itoa(r.self.ID)}).ToArray()
	cancel()
	if err != nil && !rueidis.IsRedisNil(err) {
		return fmt.Errorf("cluster: sweep: %w", err)
	}
	r.sweeps.Add(1)
	for _, v := range vals {
		body, _ := v.ToString()
		var lost Node
		if err := json.Unmarshal([]byte(body), &lost); err != nil {
			r.log.Error("registry: a lost node's record does not decode", "record", body, "err", err)
			continue
		}
		r.handleLost(lost)
	}
	return nil
}

func (r *Registry) handleLost(lost Node) {
	k := r.cfg.Keys
	field := strconv.Itoa(lost.ID) + ":" + strconv.FormatInt(lost.Gen, 10)
	lock := k.lostLockPrefix() + field
	var err error
	if r.cfg.OnNodeLost != nil {
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.LostLease*4/5)
		err = r.cfg.OnNodeLost(ctx, lost)
		cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Heartbeat)
	defer cancel()
	if err != nil {
		r.log.Warn("cleanup of a lost node failed; another sweep takes it on again", "id", lost.ID, "address", lost.Address, "err", err)
		_ = lostRetryScript.Exec(ctx, r.cfg.Client, []string{lock}, []string{r.token}).Error()
		return
	}
	r.lostHandled.Add(1)
	r.log.Info("lost node handled", "id", lost.ID, "gen", lost.Gen, "address", lost.Address)
	if err := lostDoneScript.Exec(ctx, r.cfg.Client, []string{k.Lost(), lock, k.deadPrefix() + field},
		[]string{field, r.token, strconv.FormatInt(deadMarkTTL.Milliseconds(), 10)}).Error(); err != nil {
		r.log.Warn("registry: could not mark a lost node done", "id", lost.ID, "err", err)
	}
}

// List returns every node in the registry, live or expired but not yet
// taken for lost, in id order.
func (r *Registry) List(ctx context.Context) ([]Node, error) {
	return ListNodes(ctx, r.cfg.Client, r.cfg.Keys)
}

// ListNodes is Registry.List for a caller without a registry.
func ListNodes(ctx context.Context, c rueidis.Client, k Keys) ([]Node, error) {
	vals, err := listScript.Exec(ctx, c, []string{k.Nodes()}, []string{k.claimPrefix()}).ToArray()
	if err != nil && !rueidis.IsRedisNil(err) {
		return nil, fmt.Errorf("cluster: list nodes: %w", err)
	}
	var nodes []Node
	for i := 0; i+1 < len(vals); i += 2 {
		body, _ := vals[i].ToString()
		pttl, _ := vals[i+1].AsInt64()
		var n Node
		if err := json.Unmarshal([]byte(body), &n); err != nil {
			return nil, fmt.Errorf("cluster: list nodes: a record does not decode: %w", err)
		}
		if pttl < 0 {
			n.Expired = true
			pttl = 0
		}
		n.HeartbeatAge = time.Duration(n.TTLMillis-pttl) * time.Millisecond
		nodes = append(nodes, n)
	}
	sortNodes(nodes)
	return nodes, nil
}

func sortNodes(n []Node) {
	for i := 1; i < len(n); i++ {
		for j := i; j > 0 && n[j].ID < n[j-1].ID; j-- {
			n[j], n[j-1] = n[j-1], n[j]
		}
	}
}

// RegistryStats counts the registry's work.
type RegistryStats struct {
	Renewals    uint64 `json:"renewals"`
	RenewErrors uint64 `json:"renew_errors"`
	Sweeps      uint64 `json:"sweeps"`
	LostHandled uint64 `json:"lost_handled"`
}

// Stats returns the registry's counters.
func (r *Registry) Stats() RegistryStats {
	return RegistryStats{Renewals: r.renewals.Load(), RenewErrors: r.renewErrors.Load(), Sweeps: r.sweeps.Load(), LostHandled: r.lostHandled.Load()}
}

// halt stops the goroutines without releasing the id: what a killed
// process leaves behind.
func (r *Registry) halt() {
	r.stopOnce.Do(func() { close(r.stop) })
	r.wg.Wait()
}

// Close stops the heartbeat and the sweeper and releases the id (unless
// it was lost), so that no survivor takes this node for lost. It waits for
// an OnNodeLost in progress.
func (r *Registry) Close(ctx context.Context) error {
	r.halt()
	if r.lost.Load() {
		return nil
	}
	k, id := r.cfg.Keys, strconv.Itoa(r.self.ID)
	if err := releaseScript.Exec(ctx, r.cfg.Client, []string{k.Claim(r.self.ID), k.Nodes()},
		[]string{strconv.FormatInt(r.self.Gen, 10), id}).Error(); err != nil {
		return fmt.Errorf("cluster: release node id %d: %w", r.self.ID, err)
	}
	r.log.Info("node id released", "id", r.self.ID)
	return nil
}
