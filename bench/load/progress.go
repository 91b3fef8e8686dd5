package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// progress draws one status line on a terminal (redrawn in place, at most
// every 100 ms), or prints a plain line every 2 s elsewhere.
type progress struct {
	w     io.Writer
	tty   bool
	quiet bool
	last  time.Time
	drawn bool
}

func newProgress(w io.Writer, quiet bool) *progress {
	p := &progress{w: w, quiet: quiet}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

const barWidth = 30

func (p *progress) update(target, phase string, done, total, rss int64, since time.Duration) {
	if p.quiet {
		return
	}
	every := 100 * time.Millisecond
	if !p.tty {
		every = 2 * time.Second
	}
	if time.Since(p.last) < every && done < total {
		return
	}
	p.last = time.Now()
	frac := 0.0
	if total > 0 {
		frac = min(1, float64(done)/float64(total))
	}
	fill := int(frac * barWidth)
	bar := strings.Repeat("█", fill) + strings.Repeat("░", barWidth-fill)
	line := fmt.Sprintf("%-10s %-28s %s %5.1f%%  %s/%s  rss %.0f MiB  %4.0fs", target, phase, bar, 100*frac, short(done), short(total), mib(rss), since.Seconds())
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.drawn = true
	} else {
		fmt.Fprintln(p.w, line)
	}
}

func (p *progress) status(target, what string) {
	if p.quiet {
		return
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%-10s %s", target, what)
		p.drawn = true
	} else {
		fmt.Fprintf(p.w, "%-10s %s\n", target, what)
	}
}

func (p *progress) done() {
	if p.tty && p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

func short(n int64) string {
	switch {
	case n >= 10_000_000:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	case n >= 10_000:
		return fmt.Sprintf("%.0fk", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}
