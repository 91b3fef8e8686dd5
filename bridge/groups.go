package bridge

import (
	"fmt"
	"slices"
	"unicode/utf8"
)

// MaxNameLength bounds group names and user ids, in bytes.
const MaxNameLength = 256

func checkName(kind, name string) error {
	if name == "" || len(name) > MaxNameLength || !utf8.ValidString(name) {
		return fmt.Errorf("%w: a %s is 1..%d bytes of UTF-8", ErrInvalidName, kind, MaxNameLength)
	}
	return nil
}

// indexed runs f with fd's connection while it is open, holding the lock
// that orders its joins, leaves, binds and final cleanup.
func (h *Hub) indexed(fd int64, f func(c *conn) error) error {
	if !ValidFD(fd) {
		return fmt.Errorf("fd %d: %w", fd, ErrInvalidFD)
	}
	c := h.lookup(fd)
	if c == nil {
		return fmt.Errorf("fd %d: %w", fd, ErrUnknownFD)
	}
	c.idxMu.Lock()
	defer c.idxMu.Unlock()
	if c.unindexed || !c.isOpen() {
		return fmt.Errorf("fd %d: %w", fd, ErrUnknownFD)
	}
	return f(c)
}

// Join adds fd to group. Joining a group twice is not an error.
func (h *Hub) Join(fd int64, group string) error {
	if err := checkName("group", group); err != nil {
		return err
	}
	return h.indexed(fd, func(c *conn) error {
		if _, ok := c.groups[group]; ok {
			return nil
		}
		if len(c.groups) >= h.cfg.MaxGroupsPerConn {
			return fmt.Errorf("fd %d: %w (%d)", fd, ErrTooManyGroups, h.cfg.MaxGroupsPerConn)
		}
		if c.groups == nil {
			c.groups = make(map[string]struct{})
		}
		c.groups[group] = struct{}{}
		h.groups.add(group, c)
		return nil
	})
}

// Leave removes fd from group and reports whether it was a member.
func (h *Hub) Leave(fd int64, group string) (bool, error) {
	if err := checkName("group", group); err != nil {
		return false, err
	}
	was := false
	err := h.indexed(fd, func(c *conn) error {
		if _, was = c.groups[group]; was {
			delete(c.groups, group)
			h.groups.remove(group, fd)
		}
		return nil
	})
	return was, err
}

// Bind files fd under user (replacing an earlier binding of this fd). A user
// may have many fds.
func (h *Hub) Bind(fd int64, user string) error {
	if err := checkName("user id", user); err != nil {
		return err
	}
	return h.indexed(fd, func(c *conn) error {
		if c.user == user {
			return nil
		}
		if c.user != "" {
			h.users.remove(c.user, fd)
		}
		c.user = user
		h.users.add(user, c)
		return nil
	})
}

// Unbind removes fd's user binding and reports whether it had one.
func (h *Hub) Unbind(fd int64) (bool, error) {
	was := false
	err := h.indexed(fd, func(c *conn) error {
		if was = c.user != ""; was {
			h.users.remove(c.user, fd)
			c.user = ""
		}
		return nil
	})
	return was, err
}

// unindex removes a closed connection from every group and its user; after
// it, no join or bind can file the connection again.
func (c *conn) unindex() {
	c.idxMu.Lock()
	defer c.idxMu.Unlock()
	c.unindexed = true
	for g := range c.groups {
		c.hub.groups.remove(g, c.fd)
	}
	if c.user != "" {
		c.hub.users.remove(c.user, c.fd)
	}
	c.groups, c.user = nil, ""
}

// GroupMembers returns the fds in group, sorted.
func (h *Hub) GroupMembers(group string) []int64 { return h.groups.fds(group) }

// HasGroup reports whether group has members on this node.
func (h *Hub) HasGroup(group string) bool { return h.groups.has(group) }

// HasUser reports whether user has connections on this node.
func (h *Hub) HasUser(user string) bool { return h.users.has(user) }

// Groups returns every group with its number of members.
func (h *Hub) Groups() map[string]int { return h.groups.counts() }

// UserFDs returns the fds bound to user, sorted.
func (h *Hub) UserFDs(user string) []int64 { return h.users.fds(user) }

// GroupsOf returns fd's groups, sorted, and whether fd is open.
func (h *Hub) GroupsOf(fd int64) ([]string, bool) {
	var out []string
	err := h.indexed(fd, func(c *conn) error {
		out = c.groupList()
		return nil
	})
	return out, err == nil
}

func (c *conn) groupList() []string {
	out := make([]string, 0, len(c.groups))
	for g := range c.groups {
		out = append(out, g)
	}
	slices.Sort(out)
	return out
}

// PushGroup sends data to every member of group except the fds in except,
// encoding the frame once, and returns how many connections accepted it.
func (h *Hub) PushGroup(group string, data []byte, op Opcode, except []int64) (int, error) {
	if err := checkName("group", group); err != nil {
		return 0, err
	}
	it, err := h.prepare(data, op)
	if err != nil {
		return 0, fmt.Errorf("push to group %q: %w", group, err)
	}
	return h.deliver(h.groups.members(group, nil), it, newFDSet(except)), nil
}

// PushUser sends data to every fd bound to user and returns how many
// connections accepted it.
func (h *Hub) PushUser(user string, data []byte, op Opcode) (int, error) {
	if err := checkName("user id", user); err != nil {
		return 0, err
	}
	it, err := h.prepare(data, op)
	if err != nil {
		return 0, fmt.Errorf("push to user %q: %w", user, err)
	}
	return h.deliver(h.users.members(user, nil), it, fdSet{}), nil
}

// PushMany sends the same data to each of fds, encoding the frame once, and
// returns how many connections accepted it. fds that are unknown, closed or
// invalid are counted out, not errors. (Grouping its fds by worker as
// PushBatch does, batch.go, was measured and not kept: docs/BENCHMARKS.md.)
func (h *Hub) PushMany(fds []int64, data []byte, op Opcode) (int, error) {
	it, err := h.prepare(data, op)
	if err != nil {
		return 0, fmt.Errorf("push to many: %w", err)
	}
	conns := make([]*conn, 0, len(fds))
	for _, fd := range fds {
		if ValidFD(fd) {
			if c := h.lookup(fd); c != nil {
				conns = append(conns, c)
				continue
			}
		}
		h.notOpen.Add(1)
	}
	return h.deliver(conns, it, fdSet{}), nil
}
