package events

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// logEvery is the least time between two log lines of one kind (a drop
// reason, a delivery failure); the lines in between are counted, and the
// latest of them is logged at the end of the interval, with the count of
// the others ("omitted").
const logEvery = time.Second

// limitedLog writes at most one line per kind and interval, so that a flood
// of drops or failures does not flood the log. The counts in Stats stay
// exact; each line says how many of its kind were left out before it
// ("omitted").
type limitedLog struct {
	log *slog.Logger

	mu      sync.Mutex
	kinds   map[string]*logKind
	timer   *time.Timer // flushes what was left out, while any was
	stopped bool

	// flushes counts the timers' flushes, from when a timer is set until
	// its flush has written its lines (or it was stopped before firing):
	// stop waits for it, since Timer.Stop cannot stop a timer that has
	// already fired, and the lines of that flush must not come late.
	flushes sync.WaitGroup
}

type logKind struct {
	last     time.Time // when a line of this kind was written
	level    slog.Level
	msg      string
	args     []any // of the latest line held back
	repeated int   // lines held back since the last one written
}

func newLimitedLog(log *slog.Logger) *limitedLog {
	return &limitedLog{log: log, kinds: map[string]*logKind{}}
}

// logf writes msg with args now, unless a line of this kind was written
// less than logEvery ago.
func (l *limitedLog) logf(kind string, level slog.Level, msg string, args ...any) {
	now := time.Now()
	l.mu.Lock()
	k := l.kinds[kind]
	if k == nil {
		k = &logKind{}
		l.kinds[kind] = k
	}
	if l.stopped || now.Sub(k.last) >= logEvery {
		omitted := k.repeated
		k.last, k.repeated, k.args = now, 0, nil
		l.mu.Unlock()
		if omitted > 0 {
			args = append(args, "omitted", omitted)
		}
		l.log.Log(context.Background(), level, msg, args...)
		return
	}
	k.level, k.msg, k.args = level, msg, args
	k.repeated++
	if l.timer == nil {
		l.flushes.Add(1) // under mu, before stop sets stopped: never after its Wait
		l.timer = time.AfterFunc(logEvery, func() {
			defer l.flushes.Done()
			l.flush()
		})
	}
	l.mu.Unlock()
}

// flush writes, for each kind with lines held back, the latest of them
// with the count of the others.
func (l *limitedLog) flush() {
	type line struct {
		level slog.Level
		msg   string
		args  []any
	}
	var lines []line
	now := time.Now()
	l.mu.Lock()
	l.timer = nil
	for _, k := range l.kinds {
		if k.repeated == 0 {
			continue
		}
		args := k.args
		if k.repeated > 1 {
			args = append(args, "omitted", k.repeated-1)
		}
		lines = append(lines, line{k.level, k.msg, args})
		k.last, k.repeated, k.args = now, 0, nil
	}
	l.mu.Unlock()
	for _, ln := range lines {
		l.log.Log(context.Background(), ln.level, ln.msg, ln.args...)
	}
}

// stop writes what was left out and logs every later line at once. When
// it returns, every line held back has been written, none will be later,
// and no flush is under way.
func (l *limitedLog) stop() {
	l.mu.Lock()
	l.stopped = true // no timer is set from now on
	if l.timer != nil && l.timer.Stop() {
		l.flushes.Done() // stopped before it fired: its flush never runs
	}
	l.timer = nil
	l.mu.Unlock()
	// A timer that fired before Stop may still be writing its lines (or
	// not have started): wait for it, so that they are all written before
	// stop returns.
	l.flushes.Wait()
	l.flush()
}
