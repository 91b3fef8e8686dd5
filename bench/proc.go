package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
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

// clockTick is USER_HZ: /proc/PID/stat counts CPU time in these.
const clockTick = 10 * time.Millisecond

// ReadStat returns the CPU time (utime + stime of all its threads) and the
// thread count of process pid from /proc/PID/stat; pid 0 is the calling
// process.
func ReadStat(pid int) (cpu time.Duration, threads int, err error) {
	path := "/proc/self/stat"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/stat", pid)
	}
	stat, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	// The command name is in parentheses and may hold spaces: the fields
	// are counted from the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("%s: no ')'", path)
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime 15, num_threads 20.
	if len(f) < 18 {
		return 0, 0, fmt.Errorf("%s: %d fields", path, len(f))
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	threads, _ = strconv.Atoi(f[17])
	return time.Duration(ut+st) * clockTick, threads, nil
}

// MachineCPU returns the CPU time all processes of the machine have used
// (/proc/stat, every state but idle and iowait): compared with the server's
// and the clients' own, it tells what else ran meanwhile.
func MachineCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest time is already in user
			break
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return time.Duration(busy) * clockTick
}
