// Package config holds what the packages' Config structs share: zero
// values that mean a default, and validation that reports every problem.
package config

import (
	"errors"
	"fmt"
)

// Default sets *p to def when *p is the zero value.
func Default[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// Checks collects validation failures.
type Checks struct{ errs []error }

// Check records a failure, formatted like fmt.Errorf, unless ok.
func (c *Checks) Check(ok bool, format string, args ...any) {
	if !ok {
		c.errs = append(c.errs, fmt.Errorf(format, args...))
	}
}

// Add records err unless it is nil.
func (c *Checks) Add(err error) {
	if err != nil {
		c.errs = append(c.errs, err)
	}
}

// Err returns every failure joined, or nil.
func (c *Checks) Err() error { return errors.Join(c.errs...) }
