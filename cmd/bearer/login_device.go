package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/tokenkit/bearer"
)

// loginDevice is the device authorization grant (RFC 8628): it shows the
// user code and where to enter it (opening the browser at the link that
// holds the code, unless --no-browser), and waits while the library polls.
// It returns the token, or nil and the exit status after explaining what
// went wrong.
func (a *app) loginDevice(ctx context.Context, cfg bearer.Config, lf *loginFlags) (*bearer.Token, int) {
	wctx, cancel := context.WithTimeout(ctx, lf.timeout)
	defer cancel()
	tok, err := cfg.DeviceAuth(wctx, func(userCode, uri, complete string) {
		uri, complete = printable(uri, 500), printable(complete, 500)
		fmt.Fprintf(a.stderr, "bearer: to authorize bearer, visit %s and enter the code\n\n  %s\n\n", uri, printable(userCode, 32))
		if complete == "" {
			complete = uri
		}
		if !lf.noBrowser {
			if err := a.open(complete); err != nil {
				fmt.Fprintf(a.stderr, "bearer: could not open a browser (%v): open the URL above yourself\n", err)
			}
		}
		fmt.Fprintf(a.stderr, "bearer: waiting up to %s for the approval\n", lf.timeout)
	})
	var re *bearer.RetrieveError
	switch {
	case err == nil:
		return tok, exitOK
	case errors.As(err, &re) && re.ErrorCode == "access_denied":
		fmt.Fprintf(a.stderr, "bearer: the authorization was denied%s: nothing was stored\n", detail(re.ErrorDescription))
		return nil, exitReauthorize
	case errors.As(err, &re) && re.ErrorCode == "expired_token",
		errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		fmt.Fprintf(a.stderr, "bearer: timed out: the code was not approved in time; nothing was stored (run bearer login --device again)\n")
		return nil, exitTimeout
	case ctx.Err() != nil:
		fmt.Fprintln(a.stderr, "bearer: interrupted: nothing was stored")
		return nil, exitFailure
	}
	return nil, a.fail(err, "")
}
