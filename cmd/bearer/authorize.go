package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/tokenkit/bearer"
)

func (a *app) importToken(ctx context.Context, args []string) int {
	fs := a.flagSet("import", "[--store FILE] < response.json")
	store := storeFlag(fs)
	form := fs.Bool("form", false, "the response is form-encoded (application/x-www-form-urlencoded), not JSON")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return a.usageError(fs, "unexpected argument %q (the token response is read from standard input)", fs.Arg(0))
	}
	path, code, ok := a.storeFile(fs, *store)
	if !ok {
		return code
	}
	// One byte past the library's limit lets it report the size.
	body, err := io.ReadAll(io.LimitReader(a.stdin, maxResponse+1))
	if err != nil {
		return a.fail(fmt.Errorf("reading standard input: %w", err), path)
	}
	contentType := "application/json"
	if *form {
		contentType = "application/x-www-form-urlencoded"
	}
	tok, err := bearer.ParseTokenResponse(body, contentType, a.now())
	var re *bearer.RetrieveError
	if errors.As(err, &re) {
		// An OAuth error answer: not about the stored token, whatever
		// its code implies.
		fmt.Fprintf(a.stderr, "bearer: the input is an error answer (error %.64q), not a token\n", re.ErrorCode)
		return exitFailure
	}
	if err != nil {
		return a.fail(err, path)
	}
	return a.save(ctx, path, tok)
}

// maxResponse is how much of a token response import reads; the library
// rejects larger ones.
const maxResponse = 1 << 20

func (a *app) exchange(ctx context.Context, args []string) int {
	fs := a.flagSet("exchange", "--code C --redirect-uri U [--verifier V] [flags]")
	code := fs.String("code", "", "the authorization `code` the redirect brought back (required)")
	redirectURI := fs.String("redirect-uri", "", "the redirect `URI` of the authorization request (required)")
	verifier := fs.String("verifier", "", "the PKCE code `verifier` whose challenge went into the authorization request")
	store := storeFlag(fs)
	cf := addClientFlags(fs)
	if status, ok := parse(fs, args); !ok {
		return status
	}
	switch {
	case fs.NArg() > 0:
		return a.usageError(fs, "unexpected argument %q", fs.Arg(0))
	case *code == "":
		return a.usageError(fs, "--code is required")
	case *redirectURI == "":
		return a.usageError(fs, "--redirect-uri is required")
	}
	path, err := a.storePath(*store)
	if err != nil {
		return a.usageError(fs, "%v", err)
	}
	cfg := a.config(cf)
	tok, err := cfg.Exchange(ctx, *code, *redirectURI, *verifier)
	if errors.Is(err, bearer.ErrReauthorize) {
		// invalid_grant answers an exchange about the code, not a
		// refresh token.
		fmt.Fprintf(a.stderr, "bearer: the authorization code was rejected (expired, already used, or the redirect URI or verifier do not match): authorize the app again for a new code\nbearer: detail: %v\n", err)
		return exitReauthorize
	}
	if err != nil {
		return a.fail(err, path)
	}
	return a.save(ctx, path, tok)
}

// save stores tok in the file at path (Save creates its folder) and says
// what it stored.
func (a *app) save(ctx context.Context, path string, tok *bearer.Token) int {
	if err := bearer.NewFileStore(path).Save(ctx, tok); err != nil {
		return a.fail(err, path)
	}
	now := a.now()
	fmt.Fprintf(a.stdout, "stored a %s token in %s\n", tok.Type(), path)
	fmt.Fprintf(a.stdout, "access token:   %s\n", describe(true, tok.Expiry, now))
	fmt.Fprintf(a.stdout, "refresh token:  %s\n", describe(tok.RefreshToken != "", tok.RefreshExpiry, now))
	return exitOK
}
