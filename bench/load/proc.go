package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/wsbridge/wsbridge/bench"
)

// procSample is what /proc says of the server process at one moment.
type procSample struct {
	At     time.Time
	CPU    time.Duration // utime + stime of all its threads
	RSS    int64         // VmRSS, bytes
	SyscW  uint64        // write system calls (/proc/PID/io syscw: write, writev, ...)
	SyscR  uint64        // read system calls (syscr)
	Thread int           // threads
}

// clockTick is USER_HZ: /proc/PID/stat counts CPU time in these.
const clockTick = 10 * time.Millisecond

// readProc samples pid. /proc/PID/io needs the same user or root; without
// it the system call counts stay 0.
func readProc(pid int) (procSample, error) {
	s := procSample{At: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name is in parentheses and may hold spaces: the fields
	// are counted from the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime 15, num_threads 20.
	if len(f) < 18 {
		return s, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	s.CPU = time.Duration(ut+st) * clockTick
	s.Thread, _ = strconv.Atoi(f[17])
	rss, _, err := bench.ReadStatus(pid)
	if err != nil {
		return s, err
	}
	s.RSS = int64(rss)
	if io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid)); err == nil {
		for line := range strings.SplitSeq(string(io), "\n") {
			k, v, _ := strings.Cut(line, ": ")
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			switch k {
			case "syscw":
				s.SyscW = n
			case "syscr":
				s.SyscR = n
			}
		}
	}
	return s, nil
}

// machineCPU returns the CPU time all processes of the machine have used
// (/proc/stat, every state but idle and iowait): compared with the server's
// and the clients' own, it tells what else ran meanwhile.
func machineCPU() time.Duration {
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

// serverSample is readProc over every process of a server (the nodes of a
// wsbridge cluster): the sums, and each process's RSS.
type serverSample struct {
	procSample
	NodeRSS []int64
}

func readServer(pids []int) (serverSample, error) {
	var s serverSample
	for i, pid := range pids {
		p, err := readProc(pid)
		if err != nil {
			return s, err
		}
		if i == 0 {
			s.At = p.At
		}
		s.CPU += p.CPU
		s.RSS += p.RSS
		s.SyscW += p.SyscW
		s.SyscR += p.SyscR
		s.Thread += p.Thread
		s.NodeRSS = append(s.NodeRSS, p.RSS)
	}
	return s, nil
}
