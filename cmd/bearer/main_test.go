package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/bearertest"
)

const (
	testClientID     = "cli-test-client"
	testClientSecret = "cli-test-secret-value"
	accessLife       = time.Hour
)

type result struct {
	code           int
	stdout, stderr string
}

// fixture is a bearertest server with a fake clock, and a store file the
// command line uses.
type fixture struct {
	srv   *bearertest.Server
	clock *bearertest.Clock
	dir   string
	store string
	env   map[string]string
	// open is the user's browser; nil means there is none.
	open func(url string) error
}

func newFixture(t *testing.T, cfg bearertest.Config) *fixture {
	t.Helper()
	f := &fixture{clock: bearertest.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))}
	cfg.Now = f.clock.Now
	cfg.ClientID, cfg.ClientSecret = testClientID, testClientSecret
	if cfg.AccessLifetime == 0 {
		cfg.AccessLifetime = accessLife
	}
	f.srv = bearertest.NewServer(cfg)
	t.Cleanup(f.srv.Close)
	f.dir = t.TempDir()
	f.store = filepath.Join(f.dir, "token.json")
	f.env = map[string]string{
		"OAUTH_CLIENT_ID":     testClientID,
		"OAUTH_CLIENT_SECRET": testClientSecret,
		"HOME":                f.dir,
	}
	return f
}

// run runs the command line in-process with the fixture's clock.
func (f *fixture) run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	a := &app{
		stdin:  strings.NewReader(stdin),
		stdout: &out,
		stderr: &errOut,
		env:    func(k string) string { return f.env[k] },
		now:    f.clock.Now,
		open:   f.open,
	}
	if a.open == nil {
		a.open = func(string) error { return errors.New("no browser in this test") }
	}
	code := a.run(t.Context(), args)
	return result{code, out.String(), errOut.String()}
}

// client is the arguments of a command that talks to the token endpoint.
func (f *fixture) client(cmd string, args ...string) []string {
	return append([]string{cmd, "--store", f.store, "--token-url", f.srv.TokenURL()}, args...)
}

// seed stores g as if it had been imported.
func (f *fixture) seed(t *testing.T, g bearertest.Grant) {
	t.Helper()
	err := bearer.NewFileStore(f.store).Save(t.Context(), &bearer.Token{
		AccessToken:   g.AccessToken,
		TokenType:     "Bearer",
		RefreshToken:  g.RefreshToken,
		Expiry:        g.Expiry,
		RefreshExpiry: g.RefreshExpiry,
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) stored(t *testing.T) *bearer.Token {
	t.Helper()
	tok, err := bearer.NewFileStore(f.store).Load(t.Context())
	if err != nil {
		t.Fatalf("loading the store: %v", err)
	}
	return tok
}

// noSecrets fails if the output holds any of secrets.
func noSecrets(t *testing.T, r result, secrets ...string) {
	t.Helper()
	for _, s := range append(secrets, testClientSecret) {
		if s == "" {
			continue
		}
		if strings.Contains(r.stdout, s) || strings.Contains(r.stderr, s) {
			t.Errorf("the output holds a secret %.8s...:\nstdout:\n%s\nstderr:\n%s", s, r.stdout, r.stderr)
		}
	}
}

func wantCode(t *testing.T, r result, want int) {
	t.Helper()
	if r.code != want {
		t.Fatalf("exit status = %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, want, r.stdout, r.stderr)
	}
}

func TestToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		advance     time.Duration // how long after the issue the command runs
		flags       []string
		srv         bearertest.Config
		wantRefresh int
	}{
		{name: "valid", advance: accessLife / 2},
		{name: "expired", advance: accessLife + time.Minute, wantRefresh: 1},
		{name: "expired form", advance: 2 * accessLife, flags: []string{"--form"}, wantRefresh: 1},
		{name: "expired basic", advance: 2 * accessLife, flags: []string{"--basic"}, wantRefresh: 1},
		{name: "expired form answers", advance: 2 * accessLife, srv: bearertest.Config{FormResponses: true}, wantRefresh: 1},
		{name: "expired verbose", advance: 2 * accessLife, flags: []string{"-v"}, wantRefresh: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, tt.srv)
			g := f.srv.Issue()
			f.seed(t, g)
			f.clock.Advance(tt.advance)

			r := f.run(t, "", f.client("token", tt.flags...)...)
			wantCode(t, r, exitOK)

			head, alive := f.srv.Head(g.Family)
			if !alive {
				t.Fatal("the family is dead")
			}
			if got, want := r.stdout, head.AccessToken+"\n"; got != want {
				t.Errorf("token printed %q, want the live access token %q", got, want)
			}
			if got := f.srv.Stats().Refreshes; got != tt.wantRefresh {
				t.Errorf("server Refreshes = %d, want %d", got, tt.wantRefresh)
			}
			if got := f.stored(t).RefreshToken; got != head.RefreshToken || !f.srv.Alive(got) {
				t.Errorf("the store does not hold the live refresh token")
			}
			if tt.wantRefresh == 0 && r.stderr != "" {
				t.Errorf("stderr = %q, want nothing", r.stderr)
			}
			// Only the access token may be printed, and only to stdout.
			noSecrets(t, result{stderr: r.stderr}, head.AccessToken)
			noSecrets(t, r, g.RefreshToken, head.RefreshToken)
		})
	}
}

func TestTokenReauthorize(t *testing.T) {
	t.Parallel()
	t.Run("spent refresh token", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, bearertest.Config{})
		g := f.srv.Issue()
		f.seed(t, g)
		f.clock.Advance(2 * accessLife)
		wantCode(t, f.run(t, "", f.client("token")...), exitOK)

		// A restored backup: the store holds the refresh token just spent.
		f.seed(t, g)
		r := f.run(t, "", f.client("token")...)
		wantCode(t, r, exitReauthorize)
		if !strings.Contains(r.stderr, msgReauthorize) {
			t.Errorf("stderr = %q, want it to say %q", r.stderr, msgReauthorize)
		}
		if r.stdout != "" {
			t.Errorf("stdout = %q, want nothing", r.stdout)
		}
		if got := f.srv.Stats().ReuseAttempts; got != 1 {
			t.Errorf("server ReuseAttempts = %d, want 1", got)
		}
		noSecrets(t, r, g.AccessToken, g.RefreshToken)

		// request explains it the same way.
		r = f.run(t, "", f.client("request", f.srv.APIURL())...)
		wantCode(t, r, exitReauthorize)
		if !strings.Contains(r.stderr, msgReauthorize) {
			t.Errorf("request stderr = %q, want it to say %q", r.stderr, msgReauthorize)
		}
		noSecrets(t, r, g.AccessToken, g.RefreshToken)
	})
	t.Run("expired refresh token", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, bearertest.Config{RefreshLifetime: 2 * accessLife})
		g := f.srv.Issue()
		f.seed(t, g)
		f.clock.Advance(3 * accessLife)
		r := f.run(t, "", f.client("token")...)
		wantCode(t, r, exitReauthorize)
		if !strings.Contains(r.stderr, msgReauthorize) {
			t.Errorf("stderr = %q, want it to say %q", r.stderr, msgReauthorize)
		}
		if got := f.srv.Stats().TokenRequests; got != 0 {
			t.Errorf("server TokenRequests = %d, want 0: the expiry is known", got)
		}
		noSecrets(t, r, g.AccessToken, g.RefreshToken)
	})
}

// TestNoToken is the first run: nothing stored, in a folder that exists or
// (on a fresh machine) does not, and the default store of an empty HOME.
func TestNoToken(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"token"},
		{"status"},
		{"request", "http://127.0.0.1:1/"},
	} {
		for _, where := range []string{"folder exists", "no folder", "default store"} {
			t.Run(args[0]+" "+where, func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, bearertest.Config{})
				store := []string{"--store", f.store}
				switch where {
				case "no folder":
					f.store = filepath.Join(f.dir, "fresh", "bearer", "token.json")
					store = []string{"--store", f.store}
				case "default store":
					f.store = filepath.Join(f.dir, ".config", "bearer", "token.json")
					store = nil
				}
				r := f.run(t, "", append(append([]string{args[0]}, store...), args[1:]...)...)
				wantCode(t, r, exitReauthorize)
				want := fmt.Sprintf(msgNoToken, f.store)
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr = %q, want it to say %q", r.stderr, want)
				}
				if strings.Contains(r.stderr, "no such file") {
					t.Errorf("stderr = %q, want no file system error", r.stderr)
				}
			})
		}
	}
}

func TestCorruptStore(t *testing.T) {
	t.Parallel()
	const garbage = "{not a token"
	for _, args := range [][]string{{"token"}, {"status"}} {
		t.Run(args[0], func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, bearertest.Config{})
			if err := os.WriteFile(f.store, []byte(garbage), 0o600); err != nil {
				t.Fatal(err)
			}
			r := f.run(t, "", append([]string{args[0], "--store", f.store}, args[1:]...)...)
			wantCode(t, r, exitFailure)
			if !strings.Contains(r.stderr, f.store) {
				t.Errorf("stderr = %q, want it to name the store", r.stderr)
			}
			if b, _ := os.ReadFile(f.store); string(b) != garbage {
				t.Errorf("the corrupt store was overwritten")
			}
		})
	}
}

func TestTokenUnavailable(t *testing.T) {
	t.Parallel()
	f := newFixture(t, bearertest.Config{})
	g := f.srv.Issue()
	f.seed(t, g)
	f.clock.Advance(2 * accessLife)
	// More 503s than the Source retries.
	f.srv.InjectFault(bearertest.Fault{Status: 503, Count: 10})
	r := f.run(t, "", f.client("token")...)
	wantCode(t, r, exitUnavailable)
	if !strings.Contains(r.stderr, msgUnavailable) {
		t.Errorf("stderr = %q, want it to say %q", r.stderr, msgUnavailable)
	}
	if got := f.stored(t).RefreshToken; got != g.RefreshToken {
		t.Errorf("the store changed after a failed refresh")
	}
	noSecrets(t, r, g.AccessToken, g.RefreshToken)
}

func TestStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		advance  time.Duration
		refresh  time.Duration // refresh accessLife
		wantCode int
		want     []string
	}{
		{
			name: "fresh", advance: 0, refresh: 48 * time.Hour, wantCode: exitOK,
			want: []string{
				"token type:     Bearer\n",
				"access token:   present (redacted), expires 2026-01-02 04:04:05 UTC (in 1h0m0s)\n",
				"refresh token:  present (redacted), expires 2026-01-04 03:04:05 UTC (in 2d0h)\n",
				"state:          usable\n",
			},
		},
		{
			name: "access expired", advance: 90 * time.Minute, refresh: 48 * time.Hour, wantCode: exitOK,
			want: []string{
				"access token:   present (redacted), expired 2026-01-02 04:04:05 UTC (30m0s ago)\n",
				"state:          the access token expired; bearer token refreshes it\n",
			},
		},
		{
			name: "both expired", advance: 3 * time.Hour, refresh: 2 * time.Hour, wantCode: exitReauthorize,
			want: []string{
				"refresh token:  present (redacted), expired 2026-01-02 05:04:05 UTC (1h0m0s ago)\n",
				"state:          reauthorization needed\n",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, bearertest.Config{RefreshLifetime: tt.refresh})
			g := f.srv.Issue()
			f.seed(t, g)
			f.clock.Advance(tt.advance)
			r := f.run(t, "", "status", "--store", f.store)
			wantCode(t, r, tt.wantCode)
			for _, w := range append(tt.want, "store:          "+f.store+"\n") {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("status output lacks %q:\n%s", w, r.stdout)
				}
			}
			noSecrets(t, r, g.AccessToken, g.RefreshToken)
		})
	}
}

func TestRequest(t *testing.T) {
	t.Parallel()
	type echo struct {
		OK      bool   `json:"ok"`
		Path    string `json:"path"`
		Method  string `json:"method"`
		BodyLen int64  `json:"body_len"`
	}
	tests := []struct {
		name        string
		args        func(api string) []string
		stdin       string
		revoke      bool // revoke the stored access token first
		wantCode    int
		want        echo
		wantStderr  string
		wantRefresh int
	}{
		{
			name:     "get",
			args:     func(api string) []string { return []string{api + "items"} },
			wantCode: exitOK,
			want:     echo{OK: true, Path: "/api/items", Method: "GET"},
		},
		{
			name:     "post with flags after the URL",
			args:     func(api string) []string { return []string{api + "items", "-d", `{"a":1}`, "-H", "X-Trace: 1"} },
			wantCode: exitOK,
			want:     echo{OK: true, Path: "/api/items", Method: "POST", BodyLen: 7},
		},
		{
			name:     "put from stdin",
			args:     func(api string) []string { return []string{"-X", "PUT", "-d", "@-", api + "x"} },
			stdin:    "hello",
			wantCode: exitOK,
			want:     echo{OK: true, Path: "/api/x", Method: "PUT", BodyLen: 5},
		},
		{
			name:        "revoked token is refreshed and the request retried",
			args:        func(api string) []string { return []string{"-d", "body", api + "retry"} },
			revoke:      true,
			wantCode:    exitOK,
			want:        echo{OK: true, Path: "/api/retry", Method: "POST", BodyLen: 4},
			wantRefresh: 1,
		},
		{
			name:       "non-2xx",
			args:       func(api string) []string { return []string{api + "scope-required"} },
			wantCode:   exitFailure,
			wantStderr: "401 Unauthorized",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, bearertest.Config{})
			g := f.srv.Issue()
			f.seed(t, g)
			if tt.revoke {
				f.srv.RevokeAccess(g.AccessToken)
			}
			r := f.run(t, tt.stdin, f.client("request", tt.args(f.srv.APIURL())...)...)
			wantCode(t, r, tt.wantCode)
			if tt.wantCode == exitOK {
				var got echo
				if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
					t.Fatalf("stdout %q is not the API's JSON: %v", r.stdout, err)
				}
				if got != tt.want {
					t.Errorf("API saw %+v, want %+v", got, tt.want)
				}
			}
			if !strings.Contains(r.stderr, tt.wantStderr) {
				t.Errorf("stderr = %q, want it to hold %q", r.stderr, tt.wantStderr)
			}
			if got := f.srv.Stats().Refreshes; got != tt.wantRefresh {
				t.Errorf("server Refreshes = %d, want %d", got, tt.wantRefresh)
			}
			head, _ := f.srv.Head(g.Family)
			noSecrets(t, r, g.AccessToken, g.RefreshToken, head.AccessToken, head.RefreshToken)
		})
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	for _, c := range commands() {
		t.Run(c.name+" -h", func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, bearertest.Config{})
			r := f.run(t, "", c.name, "-h")
			wantCode(t, r, exitOK)
			if !strings.Contains(r.stderr, "usage: bearer "+c.name) || !strings.Contains(r.stderr, c.summary[1:]) {
				t.Errorf("%s -h printed %q, want the usage and the description", c.name, r.stderr)
			}
			noSecrets(t, r)
		})
	}
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"no command", nil, exitUsage},
		{"unknown command", []string{"frobnicate"}, exitUsage},
		{"bad flag", []string{"token", "--no-such-flag"}, exitUsage},
		{"extra argument", []string{"status", "extra"}, exitUsage},
		{"request without URL", []string{"request"}, exitUsage},
		{"request with bad URL", []string{"request", "ftp://example.com/"}, exitUsage},
		{"request with bad header", []string{"request", "-H", "novalue", "http://127.0.0.1/"}, exitUsage},
		{"demo short accessLife", []string{"demo", "-access-lifetime", "100ms"}, exitUsage},
		{"help", []string{"help"}, exitOK},
		{"help command", []string{"help", "status"}, exitOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, bearertest.Config{})
			r := f.run(t, "", tt.args...)
			wantCode(t, r, tt.want)
		})
	}
}

func TestStorePath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want string // "" means an error
	}{
		{"xdg", map[string]string{"XDG_CONFIG_HOME": "/xdg", "HOME": "/home/u"}, filepath.Join("/xdg", "bearer", "token.json")},
		{"relative xdg is ignored", map[string]string{"XDG_CONFIG_HOME": "rel", "HOME": "/home/u"}, filepath.Join("/home/u", ".config", "bearer", "token.json")},
		{"home", map[string]string{"HOME": "/home/u"}, filepath.Join("/home/u", ".config", "bearer", "token.json")},
		{"nothing", map[string]string{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &app{env: func(k string) string { return tt.env[k] }}
			got, err := a.storePath("")
			if (err != nil) != (tt.want == "") || got != tt.want {
				t.Errorf("storePath() = %q, %v, want %q", got, err, tt.want)
			}
		})
	}
	a := &app{env: func(string) string { return "" }}
	if got, _ := a.storePath("/given"); got != "/given" {
		t.Errorf("storePath(%q) = %q, want it unchanged", "/given", got)
	}
}

// TestDemo runs the demo for real, briefly: its workers, rotations and
// revocation use real time.
func TestDemo(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	code := run(t.Context(), []string{"demo", "-duration", "2s", "-workers", "4", "-access-lifetime", "1s", "-latency", "10ms"},
		strings.NewReader(""), &out, &errOut, func(string) string { return "" })
	if code != exitOK {
		t.Fatalf("demo exit status = %d, want 0\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	for _, re := range []string{
		`(?m)^requests: +[1-9]\d* in `,
		`(?m)^failures: +0$`,
		`(?m)^401s retried: +[1-9]\d* of [1-9]\d* answered by the API \(the access token was revoked at `,
		`(?m)^refreshes: +[1-9]\d* over `,
		`(?m)^reuse: +0 refresh tokens spent twice$`,
		`(?m)^chain: +alive, and the store holds its live refresh token$`,
		`(?m)^latency: +p50 \S+ +p99 \S+ +max \S+$`,
		`(?m)^result: +ok$`,
	} {
		if !regexp.MustCompile(re).MatchString(out.String()) {
			t.Errorf("demo summary lacks a line matching %s:\n%s", re, out.String())
		}
	}
	if strings.Contains(out.String()+errOut.String(), bearertest.DefaultClientSecret) {
		t.Error("the demo printed the client secret")
	}
}

func TestDemoInterrupted(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, []string{"demo", "-duration", "1m"}, strings.NewReader(""), &out, &errOut, func(string) string { return "" })
	if code != exitFailure {
		t.Errorf("interrupted demo exit status = %d, want %d", code, exitFailure)
	}
	if !strings.Contains(out.String(), "result:") {
		t.Errorf("an interrupted demo printed no summary:\n%s", out.String())
	}
}

// s256 is the PKCE S256 challenge of verifier, as the authorization
// request carries it (RFC 7636 section 4.2).
func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
