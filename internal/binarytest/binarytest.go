// Package binarytest builds the llmgate command from this tree for tests
// that run it as a real process.
package binarytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Run builds the command in the package directory pkg (relative to the
// test's package) into a temporary file, stores its path in *binary, runs
// the tests and removes the file. TestMain calls it and exits with its
// result; a failed build panics, failing every test of the package.
func Run(m *testing.M, pkg string, binary *string) int {
	dir, err := os.MkdirTemp("", "llmgate-bin")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	*binary = filepath.Join(dir, "llmgate")
	build := exec.Command("go", "build", "-o", *binary, pkg)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		panic("build llmgate: " + err.Error())
	}
	return m.Run()
}
