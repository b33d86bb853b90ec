package bearer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// This file is the refresh protocol of docs/refresh.md, in its order:
// persist what is unsaved, decide, lock and read, reconcile, check, record,
// send, persist, publish. Every step runs under the refresh lock (sem).

// refresh produces a token that w wants, refreshing at most once.
func (s *Source) refresh(ctx context.Context, w want) (*Token, error) {
	if !s.acquire(ctx) {
		return nil, errorf("waiting for another refresh: %w", context.Cause(ctx))
	}
	defer s.releaseSem()
	defer s.unlockStore(ctx)

	// Persist first: an unsaved head is saved before anything else.
	if s.unsaved {
		s.persist(ctx)
	}

	// Decide: another refresh may have done the work meanwhile.
	if e := s.cur.Load(); s.satisfies(e, w, s.now()) {
		return e.tok, nil
	}

	// Lock, read and reconcile: the store under its lock is the truth,
	// except where it lags behind this Source's own rotations.
	if err := s.sync(ctx); err != nil {
		return nil, err
	}
	if s.head != nil {
		if e := s.newEntry(s.head, s.now()); s.satisfies(e, w, s.now()) {
			s.adopt(ctx, e)
			return e.tok, nil
		}
	}

	// Check: what cannot be sent is not sent, and what the token endpoint
	// or the API refused for good is not asked again at once.
	if e := s.cur.Load(); w.after401 && e != nil && e.tok.AccessToken == w.rejected &&
		!e.replacedRejected.IsZero() && s.now().Sub(e.replacedRejected) < rejectionPause {
		s.suppressed.Add(1)
		return nil, errRejectedAgain
	}
	base := s.head
	if s.refusal != nil && s.now().Before(s.refusedUntil) {
		s.suppressed.Add(1)
		return nil, s.refusal
	}
	if s.cfg.ClientCredentials {
		return s.spend(ctx, w, base, false)
	}
	if base == nil {
		return nil, errorf("no token to refresh; obtain one first (Config.Exchange) and save it: %w", ErrNoToken)
	}
	if err := s.cfg.checkIssuer(base); err != nil {
		// Its refresh token, and the client secret, belong elsewhere.
		return nil, err
	}
	switch {
	case base.RefreshToken == "":
		return nil, s.reauthorize(ctx, fmt.Errorf("%w: the token has no refresh token", ErrReauthorize))
	case !base.RefreshExpiry.IsZero() && !s.now().Before(base.RefreshExpiry):
		return nil, s.reauthorize(ctx, fmt.Errorf("%w: the refresh token expired at %s", ErrReauthorize, fmtTime(base.RefreshExpiry)))
	case s.dead != "" && fingerprint(base.RefreshToken) == s.dead:
		// Sending it again would only tell a strict server that a
		// stolen token is being replayed.
		s.suppressed.Add(1)
		return nil, s.deadErr
	}

	// Record: mark the refresh token as being spent, in the store (for
	// other processes, and for this one after a crash) and in memory.
	interrupted := false
	if s.held != nil && !s.unsaved {
		var err error
		if interrupted, err = s.held.Begin(ctx, base); err != nil {
			if errors.Is(err, ErrLockLost) {
				s.dropLease(ctx)
			}
			return nil, errorf("recording the refresh in the store: %w", err)
		}
		if interrupted {
			s.logWarn("an earlier refresh of the stored refresh token did not finish (a crash, or a lost answer); sending it again", ErrInterrupted)
		}
	}
	s.spent = fingerprint(base.RefreshToken)
	return s.spend(ctx, w, base, interrupted)
}

// spend sends base's refresh token (or the client_credentials grant),
// then persists and publishes what came back.
func (s *Source) spend(ctx context.Context, w want, base *Token, interrupted bool) (*Token, error) {
	if h := s.cfg.Hooks.RefreshStarted; h != nil {
		h(ctx)
	}
	start := time.Now()
	var tok *Token
	var err error
	if s.cfg.ClientCredentials {
		tok, err = s.cfg.clientCredentialsGrant(ctx)
	} else {
		tok, err = s.cfg.refreshGrant(ctx, base.RefreshToken)
	}
	d := time.Since(start)

	if tok != nil {
		// Persist: a refresh token read from an answer is the current one
		// from now on, even when the rest of the answer is unusable.
		next := tok
		if err != nil && base != nil {
			next = cloneToken(base)
			next.RefreshToken, next.RefreshExpiry = tok.RefreshToken, tok.RefreshExpiry
		}
		if next.RefreshToken == "" && base != nil {
			// The server kept the refresh token (RFC 6749 section 6 allows it).
			next.RefreshToken = base.RefreshToken
			if next.RefreshExpiry.IsZero() {
				next.RefreshExpiry = base.RefreshExpiry
			}
		}
		if !s.unsaved {
			s.unsaved, s.anchor = true, s.head
		}
		s.head = next
		// With time of its own: the request may have used up most of ctx's.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.refreshTimeout())
		s.persist(pctx)
		cancel()
	}

	if err != nil {
		s.failures.Add(1)
		s.logWarn("token refresh failed", err)
		if re := (*RetrieveError)(nil); tok == nil && errors.As(err, &re) && refusesClient(re.ErrorCode) {
			s.refusal, s.refusedUntil = err, s.now().Add(refusalPause)
		}
		if tok == nil && errors.Is(err, ErrReauthorize) {
			if interrupted {
				err = errorf("%w: %w", ErrInterrupted, err)
			}
			if base != nil {
				s.dead, s.deadErr = fingerprint(base.RefreshToken), err
			}
			err = s.reauthorize(ctx, err)
		}
		s.finished(ctx, d, err)
		return nil, err
	}

	// Publish.
	if w.rejected != "" && tok.AccessToken == w.rejected {
		err = errors.New("bearer: the token endpoint answered with the access token that was just rejected")
		s.finished(ctx, d, err)
		return nil, err
	}
	s.refreshes.Add(1)
	now := s.now()
	s.lastRefresh.Store(now.UnixNano())
	s.publish(s.head, now, w.rejected != "")
	if !s.satisfies(s.cur.Load(), want{}, now) {
		// A save slower than the token's life, or a clock jump: never
		// hand out a token already expired.
		err = errors.New("bearer: the new token expired before it could be handed out")
		s.finished(ctx, d, err)
		return nil, err
	}
	if l := s.cfg.Logger; l != nil {
		l.LogAttrs(ctx, slog.LevelDebug, "bearer: token refreshed", slog.Duration("took", d), slog.Time("expiry", s.head.Expiry))
	}
	s.finished(ctx, d, nil)
	return s.head, nil
}

// refusalPause is how long a Source remembers that the token endpoint
// refused the client itself: its callers get that error at once, and the
// endpoint sees one request a pause instead of one per API call.
const refusalPause = time.Minute

// refusesClient reports whether an OAuth error code refuses the client,
// not the grant: asking again with the same configuration cannot help.
func refusesClient(code string) bool {
	return code == "invalid_client" || code == "unauthorized_client"
}

// sync takes the store's lock (unless held already), reads the store and
// reconciles it with head, saving head if the store lags behind it.
func (s *Source) sync(ctx context.Context) error {
	load := s.store.Load
	if l, ok := s.store.(Locker); ok {
		if s.held == nil {
			lease, err := l.Lock(ctx)
			if err == nil && lease == nil {
				err = errors.New("Lock returned no lease")
			}
			if err != nil {
				// Fail closed: without the lock another process may be
				// spending the same refresh token.
				return errorf("locking the store: %w", err)
			}
			s.held = lease
		}
		load = s.held.Load
	}
	stored, err := load(ctx)
	if err != nil && !errors.Is(err, ErrNoToken) {
		if errors.Is(err, ErrLockLost) {
			s.dropLease(ctx)
		}
		return errorf("reading the store: %w", err)
	}
	switch {
	case s.unsaved && sameRefresh(stored, s.anchor):
		// The store lags behind this Source's unsaved rotations.
	case s.head != nil && stored == nil:
		// Emptied under this Source: head is the only copy.
		s.unsaved, s.anchor = true, nil
	case s.head != nil && s.spent != "" && stored.RefreshToken != s.head.RefreshToken && fingerprint(stored.RefreshToken) == s.spent:
		// It holds the refresh token this Source spent last: it lost a
		// write that it reported saved.
		s.logWarn("the store returned a refresh token this process already spent; saving the newer one again", errStaleStore)
		s.unsaved, s.anchor = true, stored
	default:
		if s.unsaved && !sameRefresh(stored, s.head) {
			s.logWarn("the store holds another process's token; this process's unsaved token is dropped", ErrConflict)
		}
		s.head, s.unsaved, s.anchor, s.saveErr = stored, false, nil, nil
	}
	if s.unsaved {
		s.persist(ctx)
	}
	return nil
}

var errStaleStore = errors.New("bearer: the store lost a write")

// adopt publishes e, a token the store held, unless it is published
// already. Only a switch away from a token held in memory counts as
// adopting; the first load does not.
func (s *Source) adopt(ctx context.Context, e *entry) {
	cur := s.cur.Load()
	if cur != nil && cur.tok.AccessToken == e.tok.AccessToken && cur.tok.RefreshToken == e.tok.RefreshToken {
		return
	}
	s.cur.Store(e)
	if cur != nil {
		s.adopted.Add(1)
		if h := s.cfg.Hooks.Adopted; h != nil {
			h(ctx)
		}
	}
}

// finished runs the RefreshFinished hook: after the save and the publish.
func (s *Source) finished(ctx context.Context, d time.Duration, err error) {
	if h := s.cfg.Hooks.RefreshFinished; h != nil {
		h(ctx, d, err)
	}
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

// acquire takes the refresh lock, or reports false when ctx ends first.
func (s *Source) acquire(ctx context.Context) bool {
	select {
	case s.sem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *Source) releaseSem() { <-s.sem }
