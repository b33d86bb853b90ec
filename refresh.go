package bearer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

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
