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

// maxSpent bounds the memory of spent refresh tokens: a store can lag
// behind by as many failed saves in a row and still not be trusted.
const maxSpent = 16

// wasSpent reports whether this Source spent refresh token rt.
func (s *Source) wasSpent(rt string) bool {
	if rt == "" {
		return false
	}
	fp := fingerprint(rt)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sp := range s.spent {
		if sp == fp {
			return true
		}
	}
	return false
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

// obtain produces a fresh token: the current one if another call already
// refreshed, one adopted from the store, or a new one from the token
// endpoint, saved before it is returned. Only one obtain runs at a time in
// a Source (singleflight); a Locker store extends that across processes.
func (s *Source) obtain(ctx context.Context, rejected *Token) (*Token, error) {
	now := s.now()
	cur := s.cur.Load()
	if cur != nil {
		switch {
		case rejected != nil && cur.tok.AccessToken != rejected.AccessToken && s.fresh(cur, now):
			return cur.tok, nil // refreshed since the rejection
		case rejected == nil && (cur.expireAt.IsZero() || now.Before(cur.refreshAt)):
			return cur.tok, nil // refreshed since the caller looked
		}
	}

	load := s.store.Load
	var lease Lease
	if l, ok := s.store.(Locker); ok {
		var err error
		if lease, err = l.Lock(ctx); err != nil {
			// Fail closed: without the lock another replica may be
			// spending the same refresh token.
			return nil, fmt.Errorf("bearer: locking the store: %w", err)
		}
		defer func() {
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := lease.Unlock(uctx); err != nil {
				s.logWarn("unlocking the store failed", err)
			}
		}()
		load = lease.Load
	}

	stored, err := load(ctx)
	if err != nil && !errors.Is(err, ErrNoToken) {
		return nil, fmt.Errorf("bearer: reading the store: %w", err)
	}
	now = s.now()
	if t := s.adoptable(stored, cur, rejected, now); t != nil {
		s.adopt(ctx, t, now)
		return t, nil
	}

	base := stored
	if base == nil || s.wasSpent(base.RefreshToken) {
		// The store is empty or lags behind (a save failed): the token
		// in memory is the newest.
		if cur != nil {
			base = cur.tok
		}
	}

	var newTok *Token
	interrupted := false
	if s.cfg.ClientCredentials {
		newTok, err = s.request(ctx, func(ctx context.Context) (*Token, error) {
			return s.cfg.clientCredentialsGrant(ctx)
		})
	} else {
		if base == nil {
			return nil, fmt.Errorf("bearer: no token to refresh; obtain one first (Config.Exchange) and save it: %w", ErrNoToken)
		}
		if base.RefreshToken == "" {
			return nil, s.reauthorize(ctx, fmt.Errorf("%w: the token has no refresh token", ErrReauthorize))
		}
		if !base.RefreshExpiry.IsZero() && !now.Before(base.RefreshExpiry) {
			return nil, s.reauthorize(ctx, fmt.Errorf("%w: the refresh token expired at %s", ErrReauthorize, fmtTime(base.RefreshExpiry)))
		}
		s.mu.Lock()
		dead, deadErr := s.dead, s.deadErr
		s.mu.Unlock()
		if dead != "" && fingerprint(base.RefreshToken) == dead {
			// Sending it again would only tell a strict server that a
			// stolen token is being replayed.
			return nil, deadErr
		}
		ours := s.wasSpent(base.RefreshToken)
		if lease != nil {
			if interrupted, err = lease.Begin(ctx, base); err != nil {
				return nil, fmt.Errorf("bearer: recording the refresh in the store: %w", err)
			}
		}
		if interrupted && !ours && rejected == nil && cur != nil && s.fresh(cur, now) && s.awaitOther(base.RefreshToken, now) {
			// Another Source began spending this refresh token and has
			// not saved what it got. It may be alive and holding the new
			// token until its store answers again (a Redis outage longer
			// than its lease), retrying the save at least every
			// maxSaveWait: spending the token a second time would make a
			// strict server revoke the whole family. While the current
			// token is good, wait awhile for that save, which a later
			// attempt adopts. Not for long: the other may have died, and
			// a server with a reuse grace answers a takeover only soon.
			return nil, errAwaitingSave
		}
		s.mu.Lock()
		s.spent = remember(s.spent, fingerprint(base.RefreshToken))
		s.mu.Unlock()
		newTok, err = s.request(ctx, func(ctx context.Context) (*Token, error) {
			return s.cfg.refreshGrant(ctx, base.RefreshToken)
		})
	}
	if err != nil {
		if errors.Is(err, ErrReauthorize) {
			// Another process may have won the race for this refresh
			// token: its result is in the store.
			if again, lerr := load(ctx); lerr == nil {
				if t := s.adoptable(again, cur, rejected, s.now()); t != nil && (base == nil || t.RefreshToken != base.RefreshToken) {
					s.adopt(ctx, t, s.now())
					return t, nil
				}
			}
			if interrupted {
				err = fmt.Errorf("%w: %w", ErrInterrupted, err)
			}
			if !s.cfg.ClientCredentials {
				s.mu.Lock()
				s.dead, s.deadErr = fingerprint(base.RefreshToken), err
				s.mu.Unlock()
			}
			return nil, s.reauthorize(ctx, err)
		}
		return nil, err
	}
	if newTok.RefreshToken == "" && base != nil {
		// The server kept the refresh token (RFC 6749 section 6 allows it).
		newTok.RefreshToken = base.RefreshToken
		if newTok.RefreshExpiry.IsZero() {
			newTok.RefreshExpiry = base.RefreshExpiry
		}
	}

	// Persist before use, with time of its own: the request may have used
	// up most of ctx's, and the rotated token must not be lost for that.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.refreshTimeout())
	defer cancel()
	if lease != nil {
		err = lease.CompareAndSwap(sctx, stored, newTok)
	} else {
		err = s.store.Save(sctx, newTok)
	}
	if err != nil {
		if (errors.Is(err, ErrConflict) || errors.Is(err, ErrLockLost)) && !s.cfg.ClientCredentials {
			// Someone else saved meanwhile: the fleet follows the store.
			if again, lerr := s.store.Load(sctx); lerr == nil {
				if t := s.adoptable(again, nil, rejected, s.now()); t != nil && t.RefreshToken != base.RefreshToken {
					s.logWarn("the store changed during a refresh; adopting its token", err)
					s.adopt(ctx, t, s.now())
					return t, nil
				}
			}
		}
		s.saveFailed(ctx, stored, newTok, err)
	} else {
		s.mu.Lock()
		s.pending = nil // a newer token is saved: an older unsaved one is moot
		s.mu.Unlock()
	}
	s.publish(newTok, s.now())
	return newTok, nil
}

// errAwaitingSave ends a refresh ahead of expiry that found another
// Source's refresh of the same refresh token begun and not saved.
var errAwaitingSave = errors.New("bearer: another process's refresh of this token is not saved yet")

// awaitSave is how long a refresh ahead of expiry waits, from the first
// sight, for another Source's unsaved refresh to be saved: twice the
// longest pause between its save retries.
const awaitSave = 2 * maxSaveWait

// awaitOther reports whether a refresh of rt, begun by another Source and
// not saved, should still be waited for at now, and logs the first sight.
func (s *Source) awaitOther(rt string, now time.Time) bool {
	fp := fingerprint(rt)
	s.mu.Lock()
	first := s.awaited != fp
	if first {
		s.awaited, s.awaitedSince = fp, now
	}
	wait := now.Sub(s.awaitedSince) < awaitSave
	s.mu.Unlock()
	if first && wait {
		s.logWarn("the store shows another process's refresh of this token begun and not saved; the current token is still valid, so this process waits for that save instead of spending the token again", errAwaitingSave)
	}
	return wait
}

// remember returns spent with fp in front, once, keeping at most maxSpent.
func remember(spent []string, fp string) []string {
	out := make([]string, 0, maxSpent)
	out = append(out, fp)
	for _, sp := range spent {
		if sp != fp && len(out) < maxSpent {
			out = append(out, sp)
		}
	}
	return out
}

// adoptable returns stored if it is a token this Source may switch to
// instead of refreshing: another one than it holds and than was rejected,
// not the one it spent, and fresh.
func (s *Source) adoptable(stored *Token, cur *entry, rejected *Token, now time.Time) *Token {
	if stored == nil || stored.AccessToken == "" {
		return nil
	}
	if cur != nil && stored.AccessToken == cur.tok.AccessToken && stored.RefreshToken == cur.tok.RefreshToken {
		return nil
	}
	if rejected != nil && stored.AccessToken == rejected.AccessToken {
		return nil
	}
	if s.wasSpent(stored.RefreshToken) {
		return nil
	}
	if !s.fresh(s.newEntry(stored, now), now) {
		return nil
	}
	return stored
}

// adopt publishes a token read from the store. Only a switch away from a
// token held in memory counts as adopting; the first load does not.
func (s *Source) adopt(ctx context.Context, t *Token, now time.Time) {
	if s.cur.Load() != nil {
		s.adopted.Add(1)
		if h := s.cfg.Hooks.Adopted; h != nil {
			h(ctx)
		}
	}
	s.publish(t, now)
}

// request runs one token request with the hooks, counters and log lines
// around it.
func (s *Source) request(ctx context.Context, do func(context.Context) (*Token, error)) (*Token, error) {
	if h := s.cfg.Hooks.RefreshStarted; h != nil {
		h(ctx)
	}
	start := time.Now()
	t, err := do(ctx)
	d := time.Since(start)
	if err != nil {
		s.failures.Add(1)
		s.logWarn("token refresh failed", err)
	} else {
		s.refreshes.Add(1)
		s.lastRefresh.Store(s.now().UnixNano())
		if l := s.cfg.Logger; l != nil {
			l.LogAttrs(ctx, slog.LevelDebug, "bearer: token refreshed", slog.Duration("took", d), slog.Time("expiry", t.Expiry))
		}
	}
	if h := s.cfg.Hooks.RefreshFinished; h != nil {
		h(ctx, d, err)
	}
	return t, err
}

func (s *Source) reauthorize(ctx context.Context, err error) error {
	if h := s.cfg.Hooks.Reauthorize; h != nil {
		h(ctx, err)
	}
	if l := s.cfg.Logger; l != nil {
		l.LogAttrs(ctx, slog.LevelError, "bearer: authorization needed again", slog.String("error", err.Error()))
	}
	return err
}

func (s *Source) logWarn(msg string, err error) {
	if l := s.cfg.Logger; l != nil {
		l.LogAttrs(context.Background(), slog.LevelWarn, "bearer: "+msg, slog.String("error", err.Error()))
	}
}
