package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/internal/issuer"
	"github.com/tokenkit/bearer/internal/tokenanswer"
)

func (a *app) importToken(ctx context.Context, args []string) int {
	fs := a.flagSet("import", "[--store FILE] [--force] [--token-url URL] [--client-id ID] < response.json")
	store := storeFlag(fs)
	form := fs.Bool("form", false, "the response is form-encoded (application/x-www-form-urlencoded), not JSON")
	force := forceFlag(fs)
	ef := addEndpointFlags(fs)
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
	answer, err := tokenanswer.Parse(body, contentType, a.now())
	tok, _ := answer.(*bearer.Token)
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
	// The answer came from the endpoint and client the flags name: a
	// refresh must go there, and nowhere else.
	issuer.Set(tok, a.record(ef))
	if tok.RefreshToken == "" {
		fmt.Fprintf(a.stderr, "bearer: the answer holds no refresh token: bearer could not keep it fresh, so nothing was stored\n")
		return exitFailure
	}
	return a.keep(ctx, path, tok, *force)
}

// maxResponse is how much of a token response import reads; the library
// rejects larger ones.
const maxResponse = 1 << 20

func (a *app) exchange(ctx context.Context, args []string) int {
	fs := a.flagSet("exchange", "--code C --redirect-uri U [--verifier V] [--force] [flags]")
	code := fs.String("code", "", "the authorization `code` the redirect brought back (required)")
	redirectURI := fs.String("redirect-uri", "", "the redirect `URI` of the authorization request (required)")
	verifier := fs.String("verifier", "", "the PKCE code `verifier` whose challenge went into the authorization request")
	store := storeFlag(fs)
	force := forceFlag(fs)
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
	if err := a.guard(ctx, path, *force); err != nil {
		return a.refused(err, path)
	}
	cfg := a.config(cf)
	tok, err := cfg.Exchange(ctx, *code, *redirectURI, *verifier)
	if err != nil {
		return a.exchangeFailed(err)
	}
	return a.keep(ctx, path, tok, *force)
}

// keep stores tok in the file at path (see store) and says what it stored.
func (a *app) keep(ctx context.Context, path string, tok *bearer.Token, force bool) int {
	if err := a.store(ctx, path, tok, force); err != nil {
		return a.refused(err, path)
	}
	fmt.Fprintf(a.stdout, "stored a %s token in %s\n", tokenType(tok), path)
	a.describeStored(a.stdout, "", tok)
	if tok.RefreshToken == "" {
		fmt.Fprintf(a.stderr, "bearer: the server sent no refresh token: once the access token expires, authorize the app again\n")
	}
	return exitOK
}

// refused is fail for the errors of guard and store: a live token stored
// has been explained already.
func (a *app) refused(err error, path string) int {
	if errors.Is(err, errLive) {
		return exitFailure
	}
	return a.fail(err, path)
}
