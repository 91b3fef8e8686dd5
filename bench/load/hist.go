package main

import (
	"math"
	"sync/atomic"
	"time"
)

// Latencies are counted in a histogram of logarithmic buckets: histPerDecade
// buckets per power of ten from 1 µs to 1,000 s, so a quantile read from it
// is within 6% of the measured value. A client process fills one with
// atomic adds (its connections' goroutines share it) and sends its counts
// to the driver, which adds up the processes' histograms.
const (
	histPerDecade = 40
	histDecades   = 9 // 1 µs … 1,000 s
	histBuckets   = histPerDecade*histDecades + 2
)

// hist counts latencies; bucket 0 is under 1 µs, the last one 1,000 s and over.
type hist struct {
	counts [histBuckets]atomic.Uint64
}

func bucketOf(d time.Duration) int {
	us := float64(d) / float64(time.Microsecond)
	if us < 1 {
		return 0
	}
	b := 1 + int(math.Log10(us)*histPerDecade)
	return min(b, histBuckets-1)
}

// bucketUpper is the upper bound of bucket b.
func bucketUpper(b int) time.Duration {
	if b == 0 {
		return time.Microsecond
	}
	return time.Duration(math.Pow(10, float64(b)/histPerDecade) * float64(time.Microsecond))
}

func (h *hist) add(d time.Duration) { h.counts[bucketOf(d)].Add(1) }

// snapshot returns the counts as a plain slice, trailing zeros trimmed.
func (h *hist) snapshot() []uint64 {
	out := make([]uint64, histBuckets)
	last := 0
	for i := range out {
		out[i] = h.counts[i].Load()
		if out[i] != 0 {
			last = i + 1
		}
	}
	return out[:last]
}

// histCounts is a histogram as the driver holds it: merged plain counts.
type histCounts []uint64

func (h *histCounts) merge(o []uint64) {
	if len(*h) < len(o) {
		*h = append(*h, make([]uint64, len(o)-len(*h))...)
	}
	for i, n := range o {
		(*h)[i] += n
	}
}

func (h histCounts) total() uint64 {
	var t uint64
	for _, n := range h {
		t += n
	}
	return t
}

// quantile returns the upper bound of the bucket holding quantile q.
func (h histCounts) quantile(q float64) time.Duration {
	t := h.total()
	if t == 0 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(t)))
	var run uint64
	for b, n := range h {
		run += n
		if run >= want && n > 0 {
			return bucketUpper(b)
		}
	}
	return bucketUpper(len(h) - 1)
}
