package main

import (
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

// readProc samples pid. /proc/PID/io needs the same user or root; without
// it the system call counts stay 0.
func readProc(pid int) (procSample, error) {
	s := procSample{At: time.Now()}
	var err error
	if s.CPU, s.Thread, err = bench.ReadStat(pid); err != nil {
		return s, err
	}
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
