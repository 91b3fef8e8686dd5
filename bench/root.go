package bench

import (
	"os"
	"path/filepath"
)

// ModuleRoot returns the directory of the go.mod above the working
// directory, where the load tools find the PHP scripts they run.
func ModuleRoot() string {
	dir, _ := os.Getwd()
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	return dir
}
