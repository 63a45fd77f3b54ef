//go:build !unix

package usage

import "time"

// cpuTime is not measured here.
func cpuTime() time.Duration { return 0 }
