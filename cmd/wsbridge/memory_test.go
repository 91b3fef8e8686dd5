package main

import (
	"testing"
	"time"
)

func TestBurstWatch(t *testing.T) {
	b := burstWatch{quiet: 2 * time.Second}
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	steps := []struct {
		at    float64
		churn uint64
		want  bool
	}{
		{0, 0, false},
		{1, 500, false},    // a burst under way
		{2, 1500, false},   // still
		{3, 1500, false},   // quiet for 1 s
		{4, 1500, true},    // quiet for 2 s: released
		{5, 1500, false},   // once
		{6, 1600, false},   // slow churn
		{9, 1600, false},   // quiet, but only 100 since the release
		{10, 2600, false},  // a second burst
		{12.5, 2600, true}, // over
		{20, 2600, false},  // nothing new
	}
	for _, s := range steps {
		if got := b.tick(at(s.at), s.churn); got != s.want {
			t.Errorf("tick at %vs, churn %d: %v, want %v", s.at, s.churn, got, s.want)
		}
	}
}
