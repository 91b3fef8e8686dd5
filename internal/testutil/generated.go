package testutil

import (
	"bytes"
	"os"
	"testing"
)

// UpdateDocsVar is the environment variable that lets CheckGenerated
// rewrite a document instead of failing.
const UpdateDocsVar = "WSBRIDGE_UPDATE_DOCS"

// CheckGenerated keeps the block of the file at path that runs from the
// line begin to the line end equal to begin + "\n" + body + end, so that a
// document cannot drift from the code it describes. With UpdateDocsVar=1
// it rewrites the block instead of failing.
func CheckGenerated(t testing.TB, path, begin, end, body string) {
	t.Helper()
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := begin + "\n" + body + end
	b := bytes.Index(doc, []byte(begin))
	e := bytes.Index(doc, []byte(end))
	if b < 0 || e < b {
		t.Fatalf("%s lacks the block %q ... %q", path, begin, end)
	}
	if string(doc[b:e+len(end)]) == want {
		return
	}
	if os.Getenv(UpdateDocsVar) == "1" {
		out := string(doc[:b]) + want + string(doc[e+len(end):])
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("%s's generated block %q is out of date; run %s=1 go test for this test\n--- want\n%s", path, begin, UpdateDocsVar, want)
}
