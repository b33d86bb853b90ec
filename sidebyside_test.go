package bearer

import (
	"sync"
	"testing"
)

// subtest is a named test function.
type subtest struct {
	name string
	run  func(*testing.T)
}

// sideBySide runs each subtest at once, on goroutines of its own, outside
// the test binary's limit on parallel tests (-parallel, GOMAXPROCS by
// default): for a few cases that mostly wait on real time, or that each
// need a core. A case must not race a short deadline against the others'
// load: give timeouts it must meet room to spare.
func sideBySide(t *testing.T, subtests ...subtest) {
	var wg sync.WaitGroup
	for _, st := range subtests {
		wg.Go(func() { t.Run(st.name, st.run) })
	}
	wg.Wait()
}
