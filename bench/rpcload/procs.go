package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/wsbridge/wsbridge/bench"
	"github.com/wsbridge/wsbridge/rpc"
	"github.com/wsbridge/wsbridge/sender"
)

// bareProc serves the bare goridge server on addr until it is signalled
// (rpcload -bare-proc ADDRESS): the -server-procs twin of serveBare.
func bareProc(addr string) {
	_, stop := serveBare(addr)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	stop()
}

// startServerProcs starts, per transport, a bare server process and a
// wsbridge process with conns WebSocket clients of its own (in this
// process): the -server-procs setup. The wsbridge process has the
// settings of the in-process hub (queues of 65,536 messages and 1 GiB,
// keepalive pings off).
func startServerProcs(dir, bin string, conns int, readEvery time.Duration, frameLen int64) (servers []server, pushed func() uint64, received func() int64, stopClients, stopAll func()) {
	if bin == "" {
		bin = filepath.Join(dir, "wsbridge")
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/wsbridge")
		cmd.Dir = bench.ModuleRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			check(fmt.Errorf("go build ./cmd/wsbridge: %w\n%s", err, out))
		}
	}
	self, err := os.Executable()
	check(err)
	var procs []*exec.Cmd
	var bridges []*rpc.Client
	var receivers []func() int64
	var stops []func()
	start := func(name string, args ...string) *exec.Cmd {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		check(cmd.Start())
		procs = append(procs, cmd)
		return cmd
	}
	for _, network := range []string{"unix", "tcp"} {
		baddr, waddr := "unix://"+filepath.Join(dir, "bare.sock"), "unix://"+filepath.Join(dir, "wsbridge.sock")
		if network == "tcp" {
			baddr, waddr = "tcp://"+freeAddr(), "tcp://"+freeAddr()
		}
		bare := start("bare", self, "-bare-proc", baddr)
		wsAddr := freeAddr()
		ws := start("wsbridge", bin, "-ws-addr", wsAddr, "-rpc-addr", waddr, "-admin-addr", freeAddr(),
			"-queue-size", "65536", "-queue-bytes", "1GiB", "-ping-interval", "1h", "-log-level", "warn",
			"-max-connections", strconv.Itoa(conns+100))
		waitDial(baddr)
		waitDial(waddr)
		cl, err := rpc.Dial(waddr, rpc.JSON, 5*time.Second)
		check(err)
		bridges = append(bridges, cl)
		count := func() int {
			var st sender.Stats
			check(cl.Call("Sender.Stats", sender.Empty{}, &st))
			return st.Connections
		}
		_, stop, recv := connectClients("ws://"+wsAddr+"/", conns, count, readEvery, frameLen)
		stops = append(stops, stop)
		receivers = append(receivers, recv)
		fds := listFDs(cl, conns)
		servers = append(servers,
			server{name: "bare " + network, addr: baddr, fds: fds, pid: bare.Process.Pid, stop: func() {}},
			server{name: "wsbridge " + network, addr: waddr, fds: fds, pid: ws.Process.Pid, stop: func() {}})
	}
	pushed = func() uint64 {
		var n uint64
		for _, cl := range bridges {
			var st sender.Stats
			check(cl.Call("Sender.Stats", sender.Empty{}, &st))
			for _, w := range st.Workers {
				n += w.Pushed
			}
		}
		return n
	}
	received = func() int64 {
		var n int64
		for _, r := range receivers {
			n += r()
		}
		return n
	}
	stopClients = func() {
		for _, s := range stops {
			s()
		}
	}
	stopAll = func() {
		for _, cl := range bridges {
			cl.Close()
		}
		for _, p := range procs {
			_ = p.Process.Signal(syscall.SIGTERM)
		}
		for _, p := range procs {
			_ = p.Wait()
		}
	}
	return servers, pushed, received, stopClients, stopAll
}

// listFDs lists the n connections' fds through Sender.Connections.
func listFDs(cl *rpc.Client, n int) []int64 {
	var fds []int64
	after := int64(0)
	for {
		var page sender.ConnectionList
		check(cl.Call("Sender.Connections", sender.ListArgs{After: after, Limit: sender.MaxPageLimit}, &page))
		for _, c := range page.Connections {
			fds = append(fds, c.FD)
		}
		if page.NextAfter == nil {
			break
		}
		after = *page.NextAfter
	}
	if len(fds) != n {
		check(fmt.Errorf("the bridge lists %d connections, want %d", len(fds), n))
	}
	return fds
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	defer ln.Close()
	return ln.Addr().String()
}

// waitDial waits until addr (tcp:// or unix://) accepts connections.
func waitDial(addr string) {
	network, address, err := rpc.ParseAddr(addr)
	check(err)
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, err := net.DialTimeout(network, address, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			check(fmt.Errorf("nothing listens on %s: %w", addr, err))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
