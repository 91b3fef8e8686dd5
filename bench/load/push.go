package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wsbridge/wsbridge/bench"
	"github.com/wsbridge/wsbridge/rpc"
	"github.com/wsbridge/wsbridge/sender"
)

// Push scenarios: -pushes rounds, each sending -push-per-conn messages to
// every connection by its own address. The round's list of fds is every
// connection's fd, -push-per-conn times over, cut into calls of
// -push-batch. The callers (-push-with):
//
//	go-push    Sender.Push from -go-callers goroutines of this process (Go, JSON codec), one call a message
//	go-batch   Sender.PushBatch from -go-callers goroutines, calls of -push-batch
//	go-many    Sender.PushMany from -go-callers goroutines: the same fd lists, one payload a call
//	php-push   Sender::push from -php-procs PHP processes (php-client), one call a message
//	php-batch  Sender::pushBatch from -php-procs PHP processes, calls of -push-batch
//
// Each Go caller has an RPC connection of its own, each PHP process too;
// each pushes to its share of the connections (the fds cut into equal
// parts), sequentially, and a round ends when every caller has done its
// share. The callers connect to the first node's RPC (with -nodes K the
// cluster routes each push to the node that holds its fd).
// wsbridge and wsbridge-base take them all; the floor server takes the
// rounds as broadcasts (one message to every connection, one write each).
var pushMethods = []string{"go-push", "go-batch", "go-many", "php-push", "php-batch"}

// pusher is a target that can push to each connection.
type pusher interface {
	// pushWith lists the push scenarios the target runs, of o.pushWith.
	pushWith(o *options) []string
	// startPush readies rounds of method; send runs them and returns the
	// CPU time the callers took (0: this process's, which the runner reads).
	startPush(method string, o *options, rounds int) (send func() (time.Duration, error), err error)
}

var (
	_ pusher = (*wsbridgeTarget)(nil)
	_ pusher = (*gorillaTarget)(nil)
)

// pushName names a push scenario in the report.
func pushName(method string, o *options) string {
	per := ""
	if o.pushPerConn > 1 {
		per = fmt.Sprintf(", %d per connection", o.pushPerConn)
	}
	gos := ""
	if o.goCallers > 1 {
		gos = fmt.Sprintf(", %d callers", o.goCallers)
	}
	switch method {
	case "go-push":
		return fmt.Sprintf("push x%d (Go Push%s%s)", o.pushes, gos, per)
	case "go-batch":
		return fmt.Sprintf("push x%d (Go PushBatch of %d%s%s)", o.pushes, o.pushBatch, gos, per)
	case "go-many":
		return fmt.Sprintf("push x%d (Go PushMany of %d%s%s)", o.pushes, o.pushBatch, gos, per)
	case "php-push":
		return fmt.Sprintf("push x%d (PHP push, %d procs%s)", o.pushes, o.phpProcs, per)
	case "php-batch":
		return fmt.Sprintf("push x%d (PHP pushBatch of %d, %d procs%s)", o.pushes, o.pushBatch, o.phpProcs, per)
	}
	return fmt.Sprintf("push x%d (%s%s)", o.pushes, method, per)
}

// roundList is one round's fds: all of them, perConn times over.
func roundList(fds []int64, perConn int) []int64 {
	out := make([]int64, 0, len(fds)*perConn)
	for range perConn {
		out = append(out, fds...)
	}
	return out
}

func (t *wsbridgeTarget) pushWith(o *options) []string { return o.pushWith }

func (t *wsbridgeTarget) startPush(method string, o *options, rounds int) (func() (time.Duration, error), error) {
	switch method {
	case "go-push", "go-batch", "go-many":
		return t.startGo(method, o, rounds)
	case "php-push", "php-batch":
		return startPHP(t.nodes[0].rpc, strings.TrimPrefix(method, "php-"), o, rounds, t.all)
	}
	return nil, fmt.Errorf("unknown push method %q", method)
}

// startGo dials -go-callers RPC connections; send runs the rounds, each
// caller on its share of the fds, and waits for all of them.
func (t *wsbridgeTarget) startGo(method string, o *options, rounds int) (func() (time.Duration, error), error) {
	callers := min(o.goCallers, len(t.all))
	cls := make([]*rpc.Client, callers)
	for i := range cls {
		cl, err := rpc.Dial("tcp://"+t.nodes[0].rpc, rpc.JSON, 5*time.Second)
		if err != nil {
			for _, c := range cls[:i] {
				_ = c.Close()
			}
			return nil, err
		}
		cls[i] = cl
	}
	return func() (time.Duration, error) {
		errs := make([]error, callers)
		var wg sync.WaitGroup
		for i, cl := range cls {
			list := roundList(t.all[len(t.all)*i/callers:len(t.all)*(i+1)/callers], o.pushPerConn)
			wg.Go(func() {
				defer cl.Close()
				for r := range rounds {
					var err error
					switch method {
					case "go-push":
						err = pushEach(cl, list, o.payload)
					case "go-batch":
						err = pushBatch(cl, list, o.pushBatch, o.payload)
					default:
						err = pushMany(cl, list, o.pushBatch, o.payload)
					}
					if err != nil {
						errs[i] = fmt.Errorf("round %d: %w", r, err)
						return
					}
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return 0, err
			}
		}
		return 0, nil
	}, nil
}

// pushEach sends one message to each fd of list, a call each.
func pushEach(cl *rpc.Client, list []int64, size int) error {
	var payload []byte
	for _, fd := range list {
		payload = makePayload(payload[:0], size)
		var ok bool
		if err := cl.Call("Sender.Push", &sender.PushArgs{FD: fd, Message: sender.Message{Data: string(payload)}}, &ok); err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("push to fd %d refused", fd)
		}
	}
	return nil
}

// pushBatch sends one message to each fd of list, batch at a time.
func pushBatch(cl *rpc.Client, list []int64, batch, size int) error {
	var oks []bool
	msgs := make([]sender.PushArgs, 0, batch)
	var payload []byte
	for i := 0; i < len(list); i += batch {
		msgs = msgs[:0]
		payload = makePayload(payload[:0], size)
		for _, fd := range list[i:min(i+batch, len(list))] {
			msgs = append(msgs, sender.PushArgs{FD: fd, Message: sender.Message{Data: string(payload)}})
		}
		if err := cl.Call("Sender.PushBatch", &sender.PushBatchArgs{Messages: msgs}, &oks); err != nil {
			return err
		}
		for k, ok := range oks {
			if !ok {
				return fmt.Errorf("push to fd %d refused", msgs[k].FD)
			}
		}
	}
	return nil
}

// pushMany sends one message to each fd of list, batch fds a call.
func pushMany(cl *rpc.Client, list []int64, batch, size int) error {
	var payload []byte
	for i := 0; i < len(list); i += batch {
		payload = makePayload(payload[:0], size)
		fds := list[i:min(i+batch, len(list))]
		var n int
		if err := cl.Call("Sender.PushMany", &sender.PushManyArgs{FDs: fds, Message: sender.Message{Data: string(payload)}}, &n); err != nil {
			return err
		}
		if n != len(fds) {
			return fmt.Errorf("PushMany to %d fds reached %d", len(fds), n)
		}
	}
	return nil
}

// pushWith: the floor server takes push rounds as broadcasts; the naive
// gorilla server none (it is the broadcasts' reference).
func (t *gorillaTarget) pushWith(*options) []string {
	if t.floor {
		return []string{"publish"}
	}
	return nil
}

func (t *gorillaTarget) startPush(_ string, o *options, rounds int) (func() (time.Duration, error), error) {
	return func() (time.Duration, error) {
		var payload []byte
		for range rounds * o.pushPerConn {
			payload = makePayload(payload[:0], o.payload)
			if err := t.publish(-1, payload); err != nil {
				return 0, err
			}
		}
		return 0, nil
	}, nil
}

// startPHP starts o.phpProcs PHP callers (bench/php/loadpush.php), each
// with its share of fds, and waits until each has connected; the returned
// send lets them go, waits for them and returns their CPU time.
func startPHP(rpcAddr, method string, o *options, rounds int, fds []int64) (func() (time.Duration, error), error) {
	script := filepath.Join(bench.ModuleRoot(), "bench", "php", "loadpush.php")
	if _, err := os.Stat(filepath.Join(bench.ModuleRoot(), "php-client", "vendor", "autoload.php")); err != nil {
		return nil, fmt.Errorf("php-client/vendor/autoload.php is missing (make php-autoload): %w", err)
	}
	dir, err := os.MkdirTemp("", "load-php-")
	if err != nil {
		return nil, err
	}
	procs := min(o.phpProcs, len(fds))
	type caller struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   *bufio.Reader
		err   bytes.Buffer
	}
	callers := make([]*caller, 0, procs)
	fail := func(err error) (func() (time.Duration, error), error) {
		for _, c := range callers {
			_ = c.stdin.Close()
			_ = c.cmd.Process.Kill()
			_ = c.cmd.Wait()
		}
		_ = os.RemoveAll(dir)
		return nil, err
	}
	for i := range procs {
		share := fds[len(fds)*i/procs : len(fds)*(i+1)/procs]
		var b strings.Builder
		for _, fd := range share {
			b.WriteString(strconv.FormatInt(fd, 10))
			b.WriteByte('\n')
		}
		path := filepath.Join(dir, fmt.Sprintf("fds-%d", i))
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			return fail(err)
		}
		c := &caller{cmd: exec.Command("php", script, "tcp://"+rpcAddr, method, strconv.Itoa(rounds),
			strconv.Itoa(o.pushPerConn), strconv.Itoa(o.pushBatch), strconv.Itoa(o.payload), path)}
		c.cmd.Stderr = &c.err
		c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if c.stdin, err = c.cmd.StdinPipe(); err != nil {
			return fail(err)
		}
		out, err := c.cmd.StdoutPipe()
		if err != nil {
			return fail(err)
		}
		if err := c.cmd.Start(); err != nil {
			return fail(fmt.Errorf("php: %w", err))
		}
		c.out = bufio.NewReader(out)
		callers = append(callers, c)
	}
	for _, c := range callers {
		if line, err := c.out.ReadString('\n'); err != nil || line != "ready\n" {
			return fail(fmt.Errorf("a PHP caller did not get ready: %q %v %s", line, err, c.err.String()))
		}
	}
	return func() (time.Duration, error) {
		defer os.RemoveAll(dir)
		for _, c := range callers {
			_, _ = io.WriteString(c.stdin, "go\n")
		}
		var cpu time.Duration
		var errs []string
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, c := range callers {
			wg.Go(func() {
				line, _ := c.out.ReadString('\n')
				_ = c.stdin.Close()
				werr := c.cmd.Wait()
				mu.Lock()
				defer mu.Unlock()
				if st := c.cmd.ProcessState; st != nil {
					cpu += st.UserTime() + st.SystemTime()
				}
				var res struct{ Calls, Messages, Refused int }
				switch {
				case werr != nil:
					errs = append(errs, fmt.Sprintf("%v: %s", werr, c.err.String()))
				case json.Unmarshal([]byte(line), &res) != nil:
					errs = append(errs, fmt.Sprintf("bad output %q", line))
				case res.Refused > 0:
					errs = append(errs, fmt.Sprintf("%d of %d pushes refused", res.Refused, res.Messages))
				}
			})
		}
		wg.Wait()
		if len(errs) > 0 {
			return cpu, fmt.Errorf("PHP callers: %s", strings.Join(errs, "; "))
		}
		return cpu, nil
	}, nil
}
