package bearer

import (
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tokenkit/bearer/bearertest"
)

// faultRig is a fixture with a MemoryStore holding its first grant and a
// Source over that store.
type faultRig struct {
	*fixture
	store *MemoryStore
	src   *Source
	// finished receives the error of every token request the Source
	// made, from its RefreshFinished hook.
	finished chan error
}

// faultLifetime is the access lifetime of faultRig tokens: the Source
// refreshes ahead from 75 s on and treats the token as expired at 90 s.
const faultLifetime = 100 * time.Second

func newFaultRig(t *testing.T, scfg bearertest.Config, edit func(*Config)) *faultRig {
	t.Helper()
	scfg.AccessLifetime = faultLifetime
	r := &faultRig{fixture: newFixture(t, scfg), finished: make(chan error, 100)}
	r.store = NewMemoryStore(r.token())
	cfg := r.config()
	cfg.Hooks.RefreshFinished = func(_ context.Context, _ time.Duration, err error) { r.finished <- err }
	if edit != nil {
		edit(&cfg)
	}
	r.src = NewSource(cfg, r.store)
	t.Cleanup(func() { r.src.Close() })
	return r
}

const (
	html500 = "<!DOCTYPE html><html><head><title>500 Internal Server Error</title></head><body><h1>Internal Server Error</h1><p>The upstream failed.</p></body></html>"
	html502 = "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)

// typedFault is an endpoint failure that lasts, and what its error must say.
type typedFault struct {
	name    string
	fault   bearertest.Fault
	timeout time.Duration
	check   func(t *testing.T, err error, re *RetrieveError)
}

// hugeAnswer is the typedFault whose memory TestEndpointHugeAnswerBounded
// measures.
var hugeAnswer = typedFault{
	name:    "50 MiB body",
	fault:   bearertest.Fault{HugeBody: 50 << 20},
	timeout: 5 * time.Second,
	check: func(t *testing.T, err error, re *RetrieveError) {
		if re.StatusCode != 200 || re.Err == nil || !strings.Contains(re.Err.Error(), "larger than") || re.Body != "" {
			t.Errorf("status, Err, body = %d, %v, %q; want 200, too large, no excerpt", re.StatusCode, re.Err, re.Body)
		}
	},
}

// TestEndpointFaults puts the Source in front of a token endpoint that
// misbehaves as bearertest.Fault describes. The cases wait on real time
// (timeouts, trickled bodies): they run side by side.
func TestEndpointFaults(t *testing.T) {
	t.Parallel() // waits on real time; touches nothing shared
	sideBySide(t,
		subtest{"typed errors within the timeout", testTypedFaults},
		subtest{"transient faults recover", testTransientFaults},
		subtest{"lost answer is retried", testLostAnswer},
		subtest{"consumed answer", testConsumedAnswer},
		subtest{"answer lost to the timeout", testAnswerLostToTimeout},
	)
}

// testTypedFaults injects each kind of endpoint failure persistently and
// checks, first, that a Source whose token is in its refresh-ahead window
// keeps serving that token while its background refresh fails, and then,
// once the token has expired, that Token returns a typed error within
// RefreshTimeout. Retry-After is TestRetryAfterThenDeadline's, on a fake
// clock.
func testTypedFaults(t *testing.T) {
	tests := []typedFault{
		{
			name:    "500 with HTML body",
			fault:   bearertest.Fault{Status: http.StatusInternalServerError, Body: html500},
			timeout: 5 * time.Second,
			check: func(t *testing.T, err error, re *RetrieveError) {
				if re.StatusCode != 500 || re.ErrorCode != "" || re.Attempts != 4 {
					t.Errorf("status, code, attempts = %d, %q, %d; want 500, \"\", 4", re.StatusCode, re.ErrorCode, re.Attempts)
				}
				if !strings.Contains(re.Body, "Internal Server Error") || len(re.Body) > 130 {
					t.Errorf("Body = %q, want a short excerpt of the page", re.Body)
				}
			},
		},
		{
			name:    "502 with HTML body",
			fault:   bearertest.Fault{Status: http.StatusBadGateway, Body: html502},
			timeout: 5 * time.Second,
			check: func(t *testing.T, err error, re *RetrieveError) {
				if re.StatusCode != 502 || re.ErrorCode != "" || re.Attempts != 4 {
					t.Errorf("status, code, attempts = %d, %q, %d; want 502, \"\", 4", re.StatusCode, re.ErrorCode, re.Attempts)
				}
				if !strings.Contains(re.Body, "502 Bad Gateway") {
					t.Errorf("Body = %q, want an excerpt of the page", re.Body)
				}
			},
		},
		{
			name:    "timeout",
			fault:   bearertest.Fault{Delay: time.Minute},
			timeout: 200 * time.Millisecond,
			check: func(t *testing.T, err error, re *RetrieveError) {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
				}
				if re.StatusCode != 0 || re.Attempts != 1 {
					t.Errorf("status, attempts = %d, %d; want 0 (no answer), 1", re.StatusCode, re.Attempts)
				}
			},
		},
		{
			name:    "connection reset mid-body",
			fault:   bearertest.Fault{Reset: true},
			timeout: 5 * time.Second,
			check: func(t *testing.T, err error, re *RetrieveError) {
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("error %v does not wrap io.ErrUnexpectedEOF", err)
				}
				if re.StatusCode != 200 || re.Body != "" || re.Attempts != 4 {
					t.Errorf("status, body, attempts = %d, %q, %d; want 200, no excerpt of a token answer, 4 (a lost answer is retried)",
						re.StatusCode, re.Body, re.Attempts)
				}
			},
		},
		{
			name:    "truncated JSON",
			fault:   bearertest.Fault{Truncate: true},
			timeout: 5 * time.Second,
			check: func(t *testing.T, err error, re *RetrieveError) {
				// Cut short, the answer's outcome is unknown: retried.
				if re.StatusCode != 200 || re.Err == nil || re.Body != "" || re.Attempts != 4 {
					t.Errorf("status, Err, body, attempts = %d, %v, %q, %d; want 200, malformed, no excerpt, 4",
						re.StatusCode, re.Err, re.Body, re.Attempts)
				}
			},
		},
		{
			name:    "trickle one byte in 200 ms",
			fault:   bearertest.Fault{Trickle: 200 * time.Millisecond},
			timeout: 500 * time.Millisecond,
			check: func(t *testing.T, err error, re *RetrieveError) {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
				}
				if re.StatusCode != 200 || re.Attempts != 1 {
					t.Errorf("status, attempts = %d, %d; want 200, 1", re.StatusCode, re.Attempts)
				}
			},
		},
	}
	var subtests []subtest
	for _, tt := range tests {
		subtests = append(subtests, subtest{tt.name, func(t *testing.T) { checkTypedFault(t, tt) }})
	}
	sideBySide(t, subtests...)
}

// TestEndpointHugeAnswerBounded checks what a 50 MiB answer costs: the
// Source reads at most 1 MiB of it. Not parallel: the process's
// allocations must be the refresh's own.
func TestEndpointHugeAnswerBounded(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	checkTypedFault(t, hugeAnswer)
	runtime.ReadMemStats(&after)
	// Two refreshes (in the background, then after expiry) read at
	// most 1 MiB each.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc >= 16<<20 {
		t.Errorf("two refreshes allocated %d bytes, want < 16 MiB (answers are capped at 1 MiB)", alloc)
	} else {
		t.Logf("two refreshes allocated %d KiB", alloc>>10)
	}
}

// checkTypedFault runs tt: a failing refresh in the background while the
// token is still served, then one that a caller waits for once it expired.
func checkTypedFault(t *testing.T, tt typedFault) {
	r := newFaultRig(t, bearertest.Config{}, func(c *Config) { c.RefreshTimeout = tt.timeout })
	f := tt.fault
	f.Count = 100 // the endpoint stays down
	r.srv.InjectFault(f)
	ctx := context.Background()
	cached, err := r.src.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bound := tt.timeout + time.Second // slack for a loaded machine

	checkErr := func(phase string, err error, elapsed time.Duration) {
		t.Helper()
		var re *RetrieveError
		if !errors.As(err, &re) {
			t.Fatalf("%s: error %v (%T) is not a *RetrieveError", phase, err, err)
		}
		if errors.Is(err, ErrReauthorize) {
			t.Errorf("%s: error %v matches ErrReauthorize; an outage must not ask for authorization", phase, err)
		}
		if elapsed >= bound {
			t.Errorf("%s: refresh took %v, want less than %v", phase, elapsed, bound)
		}
		secErrCheck(t, err, bearertest.DefaultClientSecret, r.grant.RefreshToken, r.grant.AccessToken, "at_unissued_", "rt_unissued_")
		tt.check(t, err, re)
	}

	// In the refresh-ahead window: the cached token is served while
	// the background refresh fails.
	r.clock.Advance(80 * time.Second)
	start := time.Now()
	for range 20 {
		got, err := r.src.Token(ctx)
		if err != nil || got != cached {
			t.Fatalf("Token() in the refresh-ahead window = %v, %v; want the cached token", got, err)
		}
	}
	bgErr := <-r.finished
	checkErr("background refresh", bgErr, time.Since(start))
	for range 20 {
		got, err := r.src.Token(ctx)
		if err != nil || got != cached {
			t.Fatalf("Token() after the failed background refresh = %v, %v; want the cached token", got, err)
		}
	}

	// Expired: callers wait for a refresh and get its error.
	r.clock.Advance(15 * time.Second)
	requests := r.srv.Stats().TokenRequests
	start = time.Now()
	got, err := r.src.Token(ctx)
	elapsed := time.Since(start)
	if err == nil {
		t.Fatalf("Token() after expiry = %v, want an error", got)
	}
	checkErr("Token after expiry", err, elapsed)
	t.Logf("the refresh after expiry failed in %v, after %d token requests", elapsed.Round(time.Millisecond), r.srv.Stats().TokenRequests-requests)
	if !r.srv.Alive(r.grant.RefreshToken) {
		t.Errorf("the refresh token died during an outage")
	}
}

// testTransientFaults checks that a fault that clears within the retries
// ends in one successful refresh, the server showing the retries.
func testTransientFaults(t *testing.T) {
	tests := []struct {
		name  string
		fault bearertest.Fault
	}{
		{"500 then OK", bearertest.Fault{Status: 500, Body: html500, Count: 2}},
		{"502 then OK", bearertest.Fault{Status: 502, Body: html502, Count: 3}},
		{"503 JSON then OK", bearertest.Fault{Status: 503, Count: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newFaultRig(t, bearertest.Config{}, nil)
			r.srv.InjectFault(tt.fault)
			r.clock.Advance(faultLifetime) // expired
			tok, err := r.src.Token(context.Background())
			if err != nil {
				t.Fatalf("Token() error = %v, want success after %d faults", err, tt.fault.Count)
			}
			st := r.srv.Stats()
			if st.Faults != tt.fault.Count || st.TokenRequests != tt.fault.Count+1 || st.Refreshes != 1 {
				t.Errorf("server faults, requests, refreshes = %d, %d, %d; want %d, %d, 1",
					st.Faults, st.TokenRequests, st.Refreshes, tt.fault.Count, tt.fault.Count+1)
			}
			if ss := r.src.Stats(); ss.Refreshes != 1 || ss.Failures != 0 {
				t.Errorf("source refreshes, failures = %d, %d; want 1, 0", ss.Refreshes, ss.Failures)
			}
			head, _ := r.srv.Head(r.grant.Family)
			if tok.RefreshToken != head.RefreshToken || !r.srv.Alive(tok.RefreshToken) {
				t.Errorf("Token() did not return the family's live head")
			}
		})
	}
}

// testLostAnswer checks that an answer lost mid-body (the
// connection reset after the status line) is retried like any other
// request whose outcome is unknown, as retrieve's comment promises: on a
// server with a reuse grace period the retry recovers the rotation within
// the same Token call.
func testLostAnswer(t *testing.T) {
	tests := []struct {
		name  string
		scfg  bearertest.Config
		fault bearertest.Fault
	}{
		{"reset before processing, strict server", bearertest.Config{}, bearertest.Fault{Reset: true}},
		{"reset after rotation, grace server", bearertest.Config{ReuseGrace: time.Minute}, bearertest.Fault{Reset: true, Consume: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newFaultRig(t, tt.scfg, nil)
			r.srv.InjectFault(tt.fault)
			r.clock.Advance(faultLifetime)
			tok, err := r.src.Token(context.Background())
			if err != nil {
				t.Fatalf("Token() error = %v, want the retry to succeed", err)
			}
			head, _ := r.srv.Head(r.grant.Family)
			if tok.RefreshToken != head.RefreshToken || !r.srv.Alive(tok.RefreshToken) {
				t.Errorf("Token() did not return the family's live head")
			}
		})
	}
}

// testConsumedAnswer loses the answer after the server rotated the
// refresh token (the gateway answers 502). The Source retries with the same
// grant. A strict server takes the retry for theft: invalid_grant, the
// family revoked, ErrReauthorize. A server with a reuse grace period
// answers the retry with the pair it already issued, and the Source ends
// holding the live head.
func testConsumedAnswer(t *testing.T) {
	lost := bearertest.Fault{Consume: true, Status: http.StatusBadGateway, Body: html502}

	t.Run("strict server", func(t *testing.T) {
		r := newFaultRig(t, bearertest.Config{}, nil)
		r.srv.InjectFault(lost)
		r.clock.Advance(faultLifetime)
		_, err := r.src.Token(context.Background())
		if !errors.Is(err, ErrReauthorize) {
			t.Fatalf("Token() error = %v, want ErrReauthorize", err)
		}
		var re *RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" || re.Attempts != 2 {
			t.Errorf("error = %#v, want a RetrieveError invalid_grant after 2 attempts", err)
		}
		st := r.srv.Stats()
		if st.Refreshes != 1 || st.ReuseAttempts != 1 || st.Revocations != 1 {
			t.Errorf("server refreshes, reuses, revocations = %d, %d, %d; want 1, 1, 1", st.Refreshes, st.ReuseAttempts, st.Revocations)
		}
		if r.srv.FamilyAlive(r.grant.Family) {
			t.Errorf("family alive after a reuse on a strict server")
		}
	})

	t.Run("grace server", func(t *testing.T) {
		r := newFaultRig(t, bearertest.Config{ReuseGrace: time.Minute}, nil)
		r.srv.InjectFault(lost)
		r.clock.Advance(faultLifetime)
		ctx := context.Background()
		tok, err := r.src.Token(ctx)
		if err != nil {
			t.Fatalf("Token() error = %v, want the retry to recover the rotation", err)
		}
		head, alive := r.srv.Head(r.grant.Family)
		if !alive || tok.RefreshToken != head.RefreshToken || tok.AccessToken != head.AccessToken {
			t.Errorf("Token() is not the family's live head")
		}
		if saved, err := r.store.Load(ctx); err != nil || saved.RefreshToken != head.RefreshToken {
			t.Errorf("store does not hold the live head (err %v)", err)
		}
		if st := r.srv.Stats(); st.Refreshes != 1 || st.GraceReuses != 1 || st.Revocations != 0 {
			t.Errorf("server refreshes, grace reuses, revocations = %d, %d, %d; want 1, 1, 0", st.Refreshes, st.GraceReuses, st.Revocations)
		}
	})
}

// testAnswerLostToTimeout lets the server rotate and then answer after
// RefreshTimeout. The refresh fails with DeadlineExceeded; the next one,
// by another Source on the store (a restarted process), finds the refresh
// recorded as begun. A strict server rejects the spent token and the error
// names the interruption (ErrInterrupted as well as ErrReauthorize); a
// grace server recovers the rotation. Only the first refresh has the short
// timeout: the second must not race it on a loaded machine.
func testAnswerLostToTimeout(t *testing.T) {
	lost := bearertest.Fault{Consume: true, Delay: time.Minute}
	tests := []struct {
		name    string
		scfg    bearertest.Config
		recover bool
	}{
		{"strict server", bearertest.Config{}, false},
		{"grace server", bearertest.Config{ReuseGrace: time.Minute}, true},
	}
	var subtests []subtest
	for _, tt := range tests {
		subtests = append(subtests, subtest{tt.name, func(t *testing.T) {
			r := newFaultRig(t, tt.scfg, func(c *Config) { c.RefreshTimeout = 300 * time.Millisecond })
			r.srv.InjectFault(lost)
			r.clock.Advance(faultLifetime)
			ctx := context.Background()
			if _, err := r.src.Token(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("first Token() error = %v, want DeadlineExceeded", err)
			}
			tok, err := r.source(r.store).Token(ctx)
			if tt.recover {
				head, _ := r.srv.Head(r.grant.Family)
				if err != nil || tok.RefreshToken != head.RefreshToken {
					t.Fatalf("second Token() = %v; want the live head", err)
				}
				return
			}
			if !errors.Is(err, ErrInterrupted) || !errors.Is(err, ErrReauthorize) {
				t.Fatalf("second Token() error = %v, want ErrInterrupted and ErrReauthorize", err)
			}
		}})
	}
	sideBySide(t, subtests...)
}
