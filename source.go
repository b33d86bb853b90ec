package bearer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// TokenSource supplies tokens. [Source] is the implementation that
// refreshes and persists; a [Transport] accepts any other too.
type TokenSource interface {
	Token(ctx context.Context) (*Token, error)
}

// Source is a [TokenSource] that keeps a token valid forever: it refreshes
// before expiry, persists every new token to its [Store] before anyone uses
// it, and collapses concurrent refreshes into one.
//
// A Source is safe for concurrent use by multiple goroutines. Create it
// with [NewSource]; tokens it returns are shared and must not be modified.
//
// While the current token is fresh, Token is one atomic load and a clock
// read. In the refresh-ahead window it starts one background refresh and
// returns the current token at once; only callers holding no valid token
// wait. A refresh runs on a context detached from callers (with
// RefreshTimeout), so a caller that gives up never loses a rotated token.
type Source struct {
	cfg   Config
	store Store
	now   func() time.Time

	cur   atomic.Pointer[entry]
	group singleflight.Group

	// ahead is set while the one background refresh runs; aheadAfter
	// (unix nanoseconds) delays the next one after a failure.
	ahead      atomic.Bool
	aheadAfter atomic.Int64

	// mu guards the fields below it and wg.Add. Refresh tokens are kept
	// as fingerprints only, so that no print of a Source shows one.
	mu           sync.Mutex
	spent        []string  // the refresh tokens this Source spent last, newest first
	dead         string    // a refresh token the server rejected: never sent again
	deadErr      error     // the rejection
	awaited      string    // a refresh token another Source began spending and has not saved,
	awaitedSince time.Time // first seen then
	// pending is a token in use but not saved. It is written only inside
	// the singleflight, so no refresh runs while it is saved.
	pending *pendingSave
	saving  bool // the save retry goroutine runs
	closed  bool
	done    chan struct{} // closed by Close
	wg      sync.WaitGroup

	refreshes, failures, adopted, rejected, saveFailures atomic.Int64
	lastRefresh                                          atomic.Int64
}

// entry is the published token with its precomputed deadlines; zero
// deadlines mean the token never expires.
type entry struct {
	tok       *Token
	refreshAt time.Time // a background refresh starts
	expireAt  time.Time // callers wait for a refresh
}

// pendingSave is a token to save over old, what the store held when the
// save failed.
type pendingSave struct {
	old, new *Token
}

// NewSource returns a Source for cfg that keeps its tokens in store; a nil
// store means a new [MemoryStore]. Nothing is read or sent until the
// first Token call; configuration errors are reported there.
func NewSource(cfg Config, store Store) *Source {
	if store == nil {
		store = NewMemoryStore(nil)
	}
	s := &Source{cfg: cfg, store: store, now: cfg.Now, done: make(chan struct{})}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Token returns a valid token, refreshing as needed. It never returns an
// expired token. If ctx ends while a refresh runs, Token returns ctx's
// error and the refresh still completes and is saved.
func (s *Source) Token(ctx context.Context) (*Token, error) {
	if e := s.cur.Load(); e != nil {
		if e.expireAt.IsZero() {
			return e.tok, nil
		}
		now := s.now()
		if now.Before(e.refreshAt) {
			return e.tok, nil
		}
		if now.Before(e.expireAt) {
			s.refreshAhead(now)
			return e.tok, nil
		}
	}
	return s.wait(ctx, nil)
}

// Refresh reports that the server rejected the token rejected (as with a
// 401) and returns a new one. It refreshes only while rejected is still
// the current token; otherwise it returns the current one, so many
// concurrent calls with the same rejected token cause one refresh. A nil
// rejected is the same as Token.
func (s *Source) Refresh(ctx context.Context, rejected *Token) (*Token, error) {
	if rejected == nil {
		return s.Token(ctx)
	}
	if e := s.cur.Load(); e != nil && e.tok.AccessToken != rejected.AccessToken && s.fresh(e, s.now()) {
		return e.tok, nil
	}
	s.rejected.Add(1)
	if h := s.cfg.Hooks.TokenRejected; h != nil {
		h(ctx)
	}
	return s.wait(ctx, rejected)
}

// String describes s by its configuration, redacted; it shows no token.
func (s *Source) String() string {
	return fmt.Sprintf("bearer.Source{Config:%v Store:%T}", s.cfg, s.store)
}

// Format makes every fmt verb print String: the fields of a Source hold
// tokens and the client secret.
func (s *Source) Format(f fmt.State, verb rune) { f.Write([]byte(s.String())) }

// LogValue makes slog print s as String does.
func (s *Source) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Stats returns a snapshot of the Source's counters.
func (s *Source) Stats() Stats {
	st := Stats{
		Refreshes:    s.refreshes.Load(),
		Failures:     s.failures.Load(),
		Adopted:      s.adopted.Load(),
		Rejected:     s.rejected.Load(),
		SaveFailures: s.saveFailures.Load(),
	}
	if n := s.lastRefresh.Load(); n != 0 {
		st.LastRefresh = time.Unix(0, n)
	}
	return st
}

// Close stops the Source's background work: it waits for a running
// background refresh and ends the retrying of a failed save after one last
// attempt, whose error it returns. Token and Refresh keep working after
// Close but start no background work.
func (s *Source) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	s.mu.Unlock()
	s.wg.Wait()
	var err error
	// Twice: the first call may only join a refresh in flight.
	for range 2 {
		s.mu.Lock()
		p := s.pending
		s.mu.Unlock()
		if p == nil {
			return nil
		}
		err = s.savePendingOnce()
	}
	return err
}

func (s *Source) refreshTimeout() time.Duration {
	if s.cfg.RefreshTimeout > 0 {
		return s.cfg.RefreshTimeout
	}
	return 30 * time.Second
}

// fresh reports whether e's token may still be handed out at now.
func (s *Source) fresh(e *entry, now time.Time) bool {
	return e.expireAt.IsZero() || now.Before(e.expireAt)
}

// wait joins the one refresh in flight, or starts it, and waits for its
// result or for ctx to end.
func (s *Source) wait(ctx context.Context, rejected *Token) (*Token, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bearer: waiting for a token: %w", context.Cause(ctx))
	}
	for {
		ch := s.group.DoChan("refresh", func() (any, error) {
			// Detached: the caller that started the refresh may leave,
			// but a rotated token must still be saved.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.refreshTimeout())
			defer cancel()
			return s.obtain(ctx, rejected)
		})
		select {
		case r := <-ch:
			if errors.Is(r.Err, errAwaitingSave) {
				// Joined a refresh ahead, started while the token was
				// fresh, that waits for another process's save. The
				// token may be fresh still; if not, the next refresh
				// takes over.
				if e := s.cur.Load(); e != nil && s.fresh(e, s.now()) &&
					(rejected == nil || e.tok.AccessToken != rejected.AccessToken) {
					return e.tok, nil
				}
				continue
			}
			if r.Err != nil {
				return nil, r.Err
			}
			if tok, ok := r.Val.(*Token); ok {
				return tok, nil
			}
			// Joined a retried save, which yields no token: now that it
			// is done, refresh (or find the token fresh).
		case <-ctx.Done():
			return nil, fmt.Errorf("bearer: waiting for a token: %w", context.Cause(ctx))
		}
	}
}

// refreshAhead starts the one background refresh, unless one runs, the
// last failed moments ago, or the Source is closed.
func (s *Source) refreshAhead(now time.Time) {
	if now.UnixNano() < s.aheadAfter.Load() || !s.ahead.CompareAndSwap(false, true) {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.ahead.Store(false)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer s.ahead.Store(false)
		_, err, _ := s.group.Do("refresh", func() (any, error) {
			ctx, cancel := context.WithTimeout(context.Background(), s.refreshTimeout())
			defer cancel()
			return s.obtain(ctx, nil)
		})
		if err != nil {
			// Callers still hold a valid token; try again a little later
			// (a second after this attempt began) rather than on every
			// call. Failures were reported by obtain.
			s.aheadAfter.Store(now.Add(time.Second).UnixNano())
		}
	}()
}

// publish makes t the current token.
func (s *Source) publish(t *Token, now time.Time) {
	s.cur.Store(s.newEntry(t, now))
}

func (s *Source) newEntry(t *Token, now time.Time) *entry {
	e := &entry{tok: t}
	if t.Expiry.IsZero() {
		return e
	}
	from := now
	if !t.obtained.IsZero() && t.obtained.Before(now) {
		from = t.obtained
	}
	life := max(t.Expiry.Sub(from), 0)
	leeway := s.cfg.Leeway
	if leeway <= 0 {
		leeway = min(10*time.Second, life/10)
	}
	ahead := s.cfg.RefreshAhead
	if ahead == 0 {
		ahead = min(5*time.Minute, life/4)
	}
	// A window longer than the lifetime would make every new token look
	// stale at once and refresh on every call.
	leeway = min(leeway, life/2)
	ahead = min(max(ahead, leeway), life*3/4)
	e.expireAt = t.Expiry.Add(-leeway)
	e.refreshAt = t.Expiry.Add(-ahead)
	if e.expireAt.IsZero() {
		// A token expiring exactly at the zero time plus leeway: keep
		// "zero means never" unambiguous.
		e.expireAt = e.expireAt.Add(-1)
	}
	return e
}

func (s *Source) logWarn(msg string, err error) {
	if l := s.cfg.Logger; l != nil {
		l.LogAttrs(context.Background(), slog.LevelWarn, "bearer: "+msg, slog.String("error", err.Error()))
	}
}
