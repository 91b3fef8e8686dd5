package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDefault(t *testing.T) {
	n, d, s := 0, time.Duration(0), "set"
	Default(&n, 5)
	Default(&d, time.Second)
	Default(&s, "default")
	if n != 5 || d != time.Second || s != "set" {
		t.Fatalf("got %d %s %q; want 5, 1s and the value already set", n, d, s)
	}
}

func TestChecks(t *testing.T) {
	var c Checks
	if c.Err() != nil {
		t.Fatal("no checks, an error")
	}
	c.Check(true, "never")
	c.Check(false, "size: %d must be positive", -1)
	c.Add(nil)
	c.Add(errors.New("url: bad"))
	err := c.Err()
	if err == nil || !strings.Contains(err.Error(), "size: -1 must be positive") || !strings.Contains(err.Error(), "url: bad") || strings.Contains(err.Error(), "never") {
		t.Fatalf("Err() = %v", err)
	}
}
