package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/tokenkit/bearer"
)

func (a *app) logout(ctx context.Context, args []string) int {
	fs := a.flagSet("logout", "[--revocation-url URL] [flags]")
	revocation := fs.String("revocation-url", "", "the server's revocation endpoint `URL` (default $OAUTH_REVOCATION_URL; there is no other default)")
	store := storeFlag(fs)
	cf := addClientFlags(fs)
	path, cfg, code, ok := a.parseClient(fs, args, store, cf)
	if !ok {
		return code
	}
	cfg.RevocationURL = a.flagOrEnv(*revocation, "OAUTH_REVOCATION_URL")
	if cfg.RevocationURL == "" {
		return a.usageError(fs, "no revocation endpoint: pass --revocation-url or set OAUTH_REVOCATION_URL (the server's documentation names it)")
	}

	src := bearer.NewSource(cfg, bearer.NewFileStore(path))
	err := src.Revoke(ctx)
	if cerr := a.closeSource(ctx, src, path); err == nil {
		err = cerr
	}
	switch {
	case errors.Is(err, bearer.ErrNoToken):
		fmt.Fprintf(a.stderr, "bearer: no token stored in %s: nothing to revoke\n", path)
		return exitOK
	case err != nil && temporary(err):
		fmt.Fprintf(a.stderr, "%s\nbearer: the grant was not revoked and %s is unchanged: run bearer logout again later\n", prefixed(err), path)
		return exitUnavailable
	case err != nil:
		return a.fail(err, path)
	}
	fmt.Fprintf(a.stdout, "revoked the grant and cleared %s\n", path)
	return exitOK
}

// flagOrEnv is a flag's value, or the environment variable's when the
// flag was not given.
func (a *app) flagOrEnv(value, env string) string {
	if value != "" {
		return value
	}
	return a.env(env)
}
