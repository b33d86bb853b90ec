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
// it, and collapses concurrent refreshes into one. It presents each refresh
// token to the server at most once; docs/refresh.md states the protocol.
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

	cur   atomic.Pointer[entry] // the published token
	group singleflight.Group    // collapses callers that want the same result

	// sem is the refresh lock, a one-slot semaphore so that waiting can
	// honour a context. Its holder (a refresh, a save retry, Close) is
	// the only one to read or write the fields below it.
	sem     chan struct{}
	head    *Token // the newest token this Source knows
	unsaved bool   // head is not known to be in the store
	anchor  *Token // when unsaved: what the store held when the unsaved rotations began
	held    Lease  // the store's lock, kept while head is unsaved
	spent   string // fingerprint of the refresh token sent last
	dead    string // fingerprint of a refresh token the server rejected
	deadErr error  // that rejection
	saveErr error  // why head is unsaved
	// refusal is the token endpoint's refusal of the client, repeated to
	// callers until refusedUntil.
	refusal      error
	refusedUntil time.Time

	// ahead is set while the one background refresh runs; aheadAfter
	// (unix nanoseconds) delays the next one after a failure.
	ahead      atomic.Bool
	aheadAfter atomic.Int64

	mu       sync.Mutex // guards closed, retrying and wg.Add
	closed   bool
	retrying bool          // the save retry goroutine runs
	done     chan struct{} // closed by Close
	wg       sync.WaitGroup

	refreshes, failures, adopted, rejected, saveFailures, suppressed atomic.Int64
	lastRefresh                                                      atomic.Int64
}

// ErrClosed is returned by a [Source] that needs to refresh after Close.
var ErrClosed = errors.New("bearer: the Source is closed")

// rejectionPause is how long after a refresh that replaced a rejected
// token a rejection of the new one is not refreshed again.
const rejectionPause = time.Minute

// errRejectedAgain is Refresh's answer when the token it was told was
// rejected had itself replaced a rejected one moments ago; a Transport
// then returns the server's 401 as it is.
var errRejectedAgain = errors.New("bearer: the server rejected a token obtained moments ago for the same reason; not refreshing again for a minute")

// errZeroSource is returned by a Source that NewSource did not make.
var errZeroSource = errors.New("bearer: Source used without NewSource")

// entry is the published token with its precomputed deadlines; zero
// deadlines mean the token never expires.
type entry struct {
	tok       *Token
	refreshAt time.Time // a background refresh starts
	expireAt  time.Time // callers wait for a refresh
	// replacedRejected is when tok was obtained in place of a token the
	// server rejected; zero otherwise.
	replacedRejected time.Time
}

// NewSource returns a Source for cfg that keeps its tokens in store; a nil
// store means a new [MemoryStore]. Nothing is read or sent until the
// first Token call; configuration errors are reported there.
func NewSource(cfg Config, store Store) *Source {
	if store == nil {
		store = NewMemoryStore(nil)
	}
	s := &Source{cfg: cfg, store: store, now: cfg.Now, done: make(chan struct{}), sem: make(chan struct{}, 1)}
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
	return s.wait(ctx, "token", want{})
}

// Refresh reports that the server rejected the token rejected (as with a
// 401) and returns another one. It refreshes only while rejected is still
// the current token; otherwise it returns the current one, so many
// concurrent calls with the same rejected token cause one refresh. It never
// returns rejected's access token. A nil rejected is the same as Token.
func (s *Source) Refresh(ctx context.Context, rejected *Token) (*Token, error) {
	return s.refreshRejected(ctx, rejected, false)
}

// refreshAfter401 is Refresh for a [Transport] whose request was answered
// 401 with rejected. When rejected itself replaced a rejected token less
// than a minute ago, the server will reject the next one too (a wrong
// audience, a clock off, an API that rejects everything): unless the store
// holds another token, it returns errRejectedAgain without a token
// request, and the Transport returns the 401, since a refresh per request
// would be a storm. Refresh, called directly, always refreshes a rejected
// current token.
func (s *Source) refreshAfter401(ctx context.Context, rejected *Token) (*Token, error) {
	return s.refreshRejected(ctx, rejected, true)
}

func (s *Source) refreshRejected(ctx context.Context, rejected *Token, after401 bool) (*Token, error) {
	if rejected == nil {
		return s.Token(ctx)
	}
	if s.sem == nil {
		return nil, errZeroSource
	}
	w := want{rejected: rejected.AccessToken, after401: after401}
	if e := s.cur.Load(); s.satisfies(e, w, s.now()) {
		return e.tok, nil
	}
	s.rejected.Add(1)
	if h := s.cfg.Hooks.TokenRejected; h != nil {
		h(ctx)
	}
	key := "rejected "
	if after401 {
		key = "rejected after a 401 "
	}
	return s.wait(ctx, key+rejected.AccessToken, w)
}

// want is what the callers of one refresh need.
type want struct {
	ahead    bool   // a token outside the refresh-ahead window
	rejected string // an access token other than this one
	after401 bool   // rejected by a Transport's request: see refreshAfter401
}

// satisfies reports whether e's token is what w wants at now.
func (s *Source) satisfies(e *entry, w want, now time.Time) bool {
	if e == nil || e.tok.AccessToken == "" || (w.rejected != "" && e.tok.AccessToken == w.rejected) {
		return false
	}
	if e.expireAt.IsZero() {
		return true
	}
	if w.ahead {
		return now.Before(e.refreshAt)
	}
	return now.Before(e.expireAt)
}

// wait joins the refresh in flight for key, or starts it, and waits for
// its result or for ctx to end.
func (s *Source) wait(ctx context.Context, key string, w want) (*Token, error) {
	if s.sem == nil {
		return nil, errZeroSource
	}
	if err := ctx.Err(); err != nil {
		return nil, errorf("waiting for a token: %w", context.Cause(ctx))
	}
	select {
	case r := <-s.group.DoChan(key, s.flight(ctx, w)):
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*Token), nil
	case <-ctx.Done():
		return nil, errorf("waiting for a token: %w", context.Cause(ctx))
	}
}

// flight returns the work of one collapsed refresh. It runs detached from
// the callers, with RefreshTimeout, and Close waits for it; once the Source
// is closed it refuses to start. hookCtx gives the hooks the values of the
// caller that started it.
func (s *Source) flight(hookCtx context.Context, w want) func() (any, error) {
	return func() (any, error) {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		s.wg.Add(1)
		s.mu.Unlock()
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(hookCtx), s.refreshTimeout())
		defer cancel()
		return s.refresh(ctx, w)
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
		if _, err, _ := s.group.Do("token", s.flight(context.Background(), want{ahead: true})); err != nil {
			// Callers still hold a valid token; try again a little later
			// (a second after this attempt began) rather than on every
			// call. The failure was reported by the refresh.
			s.aheadAfter.Store(now.Add(time.Second).UnixNano())
		}
	}()
}

// Close stops the Source. It refuses new refreshes, waits for every refresh
// in flight (callers' ones too) and for the retrying of a failed save, then
// tries once more, within RefreshTimeout, to save a token that is still
// unsaved, releases the store's lock, and returns that save's error. After
// Close, Token returns the current token while it is fresh and [ErrClosed]
// when it would have to refresh.
//
// A save error from Close means the newest token is lost with the Source:
// the store still holds the refresh token it replaced, marked as being
// spent. Exit, or authorize again; a new Source on that store would send
// the marked token once more (to it, the outcome is unknown), which a
// strict server answers by revoking the family.
func (s *Source) Close() error {
	if s.sem == nil {
		return nil
	}
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	s.mu.Unlock()
	s.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), s.refreshTimeout())
	defer cancel()
	if !s.acquire(ctx) {
		return errorf("closing: %w", context.Cause(ctx))
	}
	defer s.releaseSem()
	var err error
	if s.unsaved {
		// Read the store again, as a retry does: it may have been
		// emptied or replaced meanwhile.
		if serr := s.sync(ctx); serr != nil {
			s.saveErr = serr
		}
		if s.unsaved {
			err = errorf("the newest token was not saved: %w", s.saveErr)
		}
	}
	s.dropLease(ctx)
	return err
}

// Format prints s by its configuration, redacted, with every fmt verb
// (slog's text handler too): the fields of a Source hold tokens and the
// client secret.
func (s *Source) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "bearer.Source{Config:%v Store:%T}", s.cfg, s.store)
}

// Stats returns a snapshot of the Source's counters.
func (s *Source) Stats() Stats {
	st := Stats{
		Refreshes:    s.refreshes.Load(),
		Failures:     s.failures.Load(),
		Adopted:      s.adopted.Load(),
		Rejected:     s.rejected.Load(),
		SaveFailures: s.saveFailures.Load(),
		Suppressed:   s.suppressed.Load(),
	}
	if n := s.lastRefresh.Load(); n != 0 {
		st.LastRefresh = time.Unix(0, n)
	}
	return st
}

func (s *Source) refreshTimeout() time.Duration {
	if s.cfg.RefreshTimeout > 0 {
		return s.cfg.RefreshTimeout
	}
	return 30 * time.Second
}

// publish makes t the current token.
func (s *Source) publish(t *Token, now time.Time, replacedRejected bool) {
	e := s.newEntry(t, now)
	if replacedRejected {
		e.replacedRejected = now
	}
	s.cur.Store(e)
}

// Default windows for a token whose lifetime is unknown, and the most a
// default window is for any token.
const (
	defaultLeeway = 10 * time.Second
	defaultAhead  = 5 * time.Minute
)

func (s *Source) newEntry(t *Token, now time.Time) *entry {
	e := &entry{tok: t}
	if t.Expiry.IsZero() {
		return e
	}
	leeway, ahead := s.cfg.Leeway, s.cfg.RefreshAhead
	if !t.Obtained.IsZero() && t.Obtained.Before(t.Expiry) {
		// The whole lifetime is known: default windows are fractions of
		// it, and no window may cover most of it, or every new token
		// would look stale at once and refresh on every call.
		life := t.Expiry.Sub(t.Obtained)
		if leeway <= 0 {
			leeway = min(defaultLeeway, life/10)
		}
		if ahead == 0 {
			ahead = min(defaultAhead, life/4)
		}
		leeway = min(leeway, life/2)
		ahead = min(max(ahead, leeway), life*3/4)
	} else {
		// Unknown lifetime (a Token built by hand or kept by a Store that
		// drops Obtained): what is left says nothing of the lifetime, so
		// the absolute defaults apply, as golang.org/x/oauth2's do.
		if leeway <= 0 {
			leeway = defaultLeeway
		}
		if ahead == 0 {
			ahead = defaultAhead
		}
		ahead = max(ahead, leeway)
	}
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
