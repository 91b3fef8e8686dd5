package bridge

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// keptInfo is what a connection keeps of its handshake for its whole life,
// in a compact form: the headers as one string ("Name: value\n" per
// value, names in canonical form and sorted) instead of a map of slices,
// the query string unparsed. An idle connection holds one small string
// where it held a map, its buckets and a slice per header (about 640 bytes
// with a plain client's handshake, 1.4 KiB with a browser's); ConnInfo is
// built from it when it is asked for (the open event, Hub.Info), which is
// rare next to the connection's life.
type keptInfo struct {
	path        string
	rawQuery    string
	header      string
	remote      string
	subprotocol string
	connectedAt time.Time
}

// packHeader encodes h as keptInfo.header.
func packHeader(h http.Header) string {
	names := make([]string, 0, len(h))
	n := 0
	for name, vs := range h {
		names = append(names, name)
		for _, v := range vs {
			n += len(name) + len(v) + 3
		}
	}
	slices.Sort(names)
	var b strings.Builder
	b.Grow(n)
	for _, name := range names {
		for _, v := range h[name] {
			b.WriteString(name)
			b.WriteString(": ")
			b.WriteString(v)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// unpackHeader decodes keptInfo.header. Header values hold no newline
// (net/http refuses them), so each line is one value.
func unpackHeader(s string) http.Header {
	h := make(http.Header, strings.Count(s, "\n"))
	for line := range strings.SplitSeq(strings.TrimSuffix(s, "\n"), "\n") {
		if line == "" {
			continue
		}
		name, v, _ := strings.Cut(line, ": ")
		h[name] = append(h[name], v)
	}
	return h
}

// connInfo builds the connection's ConnInfo (without its groups and user).
func (c *conn) connInfo() ConnInfo {
	q, _ := url.ParseQuery(c.info.rawQuery) // as url.URL.Query: the pairs that parse
	return ConnInfo{
		FD:          c.fd,
		Path:        c.info.path,
		RawQuery:    c.info.rawQuery,
		Query:       q,
		Header:      unpackHeader(c.info.header),
		RemoteAddr:  c.info.remote,
		Subprotocol: c.info.subprotocol,
		ConnectedAt: c.info.connectedAt,
		Worker:      c.worker.id,
	}
}
