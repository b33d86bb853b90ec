package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/internal/issuer"
)

// A stored token whose refresh token is still live is a grant: replacing it
// loses it (and a replayed import, from shell history, puts a spent refresh
// token in its place, which the next refresh presents to the server). So
// import, exchange and login refuse to replace one unless --force is given,
// and say what is stored instead.

// forceFlag adds --force to fs.
func forceFlag(fs *flag.FlagSet) *bool {
	return fs.Bool("force", false, "replace a stored token whose refresh token is still live (its grant is lost; bearer logout revokes it instead)")
}

// live reports whether tok's refresh token may still be used at now: the
// server may have revoked it, but nothing here says so.
func live(tok *bearer.Token, now time.Time) bool {
	return tok != nil && tok.RefreshToken != "" && (tok.RefreshExpiry.IsZero() || now.Before(tok.RefreshExpiry))
}

// errLive is a refusal to replace a live token; guard has explained it.
var errLive = errors.New("a live token is stored")

// guard checks, before a command obtains a new token, that it may replace
// what the store at path holds. A store that cannot be read is replaced
// only with force.
func (a *app) guard(ctx context.Context, path string, force bool) error {
	if force {
		return nil
	}
	stored, err := bearer.NewFileStore(path).Load(ctx)
	return a.replaceable(path, stored, err)
}

// replaceable reports whether the store at path, which held stored or
// failed to load with err, may be replaced without --force, and explains
// why not.
func (a *app) replaceable(path string, stored *bearer.Token, err error) error {
	switch {
	case errors.Is(err, bearer.ErrNoToken):
		return nil
	case err != nil:
		return fmt.Errorf("the store cannot be read, so it is not replaced (--force replaces it): %w", err)
	case live(stored, a.now()):
		fmt.Fprintf(a.stderr, "bearer: refusing to replace the token stored in %s: its refresh token is still live\n", path)
		a.describeStored(a.stderr, "  ", stored)
		fmt.Fprintf(a.stderr, "bearer: replacing it loses that grant; run bearer logout to revoke it first, or pass --force\n")
		return errLive
	}
	return nil
}

// store saves tok in the file at path under the store's lock, after
// checking again (unless force) that what it replaces may be replaced: a
// refresh may have run since guard.
func (a *app) store(ctx context.Context, path string, tok *bearer.Token, force bool) error {
	fs := bearer.NewFileStore(path)
	lease, err := fs.Lock(ctx)
	if errors.Is(err, bearer.ErrNoToken) {
		// No folder yet: nothing to replace, and Save creates it.
		return fs.Save(ctx, tok)
	}
	if err != nil {
		return err
	}
	defer lease.Unlock(context.WithoutCancel(ctx))
	stored, err := lease.Load(ctx)
	if !force {
		if err := a.replaceable(path, stored, err); err != nil {
			return err
		}
	}
	if err != nil && !errors.Is(err, bearer.ErrNoToken) {
		// --force over an unreadable store.
		return fs.Save(ctx, tok)
	}
	return lease.CompareAndSwap(ctx, stored, tok)
}

// describeStored says what tok is, never what its secrets are, one fact a
// line, each line starting with indent.
func (a *app) describeStored(w io.Writer, indent string, tok *bearer.Token) {
	now := a.now()
	rec := issuer.Of(tok)
	if rec.Known() {
		fmt.Fprintf(w, "%sissued by:      %s\n", indent, rec.Redacted())
		fmt.Fprintf(w, "%sclient:         %s\n", indent, rec.ClientID)
	} else {
		fmt.Fprintf(w, "%sissued by:      unknown (stored before bearer recorded it)\n", indent)
	}
	fmt.Fprintf(w, "%sobtained:       %s\n", indent, when(tok.Obtained, now))
	fmt.Fprintf(w, "%saccess token:   %s\n", indent, describe(tok.AccessToken != "", tok.Expiry, now))
	fmt.Fprintf(w, "%srefresh token:  %s\n", indent, describe(tok.RefreshToken != "", tok.RefreshExpiry, now))
}

// when prints a moment for reading, with how long ago it was.
func when(t, now time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	at := t.In(now.Location()).Format("2006-01-02 15:04:05 MST")
	if d := now.Sub(t); d >= 0 {
		return fmt.Sprintf("%s (%s ago)", at, human(d))
	}
	return at
}
