package bench

import (
	"fmt"
	"net/netip"
	"strings"
)

// ParseLoopbackAddrs parses a -src flag of the load tools,
// "127.0.0.2-127.0.0.9,127.0.1.1", into the IPv4 loopback addresses their
// clients connect from (each address gives a process another 28,000 or so
// source ports).
func ParseLoopbackAddrs(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		first, last, isRange := strings.Cut(part, "-")
		a, err := netip.ParseAddr(first)
		if err != nil {
			return nil, fmt.Errorf("-src: %w", err)
		}
		b := a
		if isRange {
			if b, err = netip.ParseAddr(last); err != nil {
				return nil, fmt.Errorf("-src: %w", err)
			}
		}
		if !a.Is4() || !b.Is4() || b.Less(a) || !a.IsLoopback() || !b.IsLoopback() {
			return nil, fmt.Errorf("-src: %q is not an IPv4 loopback address or ascending range of them", part)
		}
		for ; !b.Less(a); a = a.Next() {
			out = append(out, a)
			if len(out) > 1<<16 {
				return nil, fmt.Errorf("-src: %q: too many addresses", s)
			}
		}
	}
	return out, nil
}
