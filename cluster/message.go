package cluster

import (
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/internal/msgpackcheck"
)

// The messages nodes send each other (docs/SCALING.md, "Messages between
// nodes"). One message is a frame, msgpack-encoded: the calls and the
// answers one node has for another (on that node's channel), or one call
// for every node in a scope (on a group's, a user's or the broadcast
// channel). A call names a Sender method ("Push") and carries its
// arguments as the RPC's msgpack codec encodes them; the receiving node
// runs its own part of it with sender.Service.Serve, the code the RPC and
// HTTP transports call, and answers with the method's reply or error code.

// frameVersion is the version of the frame format; a node drops frames of
// another version (counted).
const frameVersion = 1

// Bounds of a frame a node accepts from its channels (any Redis client may
// publish there): larger or fuller frames are dropped and counted.
const (
	// MaxFrameBytes bounds an encoded frame: a push of the largest message
	// (WSBRIDGE_MAX_PUSH_SIZE, at most 32 MiB by default rules) and room.
	MaxFrameBytes = 64 << 20
	// maxFrameItems bounds the calls plus answers of one frame.
	maxFrameItems = 4096
	// maxFrameItemBytes is what a sender puts in one frame before starting
	// the next (a single larger item travels alone).
	maxFrameItemBytes = 1 << 20
	// maxFrameArray bounds any array or map in a frame (an answer may list
	// a large group's members); a call's arguments are held to
	// sender.MaxBatch before they are decoded.
	maxFrameArray = 1 << 20
)

// frame is one message between nodes.
type frame struct {
	Version int      `msgpack:"v"`
	From    int      `msgpack:"f"` // the sending node's id
	Calls   []call   `msgpack:"c,omitempty"`
	Answers []answer `msgpack:"a,omitempty"`
}

// call is a Sender method to run on the receiving node.
type call struct {
	// ID is the sender's number for the answer; 0: no answer wanted.
	ID     uint64             `msgpack:"i"`
	Method string             `msgpack:"m"`
	Args   msgpack.RawMessage `msgpack:"a"`

	args any // the arguments until the sender encodes them into Args
}

// answer is the reply to a call: its result, or an error code and message.
type answer struct {
	ID      uint64             `msgpack:"i"`
	Result  msgpack.RawMessage `msgpack:"r,omitempty"`
	Code    string             `msgpack:"c,omitempty"`
	Message string             `msgpack:"e,omitempty"`
}

func (c *call) size() int   { return len(c.Method) + len(c.Args) + 16 }
func (a *answer) size() int { return len(a.Result) + len(a.Code) + len(a.Message) + 16 }

// errMalformed wraps every reason a frame is refused.
var errMalformed = errors.New("cluster: malformed node message")

func encodeFrame(f *frame) ([]byte, error) {
	f.Version = frameVersion
	return msgpack.Marshal(f)
}

// decodeFrame reads a frame from a channel and checks its bounds. Its
// errors wrap errMalformed.
func decodeFrame(b []byte) (*frame, error) {
	if len(b) > MaxFrameBytes {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", errMalformed, len(b), MaxFrameBytes)
	}
	if err := msgpackcheck.CheckLimit(b, maxFrameArray); err != nil {
		return nil, fmt.Errorf("%w: %w", errMalformed, err)
	}
	f := new(frame)
	if err := msgpack.Unmarshal(b, f); err != nil {
		return nil, fmt.Errorf("%w: %w", errMalformed, err)
	}
	switch {
	case f.Version != frameVersion:
		return nil, fmt.Errorf("%w: version %d, want %d", errMalformed, f.Version, frameVersion)
	case f.From < 0 || f.From > bridge.MaxNodeID:
		return nil, fmt.Errorf("%w: from node %d", errMalformed, f.From)
	case len(f.Calls)+len(f.Answers) == 0 || len(f.Calls)+len(f.Answers) > maxFrameItems:
		return nil, fmt.Errorf("%w: %d items, want 1..%d", errMalformed, len(f.Calls)+len(f.Answers), maxFrameItems)
	}
	for i := range f.Calls {
		if f.Calls[i].Method == "" {
			return nil, fmt.Errorf("%w: call %d has no method", errMalformed, i)
		}
	}
	return f, nil
}
