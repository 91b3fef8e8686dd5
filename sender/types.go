package sender

// The argument and reply types of the Sender service. Field names are the
// wire names for JSON and msgpack; gob (the Go goridge client's codec) uses
// the Go field names. A field marked "default" may be left out.

// Message is the payload part shared by the push methods.
//
// Data carries the message. With Encoding "" it is the string itself: UTF-8
// text in JSON, any bytes in msgpack (str or bin) and gob. With Encoding
// "base64" it is standard base64 and is decoded first, so JSON callers can
// send binary data intact.
type Message struct {
	Data     string `json:"data" msgpack:"data"`
	Opcode   *int   `json:"opcode,omitempty" msgpack:"opcode,omitempty"`     // default 1 (text)
	Encoding string `json:"encoding,omitempty" msgpack:"encoding,omitempty"` // "" or "base64"
}

// PushArgs is the argument of Sender.Push.
type PushArgs struct {
	FD     int64 `json:"fd" msgpack:"fd"`
	Finish *bool `json:"finish,omitempty" msgpack:"finish,omitempty"` // default true
	// Ack false sends a push to an fd of another node without waiting for
	// that node's answer: the reply is true once the node's channel took
	// it (docs/SCALING.md). Default true; a local fd is always answered.
	Ack *bool `json:"ack,omitempty" msgpack:"ack,omitempty"`
	Message
}

// PushBatchArgs is the argument of Sender.PushBatch: one result per message.
type PushBatchArgs struct {
	Messages []PushArgs `json:"messages" msgpack:"messages"`
}

// PushManyArgs is the argument of Sender.PushMany: the same message to each fd.
type PushManyArgs struct {
	FDs []int64 `json:"fds" msgpack:"fds"`
	Message
}

// BroadcastArgs is the argument of Sender.Broadcast.
type BroadcastArgs struct {
	Except []int64 `json:"except,omitempty" msgpack:"except,omitempty"`
	Message
}

// DisconnectArgs is the argument of Sender.Disconnect.
type DisconnectArgs struct {
	FD     int64  `json:"fd" msgpack:"fd"`
	Code   int    `json:"code,omitempty" msgpack:"code,omitempty"` // default 1000
	Reason string `json:"reason,omitempty" msgpack:"reason,omitempty"`
}

// FDArgs is the argument of the methods that take only an fd.
type FDArgs struct {
	FD int64 `json:"fd" msgpack:"fd"`
}

// GroupArgs is the argument of Sender.Join and Sender.Leave.
type GroupArgs struct {
	FD    int64  `json:"fd" msgpack:"fd"`
	Group string `json:"group" msgpack:"group"`
}

// GroupNameArgs is the argument of Sender.GroupMembers.
type GroupNameArgs struct {
	Group string `json:"group" msgpack:"group"`
}

// PushGroupArgs is the argument of Sender.PushGroup.
type PushGroupArgs struct {
	Group  string  `json:"group" msgpack:"group"`
	Except []int64 `json:"except,omitempty" msgpack:"except,omitempty"`
	Message
}

// BindArgs is the argument of Sender.Bind.
type BindArgs struct {
	FD   int64  `json:"fd" msgpack:"fd"`
	User string `json:"user" msgpack:"user"`
}

// UserArgs is the argument of Sender.UserFds.
type UserArgs struct {
	User string `json:"user" msgpack:"user"`
}

// PushUserArgs is the argument of Sender.PushUser.
type PushUserArgs struct {
	User string `json:"user" msgpack:"user"`
	Message
}

// Empty is the argument of methods without parameters ({} or null).
type Empty struct{}

// Connection is what a listing says of one connection (GET
// /v1/connections): Info without the handshake's query and headers.
type Connection struct {
	FD          int64    `json:"fd" msgpack:"fd"`
	RemoteAddr  string   `json:"remote_addr" msgpack:"remote_addr"`
	Path        string   `json:"path" msgpack:"path"`
	Subprotocol string   `json:"subprotocol" msgpack:"subprotocol"`
	ConnectedAt int64    `json:"connected_at" msgpack:"connected_at"` // unix seconds
	Worker      int      `json:"worker" msgpack:"worker"`
	User        string   `json:"user" msgpack:"user"`
	Groups      []string `json:"groups" msgpack:"groups"`
}

// Info is the reply of Sender.Info and of GET /v1/connections/{fd}.
// Connected is false (and the rest empty) when the fd is not an open
// connection.
type Info struct {
	Connected bool `json:"connected" msgpack:"connected"`
	Connection
	Query   map[string][]string `json:"query" msgpack:"query"`
	Headers map[string][]string `json:"headers" msgpack:"headers"`
}

// ConnectionList is a page of connections in fd order (Sender.Connections,
// GET /v1/connections). NextAfter is the After of the next page, nil on
// the last one.
type ConnectionList struct {
	Connections []Connection `json:"connections" msgpack:"connections"`
	NextAfter   *int64       `json:"next_after" msgpack:"next_after"`
}

// Page sizes of a listing of connections.
const (
	DefaultPageLimit = 100
	MaxPageLimit     = 1000
)

// ListArgs is the argument of Sender.Connections: a page of this node's
// connections with an fd greater than After (0: from the start), at most
// Limit (default 100, at most 1000), members of Group and bound to User
// when they are given.
type ListArgs struct {
	After int64  `json:"after,omitempty" msgpack:"after,omitempty"`
	Limit int    `json:"limit,omitempty" msgpack:"limit,omitempty"`
	Group string `json:"group,omitempty" msgpack:"group,omitempty"`
	User  string `json:"user,omitempty" msgpack:"user,omitempty"`
}

// ListQuery selects a page of connections: those with an fd greater than
// After, at most Limit, members of Group (when ByGroup) and bound to User
// (when ByUser).
type ListQuery struct {
	After           int64
	Limit           int
	Group, User     string
	ByGroup, ByUser bool
}

// Stats is the reply of Sender.Stats.
type Stats struct {
	NodeID         int           `json:"node_id" msgpack:"node_id"`
	Connections    int           `json:"connections" msgpack:"connections"`
	Workers        []WorkerStats `json:"workers" msgpack:"workers"`
	RPCConnections int           `json:"rpc_connections" msgpack:"rpc_connections"`
}

// WorkerStats are one worker's counters.
type WorkerStats struct {
	ID          int    `json:"id" msgpack:"id"`
	Connections int    `json:"connections" msgpack:"connections"`
	Opened      uint64 `json:"opened" msgpack:"opened"`
	Closed      uint64 `json:"closed" msgpack:"closed"`
	Pushed      uint64 `json:"pushed" msgpack:"pushed"`
	Overflows   uint64 `json:"overflows" msgpack:"overflows"`
	MessagesIn  uint64 `json:"messages_in" msgpack:"messages_in"`
}
