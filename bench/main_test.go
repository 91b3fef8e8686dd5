package bench

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a fixture starts (hub readers, writers and keepalive, the
// HTTP server, the drainers) must be gone once the fixture is closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
