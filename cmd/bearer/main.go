package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/internal/issuer"
)

// Exit statuses; doc.go explains them to users.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitReauthorize = 3
	exitUnavailable = 4
	exitTimeout     = 5
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run runs the command line args (without the program name) and returns
// the exit status. env looks up environment variables.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, env func(string) string) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, env: env, now: time.Now, open: openBrowser}
	return a.run(ctx, args)
}

// closeSource closes src, which waits for a refresh in flight (one that
// the interrupted command started included) and for its save: the refresh
// token it spent is gone, and the one that replaced it must be on disk
// before the process ends. When ctx has ended (Ctrl-C, SIGTERM) it says so
// first, since the wait can take up to the refresh timeout.
func (a *app) closeSource(ctx context.Context, src *bearer.Source, path string) error {
	if ctx.Err() != nil {
		fmt.Fprintf(a.stderr, "bearer: interrupted; letting a refresh in flight finish and saving its token to %s first\n", path)
	}
	return src.Close()
}

// app is one invocation's surroundings. Tests build one with a fake clock.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	env            func(string) string
	now            func() time.Time
	open           func(url string) error // opens a URL in the user's browser
	slow           time.Duration          // how long a wait is silent; 0 means slowWait
}

type command struct {
	name    string
	summary string
	run     func(a *app, ctx context.Context, args []string) int
}

// commands lists the subcommands. It is a function because a package
// variable would form an initialization cycle through flagSet.
func commands() []command {
	return []command{
		{"serve", "run a fake OpenTicket (token, authorization, device and revocation endpoints, an API) until interrupted", (*app).serve},
		{"demo", "run concurrent requests against an in-process token server and check the invariants", (*app).demo},
		{"login", "authorize the app in a browser (or with --device, on any device) and store its token", (*app).login},
		{"token", "print a valid access token, refreshing and saving it as needed", (*app).token},
		{"status", "describe the stored token, without its secrets", (*app).status},
		{"import", "store a token response (JSON) read from standard input", (*app).importToken},
		{"exchange", "get a token with an authorization code and store it", (*app).exchange},
		{"logout", "revoke the stored grant at the server (RFC 7009) and clear the store", (*app).logout},
		{"request", "send an authenticated request and print the response body", (*app).request},
	}
}

func (a *app) run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		a.usage(a.stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 && name == "help" {
			return a.run(ctx, []string{args[1], "-h"})
		}
		a.usage(a.stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(a, ctx, args[1:])
		}
	}
	fmt.Fprintf(a.stderr, "bearer: unknown command %q\n\n", name)
	a.usage(a.stderr)
	return exitUsage
}

func (a *app) usage(w io.Writer) {
	fmt.Fprintf(w, "usage: bearer <command> [flags]\n\nbearer keeps an OAuth 2.0 token pair fresh.\n\ncommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun bearer <command> -h for its flags.\n")
	fmt.Fprintf(w, "\nexit status: 0 ok, 1 failure, 2 usage, 3 authorize the app again (or authorization denied), 4 server unavailable, 5 timed out waiting for the authorization\n")
}

// flagSet returns a FlagSet for the subcommand whose -h prints the
// synopsis and a one-line description.
func (a *app) flagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("bearer "+name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	summary := ""
	for _, c := range commands() {
		if c.name == name {
			summary = c.summary
		}
	}
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: bearer %s %s\n\n%s%s.\n\nflags:\n", name, synopsis,
			string(summary[0]-'a'+'A'), summary[1:])
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args and reports whether to go on; if not, code is the
// exit status: 0 after -h, 2 after a mistake (flag has explained it).
func parse(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	return exitOK, true
}

// parseFlags parses args into fs for a command that takes flags and no
// arguments. ok is false when the command must end, with code.
func (a *app) parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if code, ok := parse(fs, args); !ok {
		return code, false
	}
	if fs.NArg() > 0 {
		return a.usageError(fs, "unexpected argument %q", fs.Arg(0)), false
	}
	return exitOK, true
}

// storeFile returns the store file that --store (flagValue) names, or
// reports a usage error: ok is false when the command must end, with code.
func (a *app) storeFile(fs *flag.FlagSet, flagValue string) (path string, code int, ok bool) {
	path, err := a.storePath(flagValue)
	if err != nil {
		return "", a.usageError(fs, "%v", err), false
	}
	return path, exitOK, true
}

// parseClient parses the flags of a command that takes no arguments and
// talks to the token endpoint, and returns its store file and Config. ok
// is false when the command must end, with code.
func (a *app) parseClient(fs *flag.FlagSet, args []string, store *string, cf *clientFlags) (path string, cfg bearer.Config, code int, ok bool) {
	if code, ok := a.parseFlags(fs, args); !ok {
		return "", cfg, code, false
	}
	if path, code, ok = a.storeFile(fs, *store); !ok {
		return "", cfg, code, false
	}
	return path, a.config(cf), exitOK, true
}

// usageError reports a mistake in the arguments.
func (a *app) usageError(fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(a.stderr, "%s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fmt.Fprintf(a.stderr, "run %s -h for usage\n", fs.Name())
	return exitUsage
}

// storeFlag adds --store to fs.
func storeFlag(fs *flag.FlagSet) *string {
	return fs.String("store", "", "token `file` (default $XDG_CONFIG_HOME/bearer/token.json or ~/.config/bearer/token.json)")
}

// storePath is the store file: flagValue, or the default doc.go describes.
func (a *app) storePath(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	// The XDG spec says relative paths are to be ignored.
	if d := a.env("XDG_CONFIG_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "bearer", "token.json"), nil
	}
	if runtime.GOOS == "windows" {
		if d := a.env("AppData"); d != "" {
			return filepath.Join(d, "bearer", "token.json"), nil
		}
	}
	if h := a.env("HOME"); h != "" {
		return filepath.Join(h, ".config", "bearer", "token.json"), nil
	}
	return "", errors.New("no --store given, and neither XDG_CONFIG_HOME nor HOME is set")
}

// endpointFlags name the token endpoint and the client a token belongs to.
type endpointFlags struct {
	tokenURL string
	id       string
}

func addEndpointFlags(fs *flag.FlagSet) *endpointFlags {
	e := new(endpointFlags)
	fs.StringVar(&e.tokenURL, "token-url", "", "token endpoint `URL` (default $OAUTH_TOKEN_URL, else "+bearer.DefaultTokenURL+")")
	fs.StringVar(&e.id, "client-id", "", "client `ID` (default $OAUTH_CLIENT_ID)")
	return e
}

// resolve fills in what the flags left empty from the environment.
func (a *app) resolve(e *endpointFlags) endpointFlags {
	return endpointFlags{
		tokenURL: a.flagOrEnv(e.tokenURL, "OAUTH_TOKEN_URL"),
		id:       a.flagOrEnv(e.id, "OAUTH_CLIENT_ID"),
	}
}

// record is the issuer record of a token obtained with e: the library
// records the token URL it uses, DefaultTokenURL for "".
func (a *app) record(e *endpointFlags) issuer.Record {
	r := a.resolve(e)
	if r.tokenURL == "" {
		r.tokenURL = bearer.DefaultTokenURL
	}
	return issuer.Record{TokenURL: r.tokenURL, ClientID: r.id}
}

// clientFlags are the flags of the commands that talk to the token
// endpoint.
type clientFlags struct {
	*endpointFlags
	secret  string
	form    bool
	basic   bool
	verbose bool
}

func addClientFlags(fs *flag.FlagSet) *clientFlags {
	c := &clientFlags{endpointFlags: addEndpointFlags(fs)}
	// The defaults come from the environment after parsing, so that -h
	// never prints the secret.
	fs.StringVar(&c.secret, "client-secret", "", "client `secret` (default $OAUTH_CLIENT_SECRET; prefer the environment, command lines are visible to others)")
	fs.BoolVar(&c.form, "form", false, "send token requests form-encoded (RFC 6749) instead of JSON")
	fs.BoolVar(&c.basic, "basic", false, "send the client credentials with HTTP Basic auth instead of in the body")
	fs.BoolVar(&c.verbose, "v", false, "log each request to the server as it happens, retries and waits included, to standard error (never a secret)")
	return c
}

func (a *app) config(c *clientFlags) bearer.Config {
	e := a.resolve(c.endpointFlags)
	cfg := bearer.Config{
		TokenURL:     e.tokenURL,
		ClientID:     e.id,
		ClientSecret: a.flagOrEnv(c.secret, "OAUTH_CLIENT_SECRET"),
		Now:          a.now,
	}
	if c.form {
		cfg.Encoding = bearer.Form
	}
	if c.basic {
		cfg.AuthStyle = bearer.AuthBasic
	}
	if c.verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return cfg
}

// Messages for the errors a user can act on.
const (
	msgReauthorize = "the refresh token expired or was already used: authorize the app again (bearer login)"
	msgNoToken     = "no token stored: run bearer login or bearer import (store: %s)"
	msgMismatch    = "pass the --token-url and --client-id it was issued to (or set OAUTH_TOKEN_URL and OAUTH_CLIENT_ID), or run bearer login --force for this endpoint"
	msgUnavailable = "the token endpoint is unreachable or failing: try again later (the stored token is unchanged)"
)

// fail explains err on stderr and returns its exit status. store is the
// store file, for ErrNoToken.
func (a *app) fail(err error, store string) int {
	switch {
	case errors.Is(err, bearer.ErrNoToken):
		fmt.Fprintf(a.stderr, "bearer: "+msgNoToken+"\n", store)
		return exitReauthorize
	case errors.Is(err, bearer.ErrReauthorize):
		fmt.Fprintf(a.stderr, "bearer: %s\nbearer: detail: %v\n", msgReauthorize, err)
		return exitReauthorize
	case errors.Is(err, issuer.ErrMismatch):
		// The library's message names both endpoints and clients.
		fmt.Fprintf(a.stderr, "%s\nbearer: %s\n", prefixed(err), msgMismatch)
		return exitUsage
	case errors.Is(err, bearer.ErrInsecure):
		fmt.Fprintf(a.stderr, "%s\nbearer: use https, or a loopback address for local testing\n", prefixed(err))
		return exitUsage
	case temporary(err):
		fmt.Fprintf(a.stderr, "%s\nbearer: %s\n", prefixed(err), msgUnavailable)
		return exitUnavailable
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(a.stderr, "bearer: interrupted")
		return exitFailure
	}
	fmt.Fprintln(a.stderr, prefixed(err))
	return exitFailure
}

// prefixed is err's message with the command's "bearer: " prefix, which
// the library's errors already carry.
func prefixed(err error) string {
	if msg := err.Error(); strings.HasPrefix(msg, "bearer") {
		return msg
	}
	return "bearer: " + err.Error()
}

// temporary reports whether err is a token endpoint failure that may pass:
// no answer, a 5xx or a 429.
func temporary(err error) bool {
	var re *bearer.RetrieveError
	if errors.As(err, &re) {
		return re.StatusCode == 0 || re.StatusCode >= 500 || re.StatusCode == 429
	}
	return false
}
