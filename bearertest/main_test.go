package bearertest_test

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
)

// TestMain fails the run if any goroutine is still inside a Server method
// once every test has closed its server: no handler, delay or fault writer
// may outlive Close.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := serverGoroutines(); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines outlived Close:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

func serverGoroutines() string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var leaked []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "bearertest.(*Server).") {
			leaked = append(leaked, g)
		}
	}
	return strings.Join(leaked, "\n\n")
}
