package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/wsbridge/wsbridge/bench"
)

// TestMain lets the test binary serve as its own client processes: the tool
// re-executes itself (os.Executable) with -client as the first argument.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "-client" {
		os.Exit(clientMain(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m)
}

// TestSmallRun runs the whole tool with a few connections: two client
// processes on two source addresses, browser-like handshakes, a burst of
// broadcasts that every client must receive, the measurement, the report and
// the shutdown, in which every client must see close 1001.
func TestSmallRun(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run([]string{"-n", "40", "-clients", "2", "-src", "127.0.0.2-127.0.0.3", "-dial-concurrency", "4", "-burst", "3", "-browser-headers"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit code %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{
		"idle connections: 40 over loopback TCP from 127.0.0.2-127.0.0.3, 2 client processes, browser-like handshake headers",
		"measured after a burst of 3 broadcasts",
		"Go heap+stacks", "RSS (VmRSS)", "target: at most 10 KiB",
		"the clients saw close 1001 on 40 connections, another end on 0",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-n", "0"},
		{"-n", "40000", "-clients", "2"}, // 20000 sockets per client process
		{"-src", "10.0.0.1"},
		{"-burst", "-1"},
		{"-burst", "100000"},
		{"-src", "127.0.0.9-127.0.0.2"},
		{"extra"},
	} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != 2 {
			t.Errorf("run(%q) = %d, want 2 (stderr %q)", args, code, errOut.String())
		}
	}
}

func TestParseAddrs(t *testing.T) {
	got, err := bench.ParseLoopbackAddrs("127.0.0.2-127.0.0.4, 127.0.1.1")
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, a := range got {
		s = append(s, a.String())
	}
	if want := "127.0.0.2 127.0.0.3 127.0.0.4 127.0.1.1"; strings.Join(s, " ") != want {
		t.Errorf("got %v, want %s", s, want)
	}
}
