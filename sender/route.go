package sender

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/wsbridge/wsbridge/bridge"
)

// Remote carries calls to the other nodes of a cluster (cluster.Router).
// The Service routes through it: a call for an fd of another node goes to
// that node only, a call for a group, a user or everyone to the nodes that
// hold them; the node runs its own part with Serve. A caller never knows
// whether an fd is local.
type Remote interface {
	// Call runs method with args on node and decodes the node's answer
	// into reply. With ack false it returns once the node's channel took
	// the call, without waiting for the answer (reply is left as it is).
	// An unreachable node or one that does not answer in time is an
	// *Error with CodeNodeUnreachable; the node's own refusal is its
	// *Error.
	Call(node int, method string, args, reply any, ack bool) error
	// Fanout runs method with args on the other nodes in scope and calls
	// each with a decoder of every answer that arrives in time. It returns
	// how many nodes in scope did not answer in time.
	Fanout(scope Scope, method string, args any, each func(decode func(reply any) error) error) (unanswered int, err error)
	// Subscribed returns nil when a push to scope (a group or a user) from
	// any node reaches this node's members of it. Otherwise (this node's
	// first member joined, its subscription is under way) it returns a
	// channel closed once it does, or after a bound of the Remote's.
	Subscribed(scope Scope) <-chan struct{}
}

// Settling is what Serve returns for a call whose effect reaches the other
// nodes after it ran here: a Join or Bind that made this node a group's or
// user's first member. The Remote answers Result once Done is closed, so
// that a group or user push that follows the answer reaches the member.
type Settling struct {
	Result any
	Done   <-chan struct{}
}

// subscribed is the Remote's Subscribed, nil without a Remote.
func (s *Service) subscribed(kind ScopeKind, name string) <-chan struct{} {
	if s.remote == nil {
		return nil
	}
	return s.remote.Subscribed(Scope{Kind: kind, Name: name})
}

// settled makes the handler of a routed Join or Bind: its reply is
// Settling until its change reached the other nodes.
func settled[A any](f func(*Service, *A) (bool, <-chan struct{}, error)) func(*Service, *A) (any, error) {
	return func(s *Service, in *A) (any, error) {
		ok, done, err := f(s, in)
		if done == nil {
			return ok, err
		}
		return Settling{Result: ok, Done: done}, err
	}
}

// waited runs a Join or Bind on this node for a caller of this node: it
// returns once the change reached the other nodes.
func waited(ok bool, done <-chan struct{}, err error) (bool, error) {
	if done != nil {
		<-done
	}
	return ok, err
}

// Scope names the nodes a Fanout reaches: those with members of a group,
// those with connections of a user, or every node.
type Scope struct {
	Kind ScopeKind
	Name string // the group or user; "" for ScopeAll
}

// ScopeKind is the kind of a Scope.
type ScopeKind uint8

// The kinds of Scope.
const (
	ScopeAll ScopeKind = iota
	ScopeGroup
	ScopeUser
)

// UseRemote makes the Service route calls for other nodes through r. Call
// it before the Service serves.
func (s *Service) UseRemote(r Remote) { s.remote = r }

// NodeID is the id of this Service's node.
func (s *Service) NodeID() int { return s.node }

// remoteNode returns fd's node when it is another node's and a Remote is
// set.
func (s *Service) remoteNode(fd int64) (int, bool) {
	if s.remote == nil || !bridge.ValidFD(fd) {
		return 0, false
	}
	n := bridge.NodeOf(fd)
	return n, n != s.node
}

// call runs method on node through the Remote and decodes its reply; the
// caller has checked what it can check here, the node checks it all again.
func call[R any](s *Service, node int, method string, args any, ack bool) (R, error) {
	var reply R
	err := s.remote.Call(node, method, args, &reply, ack)
	return reply, ToError(err)
}

// Push sends one message (or fragment) to fd: false (no error) when the fd
// is not an open connection or its queue is full.
func (s *Service) Push(in *PushArgs) (bool, error) {
	node, remote := s.remoteNode(in.FD)
	if !remote {
		return s.localPush(in)
	}
	data, op, err := in.message()
	if err == nil {
		err = ToError(s.hub.CheckPush(in.FD, data, op, in.Finish == nil || *in.Finish))
	}
	if err != nil {
		return false, err
	}
	ack := in.Ack == nil || *in.Ack
	ok, err := call[bool](s, node, "Push", in, ack)
	if err == nil && !ack {
		return true, nil // the node's channel took it
	}
	return ok, err
}

// PushBatch sends many messages, one result per message. The whole batch is
// checked first: a malformed message fails the call and sends nothing. What
// depends on a connection's state (text that is not UTF-8 where no
// fragmented message is open) fails the call at that message, after the
// ones before it were sent. In a cluster the messages go in their order, a
// run of consecutive messages for one node at a time (one call to that
// node), so that this holds across nodes too: a failure at a message,
// node_unreachable included, leaves exactly the ones before it sent.
func (s *Service) PushBatch(in *PushBatchArgs) ([]bool, error) {
	if s.remote == nil {
		return s.localPushBatch(in)
	}
	if len(in.Messages) > MaxBatch {
		return nil, BadRequest(fmt.Sprintf("batch of %d messages, the limit is %d", len(in.Messages), MaxBatch))
	}
	nodes := make([]int, len(in.Messages))
	for i := range in.Messages {
		m := &in.Messages[i]
		data, op, err := m.message()
		if err == nil {
			err = ToError(s.hub.CheckPush(m.FD, data, op, m.Finish == nil || *m.Finish))
		}
		if err != nil {
			return nil, atMessage(i, err)
		}
		nodes[i] = s.node
		if n, remote := s.remoteNode(m.FD); remote {
			nodes[i] = n
		}
	}
	res := make([]bool, len(in.Messages))
	for start := 0; start < len(in.Messages); {
		end := start + 1
		for end < len(in.Messages) && nodes[end] == nodes[start] {
			end++
		}
		run := &PushBatchArgs{Messages: in.Messages[start:end]}
		var got []bool
		var err error
		if nodes[start] == s.node {
			got, err = s.localPushBatch(run)
		} else {
			got, err = call[[]bool](s, nodes[start], "PushBatch", run, true)
			if err == nil && len(got) != end-start {
				err = &Error{Code: CodeInternal, Message: fmt.Sprintf("node %d answered %d results for %d messages", nodes[start], len(got), end-start)}
			}
		}
		if err != nil {
			// Name the message by its place in the whole batch.
			e := err.(*Error)
			at, msg := 0, e.Message
			if j, rest, ok := messageIndex(msg); ok && j < end-start {
				at, msg = j, rest
			}
			return nil, atMessage(start+at, &Error{Code: e.Code, Message: msg})
		}
		copy(res[start:end], got)
		start = end
	}
	return res, nil
}

// messageIndex reads the "message <i>: " that atMessage puts before an
// error's message.
func messageIndex(msg string) (int, string, bool) {
	rest, ok := strings.CutPrefix(msg, "message ")
	if !ok {
		return 0, "", false
	}
	num, rest, ok := strings.Cut(rest, ": ")
	i, err := strconv.Atoi(num)
	if !ok || err != nil || i < 0 {
		return 0, "", false
	}
	return i, rest, true
}

// PushMany sends the same message to each fd and counts the fds that
// accepted it; the fds of each other node go to it in one call.
func (s *Service) PushMany(in *PushManyArgs) (int, int, error) {
	if s.remote == nil {
		n, err := s.localPushMany(in)
		return n, 0, err
	}
	if err := checkList("fds", in.FDs); err != nil {
		return 0, 0, err
	}
	if _, _, err := in.message(); err != nil {
		return 0, 0, err
	}
	byNode := map[int][]int64{}
	for _, fd := range in.FDs {
		node := s.node
		if n, remote := s.remoteNode(fd); remote {
			node = n
		}
		byNode[node] = append(byNode[node], fd)
	}
	var (
		mu                sync.Mutex
		total, unanswered int
		firstErr          error
		wg                sync.WaitGroup
	)
	for node, fds := range byNode {
		args := &PushManyArgs{FDs: fds, Message: in.Message}
		run := func() {
			var n int
			var err error
			if node == s.node {
				n, err = s.localPushMany(args)
			} else {
				n, err = call[int](s, node, "PushMany", args, true)
			}
			mu.Lock()
			defer mu.Unlock()
			var e *Error
			switch {
			case err == nil:
				total += n
			case errors.As(err, &e) && e.Code == CodeNodeUnreachable:
				unanswered++
			case firstErr == nil:
				firstErr = err
			}
		}
		wg.Go(run)
	}
	wg.Wait()
	return total, unanswered, firstErr
}

// fanout runs the local part of a call that spans the nodes in scope and,
// with a Remote, the other nodes' parts; add receives every part's answer.
func fanout[R any](s *Service, scope Scope, method string, args any, local func() (R, error), add func(R)) (int, error) {
	mine, err := local()
	if err != nil {
		return 0, err
	}
	add(mine)
	if s.remote == nil {
		return 0, nil
	}
	var mu sync.Mutex
	unanswered, err := s.remote.Fanout(scope, method, args, func(decode func(any) error) error {
		var r R
		if err := decode(&r); err != nil {
			return err
		}
		mu.Lock()
		add(r)
		mu.Unlock()
		return nil
	})
	return unanswered, ToError(err)
}

// count is fanout for the pushes that answer how many connections
// accepted the message.
func count(s *Service, scope Scope, method string, args any, local func() (int, error)) (int, int, error) {
	total := 0
	unanswered, err := fanout(s, scope, method, args, local, func(n int) { total += n })
	return total, unanswered, err
}

// Broadcast sends a message to every connection of the cluster but the
// except list; it returns how many accepted it and how many nodes did not
// answer in time.
func (s *Service) Broadcast(in *BroadcastArgs) (int, int, error) {
	return count(s, Scope{Kind: ScopeAll}, "Broadcast", in, func() (int, error) { return s.localBroadcast(in) })
}

// PushGroup sends a message to a group's members on every node but the
// except list.
func (s *Service) PushGroup(in *PushGroupArgs) (int, int, error) {
	return count(s, Scope{Kind: ScopeGroup, Name: in.Group}, "PushGroup", in, func() (int, error) { return s.localPushGroup(in) })
}

// PushUser sends a message to every fd bound to a user on every node.
func (s *Service) PushUser(in *PushUserArgs) (int, int, error) {
	return count(s, Scope{Kind: ScopeUser, Name: in.User}, "PushUser", in, func() (int, error) { return s.localPushUser(in) })
}

// fdList is fanout for the listings of fds: sorted, never nil.
func fdList(s *Service, scope Scope, method string, args any, local []int64) ([]int64, int, error) {
	all := local
	unanswered, err := fanout(s, scope, method, args, func() ([]int64, error) { return nil, nil }, func(fds []int64) { all = append(all, fds...) })
	if len(all) != len(local) {
		all = slices.Clone(all)
		slices.Sort(all)
		all = slices.Compact(all)
	}
	return nonNil(all), unanswered, err
}

// GroupMembers lists a group's fds on every node, sorted (never nil).
func (s *Service) GroupMembers(group string) ([]int64, int, error) {
	return fdList(s, Scope{Kind: ScopeGroup, Name: group}, "GroupMembers", &GroupNameArgs{Group: group}, s.localGroupMembers(group))
}

// UserFDs lists the fds bound to a user on every node, sorted (never nil).
func (s *Service) UserFDs(user string) ([]int64, int, error) {
	return fdList(s, Scope{Kind: ScopeUser, Name: user}, "UserFds", &UserArgs{User: user}, s.localUserFDs(user))
}

// Groups lists every group of the cluster with its member count.
func (s *Service) Groups() (map[string]int, int, error) {
	all := s.localGroups()
	if all == nil {
		all = map[string]int{}
	}
	unanswered, err := fanout(s, Scope{Kind: ScopeAll}, "Groups", &Empty{}, func() (map[string]int, error) { return nil, nil }, func(m map[string]int) {
		for g, n := range m {
			all[g] += n
		}
	})
	return all, unanswered, err
}

// Disconnect closes fd with code (default 1000) and reason: false when fd
// is not open.
func (s *Service) Disconnect(in *DisconnectArgs) (bool, error) {
	if node, remote := s.remoteNode(in.FD); remote {
		return call[bool](s, node, "Disconnect", in, true)
	}
	return s.localDisconnect(in)
}

// Check tells whether fd is an open connection. Any fd is a valid question.
func (s *Service) Check(fd int64) (bool, error) {
	if node, remote := s.remoteNode(fd); remote {
		return call[bool](s, node, "Check", &FDArgs{FD: fd}, true)
	}
	return s.localCheck(fd), nil
}

// Info describes fd's connection; Connected is false when it is not open.
func (s *Service) Info(fd int64) (Info, error) {
	if node, remote := s.remoteNode(fd); remote {
		return call[Info](s, node, "Info", &FDArgs{FD: fd}, true)
	}
	return s.localInfo(fd), nil
}

// Join adds fd to a group.
func (s *Service) Join(in *GroupArgs) (bool, error) {
	if node, remote := s.remoteNode(in.FD); remote {
		return call[bool](s, node, "Join", in, true)
	}
	return waited(s.localJoin(in))
}

// Leave removes fd from a group; false when it was not a member.
func (s *Service) Leave(in *GroupArgs) (bool, error) {
	if node, remote := s.remoteNode(in.FD); remote {
		return call[bool](s, node, "Leave", in, true)
	}
	return s.localLeave(in)
}

// GroupsOf lists fd's groups, sorted (empty when fd is not open).
func (s *Service) GroupsOf(fd int64) ([]string, error) {
	if node, remote := s.remoteNode(fd); remote {
		groups, err := call[[]string](s, node, "GroupsOf", &FDArgs{FD: fd}, true)
		return nonNil(groups), err
	}
	return s.localGroupsOf(fd), nil
}

// Bind binds fd to a user id.
func (s *Service) Bind(in *BindArgs) (bool, error) {
	if node, remote := s.remoteNode(in.FD); remote {
		return call[bool](s, node, "Bind", in, true)
	}
	return waited(s.localBind(in))
}

// Unbind removes fd's user binding; false when it had none.
func (s *Service) Unbind(fd int64) (bool, error) {
	if node, remote := s.remoteNode(fd); remote {
		return call[bool](s, node, "Unbind", &FDArgs{FD: fd}, true)
	}
	return s.localUnbind(fd)
}

// handler runs this node's part of a routed call.
type handler func(s *Service, decode func(any) error) (any, error)

// serve makes the handler of a method with arguments A.
func serve[A any, R any](f func(s *Service, in *A) (R, error)) handler {
	return func(s *Service, decode func(any) error) (any, error) {
		in := new(A)
		if err := decode(in); err != nil {
			return nil, BadRequest("cannot decode the arguments: " + err.Error())
		}
		return f(s, in)
	}
}

func noErr[A any, R any](f func(s *Service, in *A) R) func(*Service, *A) (R, error) {
	return func(s *Service, in *A) (R, error) { return f(s, in), nil }
}

var handlers = map[string]handler{
	"Push":         serve((*Service).localPush),
	"PushBatch":    serve((*Service).localPushBatch),
	"PushMany":     serve((*Service).localPushMany),
	"Broadcast":    serve((*Service).localBroadcast),
	"PushGroup":    serve((*Service).localPushGroup),
	"PushUser":     serve((*Service).localPushUser),
	"Disconnect":   serve((*Service).localDisconnect),
	"Join":         serve(settled((*Service).localJoin)),
	"Leave":        serve((*Service).localLeave),
	"Bind":         serve(settled((*Service).localBind)),
	"Check":        serve(noErr(func(s *Service, in *FDArgs) bool { return s.localCheck(in.FD) })),
	"Info":         serve(noErr(func(s *Service, in *FDArgs) Info { return s.localInfo(in.FD) })),
	"GroupsOf":     serve(noErr(func(s *Service, in *FDArgs) []string { return s.localGroupsOf(in.FD) })),
	"Unbind":       serve(func(s *Service, in *FDArgs) (bool, error) { return s.localUnbind(in.FD) }),
	"GroupMembers": serve(noErr(func(s *Service, in *GroupNameArgs) []int64 { return s.localGroupMembers(in.Group) })),
	"UserFds":      serve(noErr(func(s *Service, in *UserArgs) []int64 { return s.localUserFDs(in.User) })),
	"Groups":       serve(noErr(func(s *Service, _ *Empty) map[string]int { return s.localGroups() })),
}

// Serve runs this node's part of a call another node routed here: method
// is a Sender method's name without "Sender." ("Push"), decode fills its
// arguments. The reply is what to send back; an error is an *Error.
func (s *Service) Serve(method string, decode func(args any) error) (any, error) {
	h, ok := handlers[method]
	if !ok {
		return nil, BadRequest(fmt.Sprintf("unknown method %q", method))
	}
	return h(s, decode)
}
