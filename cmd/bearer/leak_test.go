package main

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a subcommand leaves a goroutine behind: the
// demo's workers, servers and progress printer all end with it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
