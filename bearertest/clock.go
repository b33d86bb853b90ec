package bearertest

import (
	"sync"
	"time"
)

// Clock is a fake clock that tests move by hand. Pass its Now method as
// Config.Now here and as bearer.Config.Now on the client side, so that
// both agree on when tokens expire without anyone sleeping. A Clock is safe
// for concurrent use.
type Clock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

// NewClock returns a Clock showing t; a zero t means a fixed date in 2026.
func NewClock(t time.Time) *Clock {
	if t.IsZero() {
		t = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	}
	return &Clock{t: t}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
