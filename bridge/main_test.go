package bridge_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine the hub starts (keepalive, readers, writers) must be gone
// once the tests' hubs are shut down.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
