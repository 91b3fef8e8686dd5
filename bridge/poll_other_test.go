//go:build !linux

package bridge_test

import (
	"strings"
	"testing"

	"github.com/wsbridge/wsbridge/bridge"
)

// Without epoll the poll read mode is refused at configuration, by name.
func TestPollReadModeNeedsLinux(t *testing.T) {
	_, err := bridge.New(bridge.Config{ReadMode: bridge.ReadModePoll})
	if err == nil || !strings.Contains(err.Error(), "poll read mode needs Linux") {
		t.Fatalf("New in poll mode = %v, want an error saying the poll read mode needs Linux", err)
	}
}
