package bearer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// Revoke ends the grant: it revokes the stored refresh token at
// [Config.RevocationURL] (RFC 7009), which also ends the grant's access
// tokens on servers that support it, and then clears the store, so that
// Token reports [ErrNoToken] until a new token is saved. A token without a
// refresh token has its access token revoked instead.
//
// Revoke works as a refresh does: under the Source's refresh lock and the
// store's lock, on the newest token the store holds, and never on a token
// issued to another endpoint or client. It sends nothing when RevocationURL
// is empty or the store holds no token (the error then wraps ErrNoToken).
// If the server cannot be reached or refuses, the store is left as it was
// and Revoke can be called again. A token revoked but not cleared from the
// store (the store failed) is never sent again by this Source.
func (s *Source) Revoke(ctx context.Context) error {
	if s.sem == nil {
		return errZeroSource
	}
	if err := s.cfg.checkURL("RevocationURL", s.cfg.RevocationURL); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	if !s.acquire(ctx) {
		return errorf("waiting for a refresh to revoke its token: %w", context.Cause(ctx))
	}
	defer s.releaseSem()
	defer s.unlockStore(ctx)

	// As in a refresh: persist, then lock, read and reconcile.
	if s.unsaved {
		s.persist(ctx)
	}
	if err := s.sync(ctx); err != nil {
		return err
	}
	base := s.head
	if base == nil {
		return errorf("nothing to revoke: %w", ErrNoToken)
	}
	if err := s.cfg.checkIssuer(base); err != nil {
		return err
	}
	if err := s.cfg.revoke(ctx, base); err != nil {
		return err
	}

	// The grant is over: nothing of it is sent again, by this Source or,
	// once the store is cleared, by any other.
	if base.RefreshToken != "" {
		s.dead, s.deadErr = fingerprint(base.RefreshToken), fmt.Errorf("%w: the refresh token was revoked", ErrReauthorize)
	}
	stored := base
	if s.unsaved {
		stored = s.anchor
	}
	var err error
	if s.held != nil {
		err = s.held.CompareAndSwap(ctx, stored, &Token{})
	} else {
		err = s.store.Save(ctx, &Token{})
	}
	s.head, s.unsaved, s.anchor, s.saveErr = nil, false, nil, nil
	s.cur.Store(nil)
	if err != nil {
		if errors.Is(err, ErrLockLost) {
			s.dropLease(ctx)
		}
		return errorf("the grant was revoked, but the store could not be cleared: %w", err)
	}
	if l := s.cfg.Logger; l != nil {
		l.LogAttrs(ctx, slog.LevelInfo, "bearer: grant revoked and store cleared")
	}
	return nil
}

// revoke sends t's refresh token (or, without one, its access token) to
// the revocation endpoint, retrying as a token request is retried. Any 2xx
// answer is success: RFC 7009 answers 200 for a token that is already
// invalid, too.
func (c *Config) revoke(ctx context.Context, t *Token) error {
	params := map[string]string{"token": t.RefreshToken, "token_type_hint": "refresh_token"}
	if t.RefreshToken == "" {
		params = map[string]string{"token": t.AccessToken, "token_type_hint": "access_token"}
	}
	body, contentType, secrets, err := c.prepare("RevocationURL", c.RevocationURL, params, []string{t.RefreshToken, t.AccessToken})
	if err != nil {
		return err
	}
	_, err = c.retry(ctx, "revocation request", c.RevocationURL, func() (*Token, *RetrieveError) {
		resp, data, rerr := c.post(ctx, c.RevocationURL, body, contentType)
		if rerr != nil {
			rerr.endpoint = "revocation endpoint"
			return nil, rerr
		}
		wire, _ := decodeToken(data, resp.Header.Get("Content-Type"))
		if rerr := failed(resp, data, wire, secrets, c.now()); rerr != nil {
			rerr.endpoint = "revocation endpoint"
			return nil, rerr
		}
		return nil, nil
	})
	return err
}

// cleared reports whether t is the empty Token with which Revoke clears a
// store; stores read it back as ErrNoToken.
func cleared(t *Token) bool {
	return toStored(t) == (storedToken{})
}
