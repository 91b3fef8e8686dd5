package rpc

import (
	"reflect"
	"slices"

	"github.com/wsbridge/wsbridge/sender"
)

// receiver is the net/rpc receiver of the Sender service: every exported
// method is an RPC method (docs/PROTOCOL.md) and only carries the call to
// the Service.
type receiver struct {
	svc   *sender.Service
	stats func() int // open RPC connections
}

// ServiceName is the name the methods are registered under: Sender.Push, ...
const ServiceName = "Sender"

// Methods returns the names of the Sender service's RPC methods
// ("Sender.Push", ...), sorted.
func Methods() []string {
	t := reflect.TypeFor[*receiver]()
	out := make([]string, 0, t.NumMethod())
	for i := range t.NumMethod() {
		out = append(out, ServiceName+"."+t.Method(i).Name)
	}
	slices.Sort(out)
	return out
}

// Push sends one message (or fragment) to fd.
func (s *receiver) Push(in *sender.PushArgs, out *bool) (err error) {
	*out, err = s.svc.Push(in)
	return err
}

// PushBatch sends many messages, one result per message.
func (s *receiver) PushBatch(in *sender.PushBatchArgs, out *[]bool) error {
	res, err := s.svc.PushBatch(in)
	if err == nil {
		*out = res
	}
	return err
}

// PushMany sends the same message to each fd.
func (s *receiver) PushMany(in *sender.PushManyArgs, out *int) (err error) {
	*out, _, err = s.svc.PushMany(in)
	return err
}

// Broadcast sends a message to every connection but the except list.
func (s *receiver) Broadcast(in *sender.BroadcastArgs, out *int) (err error) {
	*out, _, err = s.svc.Broadcast(in)
	return err
}

// Disconnect closes fd with code (default 1000) and reason.
func (s *receiver) Disconnect(in *sender.DisconnectArgs, out *bool) (err error) {
	*out, err = s.svc.Disconnect(in)
	return err
}

// Check tells whether fd is an open connection.
func (s *receiver) Check(in *sender.FDArgs, out *bool) (err error) {
	*out, err = s.svc.Check(in.FD)
	return err
}

// Join adds fd to a group.
func (s *receiver) Join(in *sender.GroupArgs, out *bool) (err error) {
	*out, err = s.svc.Join(in)
	return err
}

// Leave removes fd from a group.
func (s *receiver) Leave(in *sender.GroupArgs, out *bool) (err error) {
	*out, err = s.svc.Leave(in)
	return err
}

// PushGroup sends a message to a group's members but the except list.
func (s *receiver) PushGroup(in *sender.PushGroupArgs, out *int) (err error) {
	*out, _, err = s.svc.PushGroup(in)
	return err
}

// GroupMembers lists a group's fds.
func (s *receiver) GroupMembers(in *sender.GroupNameArgs, out *[]int64) (err error) {
	*out, _, err = s.svc.GroupMembers(in.Group)
	return err
}

// GroupsOf lists fd's groups (empty when fd is not open).
func (s *receiver) GroupsOf(in *sender.FDArgs, out *[]string) (err error) {
	*out, err = s.svc.GroupsOf(in.FD)
	return err
}

// Groups lists every group with its member count.
func (s *receiver) Groups(_ *sender.Empty, out *map[string]int) (err error) {
	*out, _, err = s.svc.Groups()
	return err
}

// Bind binds fd to a user id.
func (s *receiver) Bind(in *sender.BindArgs, out *bool) (err error) {
	*out, err = s.svc.Bind(in)
	return err
}

// Unbind removes fd's user binding.
func (s *receiver) Unbind(in *sender.FDArgs, out *bool) (err error) {
	*out, err = s.svc.Unbind(in.FD)
	return err
}

// PushUser sends a message to every fd bound to a user.
func (s *receiver) PushUser(in *sender.PushUserArgs, out *int) (err error) {
	*out, _, err = s.svc.PushUser(in)
	return err
}

// UserFds lists the fds bound to a user.
func (s *receiver) UserFds(in *sender.UserArgs, out *[]int64) (err error) {
	*out, _, err = s.svc.UserFDs(in.User)
	return err
}

// Info describes fd's connection.
func (s *receiver) Info(in *sender.FDArgs, out *sender.Info) (err error) {
	*out, err = s.svc.Info(in.FD)
	return err
}

// Connections lists a page of this node's connections.
func (s *receiver) Connections(in *sender.ListArgs, out *sender.ConnectionList) (err error) {
	*out, err = s.svc.List(in)
	return err
}

// Stats reports the node's counters.
func (s *receiver) Stats(_ *sender.Empty, out *sender.Stats) error {
	*out = s.svc.Stats()
	out.RPCConnections = s.stats()
	return nil
}
