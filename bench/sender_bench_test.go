package bench

import (
	"fmt"
	"testing"
	"time"

	"github.com/wsbridge/wsbridge/sender"
)

// The batch push benchmarks: Sender.PushBatch and Sender.PushMany as the
// RPC server runs them (sender.Service, without the transport: its cost
// per call is bench/rpcload's), to 1, 100, 5,000 connections over loopback
// TCP (the flushers write them directly: one write system call per
// connection per pass) and 10,000 over in-memory pipes (no descriptors:
// writer goroutines). Each call carries batchSize messages, to the
// connections round-robin (to 1 connection: batchSize messages to it).
// One op is one message delivered, as in BenchmarkLoopbackWriteFloor (the
// write floor); the loop keeps at most a window of messages unwritten, so
// ns/op is the sustained rate. cpu-ns/op is the CPU time of the whole
// process per message, call-ns/op the wall time inside the Service calls
// per message.
var batchCases = []struct {
	transport string
	conns     int
}{
	{tcp, 1}, {tcp, 100}, {tcp, 5000}, {pipe, 10000},
}

const batchSize = 100

func BenchmarkSenderPushBatch(b *testing.B) {
	for _, c := range batchCases {
		b.Run(fmt.Sprintf("conns=%d/%s", c.conns, c.transport), func(b *testing.B) { benchBatch(b, c.transport, c.conns, false) })
	}
}

func BenchmarkSenderPushMany(b *testing.B) {
	for _, c := range batchCases {
		b.Run(fmt.Sprintf("conns=%d/%s", c.conns, c.transport), func(b *testing.B) { benchBatch(b, c.transport, c.conns, true) })
	}
}

func benchBatch(b *testing.B, transport string, n int, many bool) {
	cfg := benchConfig(n)
	cfg.QueueSize = 4096 // the window below, to one connection
	f := newFixture(b, transport, n, cfg)
	svc := sender.NewService(f.hub)
	const window = 2048 // messages pushed but not yet written, at most (plus a batch)
	frame := frameLen(len(payload))
	binary := 2
	msg := sender.Message{Data: string(payload), Opcode: &binary}
	// The calls' arguments, one per position in the round-robin.
	rounds := max(1, n/batchSize)
	batches := make([]*sender.PushBatchArgs, rounds)
	lists := make([]*sender.PushManyArgs, rounds)
	fd := int64(0)
	for r := range rounds {
		batches[r] = &sender.PushBatchArgs{Messages: make([]sender.PushArgs, batchSize)}
		lists[r] = &sender.PushManyArgs{FDs: make([]int64, batchSize), Message: msg}
		for i := range batchSize {
			fd = fd%int64(n) + 1
			batches[r].Messages[i] = sender.PushArgs{FD: fd, Message: msg}
			lists[r].FDs[i] = fd
		}
	}
	base := f.total.Load()
	var sent int64
	var calls time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime(b)
	for k := 0; sent < int64(b.N); k++ {
		t := time.Now()
		if many {
			got, _, err := svc.PushMany(lists[k%rounds])
			if err != nil || got != batchSize {
				b.Fatalf("PushMany reached %d of %d: %v", got, batchSize, err)
			}
		} else {
			res, err := svc.PushBatch(batches[k%rounds])
			if err != nil || len(res) != batchSize {
				b.Fatalf("PushBatch: %d results, %v", len(res), err)
			}
			for i, ok := range res {
				if !ok {
					b.Fatalf("PushBatch: message %d refused", i)
				}
			}
		}
		calls += time.Since(t)
		sent += batchSize
		if sent-(f.total.Load()-base)/frame > window {
			if err := f.waitTotal(base+(sent-window/2)*frame, 30*time.Second); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := f.waitTotal(base+sent*frame, 30*time.Second); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(sent), "cpu-ns/op")
	b.ReportMetric(float64(calls)/float64(sent), "call-ns/op")
}
