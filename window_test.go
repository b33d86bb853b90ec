package bearer

import (
	"testing"
	"time"
)

// Windows configured longer than a token lives must not make a new token
// stale at once: that would refresh on every call.
func TestWindowsLongerThanLifetime(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name          string
		leeway, ahead time.Duration
	}{
		{name: "RefreshAhead 10 min", ahead: 10 * time.Minute},
		{name: "Leeway 200 s", leeway: 200 * time.Second},
		{name: "both", leeway: time.Hour, ahead: 2 * time.Hour},
		{name: "defaults"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSource(Config{Leeway: tt.leeway, RefreshAhead: tt.ahead, Now: func() time.Time { return now }}, nil)
			tok := &Token{AccessToken: "a", Expiry: now.Add(100 * time.Second), Obtained: now}
			e := s.newEntry(tok, now)
			if !now.Before(e.refreshAt) || !now.Before(e.expireAt) {
				t.Errorf("a new 100 s token: refreshAt in %v, expireAt in %v; want both ahead of now",
					e.refreshAt.Sub(now), e.expireAt.Sub(now))
			}
			if e.refreshAt.After(e.expireAt) {
				t.Errorf("refreshAt %v after expireAt %v", e.refreshAt, e.expireAt)
			}
		})
	}
}
