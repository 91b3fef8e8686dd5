package cluster

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// DefaultPrefix is the default WSBRIDGE_REDIS_PREFIX.
const DefaultPrefix = "wsbridge"

// maxPrefix bounds the prefix's length.
const maxPrefix = 64

// Keys names the Redis keys and channels of one cluster (see the package
// comment for the layout).
type Keys struct {
	p   string // the prefix
	tag string // "{p}": the hash tag of the registry's keys
}

// NewKeys checks a prefix: 1..64 printable characters without braces,
// spaces or colons at its ends. Empty means DefaultPrefix.
func NewKeys(prefix string) (Keys, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if len(prefix) > maxPrefix {
		return Keys{}, fmt.Errorf("cluster: Redis prefix longer than %d bytes", maxPrefix)
	}
	for _, r := range prefix {
		if r == '{' || r == '}' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return Keys{}, fmt.Errorf("cluster: Redis prefix %q: braces, spaces and control characters are not allowed", prefix)
		}
	}
	if strings.HasPrefix(prefix, ":") || strings.HasSuffix(prefix, ":") {
		return Keys{}, fmt.Errorf("cluster: Redis prefix %q: no colon at its ends (one is added)", prefix)
	}
	return Keys{p: prefix, tag: "{" + prefix + "}"}, nil
}

// Prefix returns the prefix.
func (k Keys) Prefix() string { return k.p }

// Claim is the key of node id's live claim.
func (k Keys) Claim(id int) string { return k.tag + ":node:" + strconv.Itoa(id) }

// claimPrefix is Claim without the id, for the scripts.
func (k Keys) claimPrefix() string { return k.tag + ":node:" }

// Nodes is the hash of every claimed id's record.
func (k Keys) Nodes() string { return k.tag + ":nodes" }

// Lost is the hash of the lost nodes whose cleanup is pending.
func (k Keys) Lost() string { return k.tag + ":lost" }

// lostLockPrefix is the prefix of the cleanup locks, for the scripts.
func (k Keys) lostLockPrefix() string { return k.tag + ":lostlock:" }

// deadPrefix is the prefix of the marks of cleaned-up generations.
func (k Keys) deadPrefix() string { return k.tag + ":dead:" }

// LinkSecret is the key of the secret the links between nodes prove
// (link.go).
func (k Keys) LinkSecret() string { return k.tag + ":linksecret" }

// Gen is the claim generation counter.
func (k Keys) Gen() string { return k.tag + ":gen" }

// Seq is the key of node id's fd sequence.
func (k Keys) Seq(id int) string { return k.tag + ":seq:" + strconv.Itoa(id) }

// NodeChannel is the channel of node id's requests and replies.
func (k Keys) NodeChannel(id int) string { return k.p + ":node:" + strconv.Itoa(id) }

// GroupChannel is the channel of a group's deliveries.
func (k Keys) GroupChannel(name string) string { return k.p + ":group:" + name }

// UserChannel is the channel of a user's deliveries.
func (k Keys) UserChannel(user string) string { return k.p + ":user:" + user }

// BroadcastChannel is the channel every node subscribes to.
func (k Keys) BroadcastChannel() string { return k.p + ":all" }
