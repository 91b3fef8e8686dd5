package admin_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a test starts (hubs, servers, clients) must be gone at
// the end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
