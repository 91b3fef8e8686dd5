package sender

import (
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/wsbridge/wsbridge/bridge"
)

// MaxBatch bounds the items of one Sender.PushBatch and the fds of one
// Sender.PushMany or except list.
const MaxBatch = 10000

// Service is the Sender API: what the Sender methods do, whatever carries
// them. The RPC server (rpc/) and the admin HTTP API (admin/) are thin
// transports over it, so that both check, limit and answer every request
// alike (docs/PROTOCOL.md, "Methods"). Every error it returns is an *Error
// with a stable code.
type Service struct {
	hub    *bridge.Hub
	node   int    // this node's id, the high bits of its fds
	remote Remote // the other nodes; nil: standalone
}

// NewService returns the Service of hub, standalone until UseRemote.
func NewService(hub *bridge.Hub) *Service { return &Service{hub: hub, node: hub.Config().NodeID} }

// message decodes a Message's data and opcode.
func (m *Message) message() ([]byte, bridge.Opcode, error) {
	op := bridge.OpText
	if m.Opcode != nil && *m.Opcode != 0 {
		// 0 means text too: while a fragmented message is open every
		// data push continues it, whatever opcode it names.
		op = bridge.Opcode(*m.Opcode)
	}
	switch m.Encoding {
	case "":
		return []byte(m.Data), op, nil
	case "base64":
		data, err := base64.StdEncoding.DecodeString(m.Data)
		if err != nil {
			return nil, 0, BadRequest("data is not valid base64: " + err.Error())
		}
		return data, op, nil
	}
	return nil, 0, BadRequest(fmt.Sprintf("unknown encoding %q (want \"\" or \"base64\")", m.Encoding))
}

func checkList(name string, fds []int64) error {
	if len(fds) > MaxBatch {
		return BadRequest(fmt.Sprintf("%s has %d fds, the limit is %d", name, len(fds), MaxBatch))
	}
	return nil
}

// Push sends one message (or fragment) to fd: false (no error) when the fd
// is not an open connection or its queue is full.
func (s *Service) localPush(in *PushArgs) (bool, error) {
	data, op, err := in.message()
	if err != nil {
		return false, err
	}
	finish := in.Finish == nil || *in.Finish
	err = s.hub.Push(in.FD, data, op, finish)
	if bridge.IsNotDelivered(err) {
		return false, nil
	}
	return err == nil, ToError(err)
}

// PushBatch sends many messages, one result per message. The whole batch is
// checked first: a malformed message fails the call and sends nothing. What
// depends on a connection's state (text that is not UTF-8 where no
// fragmented message is open) fails the call at that message, after the
// ones before it were sent.
func (s *Service) localPushBatch(in *PushBatchArgs) ([]bool, error) {
	if len(in.Messages) > MaxBatch {
		return nil, BadRequest(fmt.Sprintf("batch of %d messages, the limit is %d", len(in.Messages), MaxBatch))
	}
	msgs := make([]bridge.BatchMessage, len(in.Messages))
	for i := range in.Messages {
		m := &in.Messages[i]
		data, op, err := m.message()
		if err == nil {
			msgs[i] = bridge.BatchMessage{FD: m.FD, Data: data, Op: op, Finish: m.Finish == nil || *m.Finish}
			err = ToError(s.hub.CheckPush(m.FD, data, op, msgs[i].Finish))
		}
		if err != nil {
			return nil, atMessage(i, err)
		}
	}
	res := make([]bool, len(msgs))
	if i, err := s.hub.PushBatch(msgs, res); err != nil {
		return nil, atMessage(i, ToError(err))
	}
	return res, nil
}

// atMessage names the batch message an Error is about, keeping its code.
func atMessage(i int, err error) error {
	e := err.(*Error)
	return &Error{Code: e.Code, Message: fmt.Sprintf("message %d: %s", i, e.Message)}
}

// counted answers a push to many connections: during the hub's shutdown
// (bridge.ErrHubClosed) nothing is delivered and the answer is 0, as a
// push to one fd answers false then, not an error: applications push from
// their close handlers while a deploy drains the connections. Invalid
// input is still an error; the hub checks it first.
func counted(n int, err error) (int, error) {
	if errors.Is(err, bridge.ErrHubClosed) {
		return 0, nil
	}
	return n, ToError(err)
}

// PushMany sends the same message to each fd and counts the fds that
// accepted it.
func (s *Service) localPushMany(in *PushManyArgs) (int, error) {
	if err := checkList("fds", in.FDs); err != nil {
		return 0, err
	}
	data, op, err := in.message()
	if err != nil {
		return 0, err
	}
	return counted(s.hub.PushMany(in.FDs, data, op))
}

// Broadcast sends a message to every connection but the except list.
func (s *Service) localBroadcast(in *BroadcastArgs) (int, error) {
	if err := checkList("except", in.Except); err != nil {
		return 0, err
	}
	data, op, err := in.message()
	if err != nil {
		return 0, err
	}
	return counted(s.hub.Broadcast(data, op, in.Except))
}

// Disconnect closes fd with code (default 1000) and reason: false when fd
// is not open.
func (s *Service) localDisconnect(in *DisconnectArgs) (bool, error) {
	err := s.hub.Disconnect(in.FD, in.Code, in.Reason)
	if bridge.IsNotDelivered(err) {
		return false, nil
	}
	return err == nil, ToError(err)
}

// Check tells whether fd is an open connection. Any fd is a valid question.
func (s *Service) localCheck(fd int64) bool { return s.hub.Check(fd) }

// groupOp answers a join/leave/bind style call: false when fd is not open.
func groupOp(err error, ok bool) (bool, error) {
	if bridge.IsNotDelivered(err) {
		return false, nil
	}
	return err == nil && ok, ToError(err)
}

// Join adds fd to a group. done, when not nil, is closed once a group
// push from any node reaches fd (Remote.Subscribed).
func (s *Service) localJoin(in *GroupArgs) (ok bool, done <-chan struct{}, err error) {
	if ok, err = groupOp(s.hub.Join(in.FD, in.Group), true); ok {
		done = s.subscribed(ScopeGroup, in.Group)
	}
	return ok, done, err
}

// Leave removes fd from a group; false when it was not a member.
func (s *Service) localLeave(in *GroupArgs) (bool, error) {
	was, err := s.hub.Leave(in.FD, in.Group)
	return groupOp(err, was)
}

// PushGroup sends a message to a group's members but the except list.
func (s *Service) localPushGroup(in *PushGroupArgs) (int, error) {
	if err := checkList("except", in.Except); err != nil {
		return 0, err
	}
	data, op, err := in.message()
	if err != nil {
		return 0, err
	}
	return counted(s.hub.PushGroup(in.Group, data, op, in.Except))
}

// GroupMembers lists a group's fds, sorted (never nil).
func (s *Service) localGroupMembers(group string) []int64 { return nonNil(s.hub.GroupMembers(group)) }

// GroupsOf lists fd's groups, sorted (empty when fd is not open).
func (s *Service) localGroupsOf(fd int64) []string {
	groups, _ := s.hub.GroupsOf(fd)
	return nonNil(groups)
}

// Groups lists every group with its member count.
func (s *Service) localGroups() map[string]int { return s.hub.Groups() }

// Bind binds fd to a user id. done, when not nil, is closed once a user
// push from any node reaches fd (Remote.Subscribed).
func (s *Service) localBind(in *BindArgs) (ok bool, done <-chan struct{}, err error) {
	if ok, err = groupOp(s.hub.Bind(in.FD, in.User), true); ok {
		done = s.subscribed(ScopeUser, in.User)
	}
	return ok, done, err
}

// Unbind removes fd's user binding; false when it had none.
func (s *Service) localUnbind(fd int64) (bool, error) {
	was, err := s.hub.Unbind(fd)
	return groupOp(err, was)
}

// PushUser sends a message to every fd bound to a user.
func (s *Service) localPushUser(in *PushUserArgs) (int, error) {
	data, op, err := in.message()
	if err != nil {
		return 0, err
	}
	return counted(s.hub.PushUser(in.User, data, op))
}

// UserFDs lists the fds bound to a user, sorted (never nil).
func (s *Service) localUserFDs(user string) []int64 { return nonNil(s.hub.UserFDs(user)) }

// Info describes fd's connection; Connected is false when it is not open.
func (s *Service) localInfo(fd int64) Info {
	info, ok := s.hub.Info(fd)
	if !ok {
		return Info{Connection: Connection{FD: fd, Groups: []string{}}, Query: map[string][]string{}, Headers: map[string][]string{}}
	}
	return Info{
		Connected: true,
		Connection: Connection{
			FD:          info.FD,
			RemoteAddr:  info.RemoteAddr,
			Path:        info.Path,
			Subprotocol: info.Subprotocol,
			ConnectedAt: info.ConnectedAt.Unix(),
			Worker:      info.Worker,
			Groups:      nonNil(info.Groups),
			User:        info.User,
		},
		Query:   info.Query,
		Headers: info.Header,
	}
}

// List is Sender.Connections: a page of this node's connections, the
// arguments checked.
func (s *Service) List(in *ListArgs) (ConnectionList, error) {
	q := ListQuery{After: in.After, Limit: in.Limit, Group: in.Group, User: in.User, ByGroup: in.Group != "", ByUser: in.User != ""}
	switch {
	case q.Limit == 0:
		q.Limit = DefaultPageLimit
	case q.Limit < 0 || q.Limit > MaxPageLimit:
		return ConnectionList{}, BadRequest(fmt.Sprintf("limit %d: want 1..%d", q.Limit, MaxPageLimit))
	}
	if q.After < 0 || q.After > bridge.MaxFD {
		return ConnectionList{}, BadRequest(fmt.Sprintf("after %d: want an fd, or 0 for the start", q.After))
	}
	for _, name := range []string{in.Group, in.User} {
		if len(name) > bridge.MaxNameLength || !utf8.ValidString(name) {
			return ConnectionList{}, &Error{Code: CodeInvalidName, Message: fmt.Sprintf("a group or user is 1..%d bytes of UTF-8", bridge.MaxNameLength)}
		}
	}
	return s.Connections(q), nil
}

// Connections lists a page of the open connections, in fd order.
func (s *Service) Connections(q ListQuery) ConnectionList {
	var fds []int64
	var more bool
	switch {
	case q.ByGroup && q.ByUser:
		fds, more = pageOf(intersect(s.hub.GroupMembers(q.Group), s.hub.UserFDs(q.User)), q.After, q.Limit)
	case q.ByGroup:
		fds, more = pageOf(s.hub.GroupMembers(q.Group), q.After, q.Limit)
	case q.ByUser:
		fds, more = pageOf(s.hub.UserFDs(q.User), q.After, q.Limit)
	default:
		fds, more = s.hub.FDs(q.After, q.Limit)
	}
	out := ConnectionList{Connections: make([]Connection, 0, len(fds))}
	for _, fd := range fds {
		info := s.localInfo(fd)
		if !info.Connected {
			continue // closed since it was listed
		}
		out.Connections = append(out.Connections, info.Connection)
	}
	if more {
		next := fds[len(fds)-1]
		out.NextAfter = &next
	}
	return out
}

// pageOf returns the sorted fds after after, at most limit, and whether
// more follow.
func pageOf(sorted []int64, after int64, limit int) ([]int64, bool) {
	i, _ := slices.BinarySearch(sorted, after+1)
	sorted = sorted[i:]
	if len(sorted) > limit {
		return sorted[:limit], true
	}
	return sorted, false
}

// intersect returns the fds in both sorted lists.
func intersect(a, b []int64) []int64 {
	var out []int64
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch {
		case a[i] < b[j]:
			i++
		case a[i] > b[j]:
			j++
		default:
			out = append(out, a[i])
			i, j = i+1, j+1
		}
	}
	return out
}

// Stats reports the node's counters; RPCConnections is left 0 (only the
// RPC server knows it).
func (s *Service) Stats() Stats {
	st := s.hub.Stats()
	out := Stats{NodeID: st.NodeID, Connections: st.Connections, Workers: make([]WorkerStats, len(st.Workers))}
	for i, w := range st.Workers {
		out.Workers[i] = WorkerStats{
			ID: w.ID, Connections: w.Connections, Opened: w.Opened, Closed: w.Closed,
			Pushed: w.Pushed, Overflows: w.Overflows, MessagesIn: w.MessagesIn,
		}
	}
	return out
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return slices.Clip(s)
}
