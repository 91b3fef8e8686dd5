package bridge

import (
	"hash/fnv"
	"slices"
	"sync"
)

// numIndexShards spreads groups and users over this many locks, so joins
// and group pushes on different names rarely contend.
const numIndexShards = 64

// index maps names (groups, user ids) to the connections filed under them.
// Its shard locks are leaves: nothing else is locked while one is held.
type index struct {
	shards [numIndexShards]indexShard
	// changed, when set, is told of a name that gained its first
	// connection or lost its last (Config.OnIndexChange), after the
	// shard's lock is released.
	changed func(name string)
}

type indexShard struct {
	mu sync.RWMutex
	m  map[string]map[int64]*conn
}

func newIndex() *index {
	ix := &index{}
	for i := range ix.shards {
		ix.shards[i].m = make(map[string]map[int64]*conn)
	}
	return ix
}

func (ix *index) shard(name string) *indexShard {
	h := fnv.New64a()
	h.Write([]byte(name))
	return &ix.shards[h.Sum64()%numIndexShards]
}

func (ix *index) add(name string, c *conn) {
	s := ix.shard(name)
	s.mu.Lock()
	set := s.m[name]
	created := set == nil
	if created {
		set = make(map[int64]*conn)
		s.m[name] = set
	}
	set[c.fd] = c
	s.mu.Unlock()
	if created && ix.changed != nil {
		ix.changed(name)
	}
}

func (ix *index) remove(name string, fd int64) {
	s := ix.shard(name)
	s.mu.Lock()
	deleted := false
	if set := s.m[name]; set != nil {
		delete(set, fd)
		if len(set) == 0 {
			delete(s.m, name)
			deleted = true
		}
	}
	s.mu.Unlock()
	if deleted && ix.changed != nil {
		ix.changed(name)
	}
}

// has reports whether name has connections.
func (ix *index) has(name string) bool {
	s := ix.shard(name)
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.m[name]) > 0
}

// members appends the connections filed under name to dst.
func (ix *index) members(name string, dst []*conn) []*conn {
	s := ix.shard(name)
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, c := range s.m[name] {
		dst = append(dst, c)
	}
	return dst
}

// fds returns the sorted fds filed under name.
func (ix *index) fds(name string) []int64 {
	s := ix.shard(name)
	s.mu.RLock()
	out := make([]int64, 0, len(s.m[name]))
	for fd := range s.m[name] {
		out = append(out, fd)
	}
	s.mu.RUnlock()
	slices.Sort(out)
	return out
}

// counts returns every name with its number of connections.
func (ix *index) counts() map[string]int {
	out := map[string]int{}
	for i := range ix.shards {
		s := &ix.shards[i]
		s.mu.RLock()
		for name, set := range s.m {
			out[name] = len(set)
		}
		s.mu.RUnlock()
	}
	return out
}
