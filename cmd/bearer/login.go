package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"flag"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/tokenkit/bearer"
)

// loginFlags are login's own flags.
type loginFlags struct {
	authURL   string
	deviceURL string
	device    bool
	port      int
	noBrowser bool
	timeout   time.Duration
	scopes    listFlag
	params    listFlag
	force     *bool
}

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func (a *app) login(ctx context.Context, args []string) int {
	fs := a.flagSet("login", "[--device] [--no-browser] [--port N] [--timeout D] [flags]")
	lf := &loginFlags{}
	fs.StringVar(&lf.authURL, "auth-url", "", "the authorization endpoint `URL` (default $OAUTH_AUTH_URL; there is no other default)")
	fs.BoolVar(&lf.device, "device", false, "use the device authorization grant (RFC 8628): enter a code on any device's browser")
	fs.StringVar(&lf.deviceURL, "device-url", "", "the device authorization endpoint `URL`, with --device (default $OAUTH_DEVICE_AUTH_URL)")
	fs.IntVar(&lf.port, "port", 0, "the loopback `port` of the redirect URI http://127.0.0.1:PORT/callback (default a free one; set it for servers that register a fixed one)")
	fs.BoolVar(&lf.noBrowser, "no-browser", false, "print the URL to open instead of opening a browser")
	fs.DurationVar(&lf.timeout, "timeout", 5*time.Minute, "how long to wait for the authorization")
	fs.Var(&lf.scopes, "scope", "a `scope` to ask for; repeatable")
	fs.Var(&lf.params, "param", "an extra authorization request parameter `key=value`; repeatable")
	lf.force = forceFlag(fs)
	store := storeFlag(fs)
	cf := addClientFlags(fs)
	path, cfg, code, ok := a.parseClient(fs, args, store, cf)
	if !ok {
		return code
	}
	cfg.Scopes = strings.Fields(lf.scopes.String())
	if code, ok := a.loginEndpoints(fs, lf, &cfg); !ok {
		return code
	}
	if lf.timeout <= 0 {
		return a.usageError(fs, "--timeout must be positive")
	}
	if err := a.guard(ctx, path, *lf.force); err != nil {
		return a.refused(err, path)
	}

	var tok *bearer.Token
	if lf.device {
		tok, code = a.loginDevice(ctx, cfg, lf)
	} else {
		tok, code = a.loginLoopback(ctx, cfg, lf)
	}
	if tok == nil {
		return code
	}
	return a.keep(ctx, path, tok, *lf.force)
}

// loginEndpoints fills in the endpoint the flow needs, from its flag or
// the environment: nothing guesses it.
func (a *app) loginEndpoints(fs *flag.FlagSet, lf *loginFlags, cfg *bearer.Config) (int, bool) {
	if lf.device {
		cfg.DeviceAuthURL = a.flagOrEnv(lf.deviceURL, "OAUTH_DEVICE_AUTH_URL")
		if cfg.DeviceAuthURL == "" {
			return a.usageError(fs, "no device authorization endpoint: pass --device-url or set OAUTH_DEVICE_AUTH_URL (the server's documentation names it, if it offers one)"), false
		}
		return exitOK, true
	}
	auth, err := url.Parse(a.flagOrEnv(lf.authURL, "OAUTH_AUTH_URL"))
	if err != nil || auth.String() == "" {
		return a.usageError(fs, "no authorization endpoint: pass --auth-url or set OAUTH_AUTH_URL (the server's documentation names it)"), false
	}
	q := auth.Query()
	for _, p := range lf.params {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return a.usageError(fs, "--param %q: want key=value", p), false
		}
		q.Add(k, v)
	}
	auth.RawQuery = q.Encode()
	cfg.AuthURL = auth.String()
	return exitOK, true
}

// loginLoopback is the native-app flow of RFC 8252: a listener on
// 127.0.0.1 receives the redirect, whose state must be this login's, and
// its code is exchanged with the PKCE verifier. It returns the token, or
// nil and the exit status after explaining what went wrong.
func (a *app) loginLoopback(ctx context.Context, cfg bearer.Config, lf *loginFlags) (*bearer.Token, int) {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(lf.port)))
	if err != nil {
		fmt.Fprintf(a.stderr, "bearer: cannot listen for the redirect on 127.0.0.1 port %d: %v\n", lf.port, err)
		return nil, exitFailure
	}
	redirect := fmt.Sprintf("http://%s/callback", ln.Addr())
	state, verifier := bearer.GenerateVerifier(), bearer.GenerateVerifier()
	authURL, err := cfg.AuthCodeURL(state, redirect, verifier)
	if err != nil {
		ln.Close()
		return nil, a.fail(err, "")
	}

	redirects := make(chan url.Values, 1)
	srv := &http.Server{Handler: callbackHandler(state, redirects), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	defer func() {
		// Let the browser's page be written, then stop.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
		<-served
	}()

	a.showURL("authorize bearer", authURL, lf.noBrowser)
	fmt.Fprintf(a.stderr, "bearer: waiting up to %s for the browser to come back to %s\n", lf.timeout, redirect)
	timer := time.NewTimer(lf.timeout)
	defer timer.Stop()
	var q url.Values
	select {
	case q = <-redirects:
	case <-timer.C:
		fmt.Fprintf(a.stderr, "bearer: timed out after %s waiting for the authorization: nothing was stored (run bearer login again)\n", lf.timeout)
		return nil, exitTimeout
	case <-ctx.Done():
		fmt.Fprintln(a.stderr, "bearer: interrupted: nothing was stored")
		return nil, exitFailure
	}

	switch {
	case !sameState(q.Get("state"), state):
		fmt.Fprintf(a.stderr, "bearer: the redirect's state does not match this login (a stale browser tab, or a forged redirect): nothing was exchanged or stored\n")
		return nil, exitFailure
	case q.Get("error") == "access_denied":
		fmt.Fprintf(a.stderr, "bearer: the authorization was denied%s: nothing was stored\n", detail(q.Get("error_description")))
		return nil, exitReauthorize
	case q.Get("error") != "":
		fmt.Fprintf(a.stderr, "bearer: the authorization server refused the request: %s%s (check --auth-url, --client-id, --scope and --param)\n", printable(q.Get("error"), 64), detail(q.Get("error_description")))
		return nil, exitFailure
	case q.Get("code") == "":
		fmt.Fprintf(a.stderr, "bearer: the redirect brought no authorization code: nothing was stored\n")
		return nil, exitFailure
	}
	tok, err := cfg.Exchange(ctx, q.Get("code"), redirect, verifier)
	if err != nil {
		return nil, a.exchangeFailed(err)
	}
	return tok, exitOK
}

// callbackHandler receives the redirect at /callback, answers the browser
// with a page that says what happens next, and hands the query on; only
// the first redirect counts.
func callbackHandler(state string, redirects chan<- url.Values) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/callback", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		msg := "bearer is authorized. You may close this window and return to the terminal."
		switch {
		case !sameState(q.Get("state"), state):
			msg = "This redirect does not belong to the login in progress; bearer ignored its code. Return to the terminal."
		case q.Get("error") != "":
			msg = "The authorization did not happen (" + q.Get("error") + "). Return to the terminal."
		}
		select {
		case redirects <- q:
		default:
			msg = "bearer has already received a redirect. Return to the terminal."
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintf(w, "<!doctype html><title>bearer</title><p>%s</p>\n", html.EscapeString(msg))
	})
	return mux
}

// sameState compares states in constant time.
func sameState(got, want string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// exchangeFailed explains a failed exchange of a code and returns its exit
// status.
func (a *app) exchangeFailed(err error) int {
	if errors.Is(err, bearer.ErrReauthorize) {
		// invalid_grant answers an exchange about the code, not a
		// refresh token.
		fmt.Fprintf(a.stderr, "bearer: the authorization code was rejected (expired, already used, or the redirect URI or verifier do not match): authorize the app again for a new code\n%s\n", prefixed(fmt.Errorf("detail: %w", err)))
		return exitReauthorize
	}
	return a.fail(err, "")
}

// showURL opens u in the browser, or prints it for the person to open.
func (a *app) showURL(what, u string, noBrowser bool) {
	if noBrowser {
		fmt.Fprintf(a.stderr, "bearer: to %s, open this URL in a browser:\n\n  %s\n\n", what, u)
		return
	}
	fmt.Fprintf(a.stderr, "bearer: opening a browser to %s; if none opens, visit:\n\n  %s\n\n", what, u)
	if err := a.open(u); err != nil {
		fmt.Fprintf(a.stderr, "bearer: could not open a browser (%v): open the URL above yourself\n", err)
	}
}

// openBrowser opens u in the user's browser.
func openBrowser(u string) error {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", u)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", u)
	default:
		cmd = exec.Command("xdg-open", u)
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	// The opener hands the URL to the browser and exits.
	go cmd.Wait()
	return nil
}

// detail formats a server's error description for a message, if any.
func detail(desc string) string {
	if desc == "" {
		return ""
	}
	return " (" + printable(desc, 200) + ")"
}

// printable keeps at most max printable characters of s, which a server
// sent: no terminal control sequences.
func printable(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return -1
		}
		return r
	}, s)
	if r := []rune(s); len(r) > max {
		s = string(r[:max]) + "…"
	}
	return s
}
