//go:build !unix

package bench

import "time"

// cpuTime is not measured here; benchmarks then omit cpu-ns/op.
func cpuTime() time.Duration { return 0 }
