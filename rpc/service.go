package rpc

import (
	"encoding/base64"
	"fmt"
	"slices"

	"github.com/wsbridge/wsbridge/bridge"
)

// ServiceName is the name the methods are registered under: Sender.Push, ...
const ServiceName = "Sender"

// MaxBatch bounds the items of one Sender.PushBatch and the fds of one
// Sender.PushMany or except list.
const MaxBatch = 10000

// sender is the net/rpc receiver of the Sender service. Every exported
// method is an RPC method; see docs/PROTOCOL.md.
type sender struct {
	hub   *bridge.Hub
	stats func() int // open RPC connections
}

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
			return nil, 0, badRequest("data is not valid base64: " + err.Error())
		}
		return data, op, nil
	}
	return nil, 0, badRequest(fmt.Sprintf("unknown encoding %q (want \"\" or \"base64\")", m.Encoding))
}

func checkList(name string, fds []int64) error {
	if len(fds) > MaxBatch {
		return badRequest(fmt.Sprintf("%s has %d fds, the limit is %d", name, len(fds), MaxBatch))
	}
	return nil
}

// push is Push's work, shared with PushBatch: false (no error) when the fd
// is not an open connection or its queue is full.
func (s *sender) push(in *PushArgs) (bool, error) {
	data, op, err := in.message()
	if err != nil {
		return false, err
	}
	finish := in.Finish == nil || *in.Finish
	err = s.hub.Push(in.FD, data, op, finish)
	if bridge.IsNotDelivered(err) {
		return false, nil
	}
	return err == nil, toError(err)
}

// Push sends one message (or fragment) to fd.
func (s *sender) Push(in *PushArgs, out *bool) (err error) {
	*out, err = s.push(in)
	return err
}

// PushBatch sends many messages, one result per message. The whole batch is
// checked first: a malformed message fails the call and sends nothing. What
// depends on a connection's state (text that is not UTF-8 where no
// fragmented message is open) fails the call at that message, after the
// ones before it were sent.
func (s *sender) PushBatch(in *PushBatchArgs, out *[]bool) error {
	if len(in.Messages) > MaxBatch {
		return badRequest(fmt.Sprintf("batch of %d messages, the limit is %d", len(in.Messages), MaxBatch))
	}
	type decoded struct {
		data   []byte
		op     bridge.Opcode
		finish bool
	}
	msgs := make([]decoded, len(in.Messages))
	for i := range in.Messages {
		m := &in.Messages[i]
		data, op, err := m.message()
		if err == nil {
			msgs[i] = decoded{data, op, m.Finish == nil || *m.Finish}
			err = toError(s.hub.CheckPush(m.FD, data, op, msgs[i].finish))
		}
		if err != nil {
			return atMessage(i, err)
		}
	}
	res := make([]bool, len(msgs))
	for i, m := range msgs {
		err := s.hub.Push(in.Messages[i].FD, m.data, m.op, m.finish)
		if err != nil && !bridge.IsNotDelivered(err) {
			return atMessage(i, toError(err))
		}
		res[i] = err == nil
	}
	*out = res
	return nil
}

// atMessage names the batch message an Error is about, keeping its code.
func atMessage(i int, err error) error {
	e := err.(*Error)
	return &Error{Code: e.Code, Message: fmt.Sprintf("message %d: %s", i, e.Message)}
}

// PushMany sends the same message to each fd; the reply counts the fds that
// accepted it.
func (s *sender) PushMany(in *PushManyArgs, out *int) error {
	if err := checkList("fds", in.FDs); err != nil {
		return err
	}
	data, op, err := in.message()
	if err != nil {
		return err
	}
	*out, err = s.hub.PushMany(in.FDs, data, op)
	return toError(err)
}

// Broadcast sends a message to every connection but the except list.
func (s *sender) Broadcast(in *BroadcastArgs, out *int) error {
	if err := checkList("except", in.Except); err != nil {
		return err
	}
	data, op, err := in.message()
	if err != nil {
		return err
	}
	*out, err = s.hub.Broadcast(data, op, in.Except)
	return toError(err)
}

// Disconnect closes fd with code (default 1000) and reason.
func (s *sender) Disconnect(in *DisconnectArgs, out *bool) error {
	err := s.hub.Disconnect(in.FD, in.Code, in.Reason)
	if bridge.IsNotDelivered(err) {
		*out = false
		return nil
	}
	*out = err == nil
	return toError(err)
}

// Check tells whether fd is an open connection. Any fd is a valid question.
func (s *sender) Check(in *FDArgs, out *bool) error {
	*out = s.hub.Check(in.FD)
	return nil
}

// groupOp runs a join/leave/bind style call: false when fd is not open.
func groupOp(err error, out *bool, ok bool) error {
	if bridge.IsNotDelivered(err) {
		*out = false
		return nil
	}
	*out = err == nil && ok
	return toError(err)
}

// Join adds fd to a group.
func (s *sender) Join(in *GroupArgs, out *bool) error {
	return groupOp(s.hub.Join(in.FD, in.Group), out, true)
}

// Leave removes fd from a group; false when it was not a member.
func (s *sender) Leave(in *GroupArgs, out *bool) error {
	was, err := s.hub.Leave(in.FD, in.Group)
	return groupOp(err, out, was)
}

// PushGroup sends a message to a group's members but the except list.
func (s *sender) PushGroup(in *PushGroupArgs, out *int) error {
	if err := checkList("except", in.Except); err != nil {
		return err
	}
	data, op, err := in.message()
	if err != nil {
		return err
	}
	*out, err = s.hub.PushGroup(in.Group, data, op, in.Except)
	return toError(err)
}

// GroupMembers lists a group's fds.
func (s *sender) GroupMembers(in *GroupNameArgs, out *[]int64) error {
	*out = nonNil(s.hub.GroupMembers(in.Group))
	return nil
}

// GroupsOf lists fd's groups (empty when fd is not open).
func (s *sender) GroupsOf(in *FDArgs, out *[]string) error {
	groups, _ := s.hub.GroupsOf(in.FD)
	*out = nonNil(groups)
	return nil
}

// Groups lists every group with its member count.
func (s *sender) Groups(_ *Empty, out *map[string]int) error {
	*out = s.hub.Groups()
	return nil
}

// Bind binds fd to a user id.
func (s *sender) Bind(in *BindArgs, out *bool) error {
	return groupOp(s.hub.Bind(in.FD, in.User), out, true)
}

// Unbind removes fd's user binding; false when it had none.
func (s *sender) Unbind(in *FDArgs, out *bool) error {
	was, err := s.hub.Unbind(in.FD)
	return groupOp(err, out, was)
}

// PushUser sends a message to every fd bound to a user.
func (s *sender) PushUser(in *PushUserArgs, out *int) error {
	data, op, err := in.message()
	if err != nil {
		return err
	}
	*out, err = s.hub.PushUser(in.User, data, op)
	return toError(err)
}

// UserFds lists the fds bound to a user.
func (s *sender) UserFds(in *UserArgs, out *[]int64) error {
	*out = nonNil(s.hub.UserFDs(in.User))
	return nil
}

// Info describes fd's connection.
func (s *sender) Info(in *FDArgs, out *Info) error {
	info, ok := s.hub.Info(in.FD)
	if !ok {
		*out = Info{FD: in.FD, Query: map[string][]string{}, Headers: map[string][]string{}, Groups: []string{}}
		return nil
	}
	*out = Info{
		Connected:   true,
		FD:          info.FD,
		RemoteAddr:  info.RemoteAddr,
		Path:        info.Path,
		Query:       info.Query,
		Headers:     info.Header,
		Subprotocol: info.Subprotocol,
		ConnectedAt: info.ConnectedAt.Unix(),
		Worker:      info.Worker,
		Groups:      nonNil(info.Groups),
		User:        info.User,
	}
	return nil
}

// Stats reports the node's counters.
func (s *sender) Stats(_ *Empty, out *Stats) error {
	st := s.hub.Stats()
	*out = Stats{NodeID: st.NodeID, Connections: st.Connections, RPCConnections: s.stats(), Workers: make([]WorkerStats, len(st.Workers))}
	for i, w := range st.Workers {
		out.Workers[i] = WorkerStats(w)
	}
	return nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return slices.Clip(s)
}
