package bench

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ReadStatus returns the resident set size (VmRSS) and its high-water mark
// (VmHWM) of process pid, in bytes, from /proc/PID/status; pid 0 is the
// calling process. Every load tool measures memory from outside with it.
func ReadStatus(pid int) (rss, hwm uint64, err error) {
	path := "/proc/self/status"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/status", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		for _, f := range []struct {
			prefix string
			p      *uint64
		}{{"VmRSS:", &rss}, {"VmHWM:", &hwm}} {
			if rest, ok := strings.CutPrefix(line, f.prefix); ok {
				kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				*f.p = kb << 10
			}
		}
	}
	if rss == 0 {
		return 0, 0, errors.New("no VmRSS in " + path)
	}
	return rss, hwm, nil
}
