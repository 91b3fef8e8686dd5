package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"
)

const (
	settingsBegin = "<!-- settings:begin (generated from the flags by cmd/wsbridge/readme_test.go) -->"
	settingsEnd   = "<!-- settings:end -->"
)

// TestREADMESettings keeps the README's settings list equal to --help, so it
// cannot drift from the flags. WSBRIDGE_UPDATE_README=1 rewrites it.
func TestREADMESettings(t *testing.T) {
	var help bytes.Buffer
	if _, err := parseConfig([]string{"--help"}, func(string) (string, bool) { return "", false }, &help); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	want := settingsBegin + "\n```text\n" + help.String() + "```\n" + settingsEnd

	const path = "../../README.md"
	readme, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	begin := bytes.Index(readme, []byte(settingsBegin))
	end := bytes.Index(readme, []byte(settingsEnd))
	if begin < 0 || end < begin {
		t.Fatalf("README.md lacks the %q ... %q block", settingsBegin, settingsEnd)
	}
	got := string(readme[begin : end+len(settingsEnd)])
	if got == want {
		return
	}
	if os.Getenv("WSBRIDGE_UPDATE_README") == "1" {
		out := string(readme[:begin]) + want + string(readme[end+len(settingsEnd):])
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("README.md's settings differ from --help; run WSBRIDGE_UPDATE_README=1 go test ./cmd/wsbridge -run TestREADMESettings\n--- want\n%s", strings.TrimSpace(want))
}
