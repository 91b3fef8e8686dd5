package sender_test

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/wsbridge/wsbridge/bridge"
	"github.com/wsbridge/wsbridge/internal/testutil"
	"github.com/wsbridge/wsbridge/sender"
)

func TestCodesTable(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range sender.Codes {
		if seen[c.Code] {
			t.Errorf("code %q twice", c.Code)
		}
		seen[c.Code] = true
		if http.StatusText(c.Status) == "" || c.Status < 400 {
			t.Errorf("%s: status %d", c.Code, c.Status)
		}
		if got := sender.Status(c.Code); got != c.Status {
			t.Errorf("Status(%q) = %d, want %d", c.Code, got, c.Status)
		}
		if sender.IsCode(c.Code) == c.HTTPOnly {
			t.Errorf("IsCode(%q) = %v with HTTPOnly %v", c.Code, !c.HTTPOnly, c.HTTPOnly)
		}
		if c.Err == nil {
			continue
		}
		// The hub wraps its errors with the fd or the limit.
		var e *sender.Error
		if err := sender.ToError(fmt.Errorf("fd 7: %w", c.Err)); !errors.As(err, &e) || e.Code != c.Code {
			t.Errorf("ToError(%v) = %v, want code %s", c.Err, err, c.Code)
		}
	}
	if sender.IsCode("nope") || sender.Status("nope") != http.StatusInternalServerError {
		t.Error("an unknown code is a code")
	}
	var e *sender.Error
	if err := sender.ToError(errors.New("disk on fire")); !errors.As(err, &e) || e.Code != sender.CodeInternal {
		t.Errorf("ToError(other) = %v, want internal", err)
	}
	if sender.ToError(nil) != nil {
		t.Error("ToError(nil) != nil")
	}
	// Every error of the hub's push API that is not "not delivered" has a code.
	for _, err := range []error{bridge.ErrInvalidFD, bridge.ErrTooLarge, bridge.ErrInvalidOpcode, bridge.ErrInvalidCloseCode,
		bridge.ErrInvalidUTF8, bridge.ErrInvalidName, bridge.ErrTooManyGroups, bridge.ErrHubClosed} {
		if err := sender.ToError(err); !errors.As(err, &e) || e.Code == sender.CodeInternal {
			t.Errorf("ToError(%v) = %v: no code of its own", err, err)
		}
	}
}

const (
	codesBegin = "<!-- codes:begin (generated from sender.Codes by sender/errors_test.go) -->"
	codesEnd   = "<!-- codes:end -->"
)

// TestCodesDocumented keeps the code tables of docs/PROTOCOL.md (the RPC
// codes) and docs/ADMIN.md (all, with statuses) equal to sender.Codes, and
// the PHP client's ServiceException naming every RPC code.
func TestCodesDocumented(t *testing.T) {
	var rpcTable, httpTable strings.Builder
	rpcTable.WriteString("| code | when |\n|------|------|\n")
	httpTable.WriteString("| code | status | when |\n|------|--------|------|\n")
	for _, c := range sender.Codes {
		if !c.HTTPOnly {
			fmt.Fprintf(&rpcTable, "| `%s` | %s |\n", c.Code, c.When)
		}
		fmt.Fprintf(&httpTable, "| `%s` | %d | %s |\n", c.Code, c.Status, c.When)
	}
	testutil.CheckGenerated(t, "../docs/PROTOCOL.md", codesBegin, codesEnd, rpcTable.String())
	testutil.CheckGenerated(t, "../docs/ADMIN.md", codesBegin, codesEnd, httpTable.String())

	php, err := os.ReadFile("../php-client/src/Exception/ServiceException.php")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range sender.Codes {
		if !c.HTTPOnly && !strings.Contains(string(php), c.Code) {
			t.Errorf("php-client's ServiceException does not name the code %s", c.Code)
		}
	}
}
