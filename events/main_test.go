package events_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a Dispatcher starts (its senders) must be gone once the
// tests' dispatchers are shut down.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
