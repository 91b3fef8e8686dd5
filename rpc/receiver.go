package rpc

import (
	"reflect"
	"slices"
)

// sender is the net/rpc receiver of the Sender service: every exported
// method is an RPC method (docs/PROTOCOL.md) and only carries the call to
// the Service.
type sender struct {
	svc   *Service
	stats func() int // open RPC connections
}

// Methods returns the names of the Sender service's RPC methods
// ("Sender.Push", ...), sorted.
func Methods() []string {
	t := reflect.TypeFor[*sender]()
	out := make([]string, 0, t.NumMethod())
	for i := range t.NumMethod() {
		out = append(out, ServiceName+"."+t.Method(i).Name)
	}
	slices.Sort(out)
	return out
}

// Push sends one message (or fragment) to fd.
func (s *sender) Push(in *PushArgs, out *bool) (err error) {
	*out, err = s.svc.Push(in)
	return err
}

// PushBatch sends many messages, one result per message.
func (s *sender) PushBatch(in *PushBatchArgs, out *[]bool) error {
	res, err := s.svc.PushBatch(in)
	if err == nil {
		*out = res
	}
	return err
}

// PushMany sends the same message to each fd.
func (s *sender) PushMany(in *PushManyArgs, out *int) (err error) {
	*out, err = s.svc.PushMany(in)
	return err
}

// Broadcast sends a message to every connection but the except list.
func (s *sender) Broadcast(in *BroadcastArgs, out *int) (err error) {
	*out, err = s.svc.Broadcast(in)
	return err
}

// Disconnect closes fd with code (default 1000) and reason.
func (s *sender) Disconnect(in *DisconnectArgs, out *bool) (err error) {
	*out, err = s.svc.Disconnect(in)
	return err
}

// Check tells whether fd is an open connection.
func (s *sender) Check(in *FDArgs, out *bool) error {
	*out = s.svc.Check(in.FD)
	return nil
}

// Join adds fd to a group.
func (s *sender) Join(in *GroupArgs, out *bool) (err error) {
	*out, err = s.svc.Join(in)
	return err
}

// Leave removes fd from a group.
func (s *sender) Leave(in *GroupArgs, out *bool) (err error) {
	*out, err = s.svc.Leave(in)
	return err
}

// PushGroup sends a message to a group's members but the except list.
func (s *sender) PushGroup(in *PushGroupArgs, out *int) (err error) {
	*out, err = s.svc.PushGroup(in)
	return err
}

// GroupMembers lists a group's fds.
func (s *sender) GroupMembers(in *GroupNameArgs, out *[]int64) error {
	*out = s.svc.GroupMembers(in.Group)
	return nil
}

// GroupsOf lists fd's groups (empty when fd is not open).
func (s *sender) GroupsOf(in *FDArgs, out *[]string) error {
	*out = s.svc.GroupsOf(in.FD)
	return nil
}

// Groups lists every group with its member count.
func (s *sender) Groups(_ *Empty, out *map[string]int) error {
	*out = s.svc.Groups()
	return nil
}

// Bind binds fd to a user id.
func (s *sender) Bind(in *BindArgs, out *bool) (err error) {
	*out, err = s.svc.Bind(in)
	return err
}

// Unbind removes fd's user binding.
func (s *sender) Unbind(in *FDArgs, out *bool) (err error) {
	*out, err = s.svc.Unbind(in.FD)
	return err
}

// PushUser sends a message to every fd bound to a user.
func (s *sender) PushUser(in *PushUserArgs, out *int) (err error) {
	*out, err = s.svc.PushUser(in)
	return err
}

// UserFds lists the fds bound to a user.
func (s *sender) UserFds(in *UserArgs, out *[]int64) error {
	*out = s.svc.UserFDs(in.User)
	return nil
}

// Info describes fd's connection.
func (s *sender) Info(in *FDArgs, out *Info) error {
	*out = s.svc.Info(in.FD)
	return nil
}

// Stats reports the node's counters.
func (s *sender) Stats(_ *Empty, out *Stats) error {
	*out = s.svc.Stats()
	out.RPCConnections = s.stats()
	return nil
}
