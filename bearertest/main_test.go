package bearertest_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests: no handler,
// delay or fault writer may outlive Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
