package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenkit/bearer/bearertest"
	"github.com/tokenkit/bearer/internal/issuer"
)

// browser plays the person at the browser: each URL the command opens is
// visited by act on a goroutine of its own, with an http.Client that follows
// redirects (to the command's loopback listener, too).
type browser struct {
	t      *testing.T
	client *http.Client
	act    func(b *browser, u string)
	wg     sync.WaitGroup
	mu     sync.Mutex
	opened []string
}

func newBrowser(t *testing.T, act func(b *browser, u string)) *browser {
	b := &browser{t: t, act: act, client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
	t.Cleanup(b.wg.Wait) // every visit ends with the test
	return b
}

func (b *browser) open(u string) error {
	b.mu.Lock()
	b.opened = append(b.opened, u)
	b.mu.Unlock()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.act(b, u)
	}()
	return nil
}

// get visits u, following redirects, and returns the last page.
func (b *browser) get(u string) string {
	resp, err := b.client.Get(u)
	if err != nil {
		b.t.Errorf("browser: GET: %v", err)
		return ""
	}
	defer resp.Body.Close()
	page, _ := io.ReadAll(resp.Body)
	return string(page)
}

// decide posts the authorization request of u back with a decision, as the
// consent page's buttons do, and follows the redirect.
func (b *browser) decide(u, decision string) string {
	req, _ := url.Parse(u)
	form := req.Query()
	form.Set("decision", decision)
	req.RawQuery = ""
	resp, err := b.client.PostForm(req.String(), form)
	if err != nil {
		b.t.Errorf("browser: POST: %v", err)
		return ""
	}
	defer resp.Body.Close()
	page, _ := io.ReadAll(resp.Body)
	return string(page)
}

// redirect visits the authorization URL u without following its redirect,
// lets change edit where it points, and goes there.
func (b *browser) redirect(u string, change func(q url.Values)) string {
	c := *b.client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Get(u)
	if err != nil {
		b.t.Errorf("browser: GET: %v", err)
		return ""
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Host == "" {
		b.t.Errorf("browser: no redirect from the authorization endpoint (status %d)", resp.StatusCode)
		return ""
	}
	q := loc.Query()
	change(q)
	loc.RawQuery = q.Encode()
	return b.get(loc.String())
}

// loginFixture is a fixture whose server and environment offer every
// endpoint login needs.
func loginFixture(t *testing.T, cfg bearertest.Config) *fixture {
	f := newFixture(t, cfg)
	f.env["OAUTH_TOKEN_URL"] = f.srv.TokenURL()
	f.env["OAUTH_AUTH_URL"] = f.srv.AuthURL()
	f.env["OAUTH_DEVICE_AUTH_URL"] = f.srv.DeviceAuthURL()
	return f
}

func (f *fixture) noStore(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(f.store); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the store was written (Stat: %v)", err)
	}
}

func TestLogin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		srv      bearertest.Config
		act      func(b *browser, u string)
		args     []string
		wantCode int
		want     string // in stderr
	}{
		{
			name: "approved", act: func(b *browser, u string) {
				if page := b.get(u); !strings.Contains(page, "bearer is authorized") {
					b.t.Errorf("the browser's last page = %q, want it to say bearer is authorized", page)
				}
			},
			args: []string{"--scope", "tickets", "--param", "prompt=consent"}, wantCode: exitOK,
		},
		{
			name: "approved on the consent page", srv: bearertest.Config{Consent: true},
			act:      func(b *browser, u string) { b.get(u); b.decide(u, "approve") },
			wantCode: exitOK,
		},
		{
			name: "denied", act: func(b *browser, u string) { b.decide(u, "deny") },
			wantCode: exitReauthorize, want: "the authorization was denied (the user denied the request): nothing was stored",
		},
		{
			name: "wrong state", act: func(b *browser, u string) {
				if page := b.redirect(u, func(q url.Values) { q.Set("state", "forged") }); !strings.Contains(page, "ignored its code") {
					b.t.Errorf("the browser's last page = %q, want it to say the code was ignored", page)
				}
			},
			wantCode: exitFailure, want: "the redirect's state does not match this login",
		},
		{
			name: "no code", act: func(b *browser, u string) { b.redirect(u, func(q url.Values) { q.Del("code") }) },
			wantCode: exitFailure, want: "no authorization code",
		},
		{
			name: "timeout", act: func(*browser, string) {}, args: []string{"--timeout", "100ms"},
			wantCode: exitTimeout, want: "timed out after 100ms waiting for the authorization",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := loginFixture(t, tt.srv)
			b := newBrowser(t, tt.act)
			f.open = b.open
			r := f.run(t, "", append([]string{"login", "--store", f.store}, tt.args...)...)
			b.wg.Wait()
			wantCode(t, r, tt.wantCode)
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, r.stderr)
			}
			if len(b.opened) != 1 || !strings.HasPrefix(b.opened[0], f.srv.AuthURL()+"?") || !strings.Contains(r.stderr, b.opened[0]) {
				t.Fatalf("opened %q, want the authorization URL once, also printed", b.opened)
			}
			if tt.wantCode != exitOK {
				f.noStore(t)
				if tt.name != "timeout" && f.srv.Stats().Exchanges != 0 {
					t.Errorf("server Exchanges = %d, want 0", f.srv.Stats().Exchanges)
				}
				return
			}
			u, _ := url.Parse(b.opened[0])
			q := u.Query()
			if q.Get("code_challenge_method") != "S256" || q.Get("state") == "" || !strings.HasPrefix(q.Get("redirect_uri"), "http://127.0.0.1:") {
				t.Errorf("authorization URL %s lacks PKCE, state or a loopback redirect", u)
			}
			if tt.args != nil && (q.Get("scope") != "tickets" || q.Get("prompt") != "consent") {
				t.Errorf("authorization URL %s lacks --scope or --param", u)
			}
			tok := f.stored(t)
			if !f.srv.Alive(tok.RefreshToken) {
				t.Error("the stored refresh token is not alive")
			}
			if rec := issuer.Of(tok); rec.TokenURL != f.srv.TokenURL() || rec.ClientID != testClientID {
				t.Errorf("stored record = %+v, want the server's token URL and the client", rec)
			}
			if !strings.Contains(r.stdout, "stored a Bearer token in "+f.store) {
				t.Errorf("stdout = %q, want it to say what was stored", r.stdout)
			}
			noSecrets(t, r, tok.AccessToken, tok.RefreshToken)
		})
	}
}

// A code is single use: replayed into a second login, it is rejected, and
// the server revokes what it bought.
func TestLoginReusedCode(t *testing.T) {
	t.Parallel()
	f := loginFixture(t, bearertest.Config{})
	var first string
	f.open = newBrowser(t, func(b *browser, u string) {
		b.redirect(u, func(q url.Values) { first = q.Get("code") })
	}).open
	wantCode(t, f.run(t, "", "login", "--store", f.store), exitOK)

	f.open = newBrowser(t, func(b *browser, u string) {
		b.redirect(u, func(q url.Values) { q.Set("code", first) })
	}).open
	r := f.run(t, "", "login", "--force", "--store", f.store)
	wantCode(t, r, exitReauthorize)
	if !strings.Contains(r.stderr, "the authorization code was rejected") {
		t.Errorf("stderr = %q, want it to say the code was rejected", r.stderr)
	}
	noSecrets(t, r, first)
}

// --port fixes the redirect URI's port, for servers that register one.
func TestLoginPort(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	f := loginFixture(t, bearertest.Config{})
	var redirect string
	f.open = newBrowser(t, func(b *browser, u string) {
		pu, _ := url.Parse(u)
		redirect = pu.Query().Get("redirect_uri")
		b.get(u)
	}).open
	r := f.run(t, "", "login", "--port", strconv.Itoa(port), "--store", f.store)
	wantCode(t, r, exitOK)
	if want := "http://127.0.0.1:" + strconv.Itoa(port) + "/callback"; redirect != want {
		t.Errorf("redirect_uri = %q, want %q", redirect, want)
	}
}

// notifyWriter is a buffer that tells, on changed, that it grew: a test
// reads what a running command printed without sleeping.
type notifyWriter struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func (w *notifyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case w.changed <- struct{}{}:
	default:
	}
	return w.buf.Write(p)
}

func (w *notifyWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// waitFor waits until the text holds a line starting with prefix, and
// returns that line's rest.
func (w *notifyWriter) waitFor(prefix string) string {
	for {
		for _, line := range strings.Split(w.String(), "\n") {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok {
				return rest
			}
		}
		<-w.changed
	}
}

// With --no-browser the URL is printed, not opened; the person opens it.
func TestLoginNoBrowser(t *testing.T) {
	t.Parallel()
	f := loginFixture(t, bearertest.Config{})
	f.open = func(u string) error {
		t.Errorf("opened %s despite --no-browser", u)
		return nil
	}
	stderr := &notifyWriter{changed: make(chan struct{}, 1)}
	var stdout bytes.Buffer
	a := &app{stdin: strings.NewReader(""), stdout: &stdout, stderr: stderr,
		env: func(k string) string { return f.env[k] }, now: f.clock.Now, open: f.open}
	done := make(chan int)
	go func() { done <- a.run(t.Context(), []string{"login", "--no-browser", "--store", f.store}) }()

	u := stderr.waitFor(f.srv.AuthURL() + "?")
	b := newBrowser(t, func(b *browser, u string) { b.get(u) })
	b.open(f.srv.AuthURL() + "?" + u)
	if code := <-done; code != exitOK {
		t.Fatalf("exit status = %d, want 0\n%s", code, stderr.String())
	}
	if !f.srv.Alive(f.stored(t).RefreshToken) {
		t.Error("the stored refresh token is not alive")
	}
}

func TestLoginRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		env      map[string]string // replaces loginFixture's
		seed     bool
		args     []string
		wantCode int
		want     string
	}{
		{name: "no authorization endpoint", env: map[string]string{"OAUTH_AUTH_URL": ""}, wantCode: exitUsage, want: "no authorization endpoint: pass --auth-url or set OAUTH_AUTH_URL"},
		{name: "no device endpoint", env: map[string]string{"OAUTH_DEVICE_AUTH_URL": ""}, args: []string{"--device"}, wantCode: exitUsage, want: "pass --device-url or set OAUTH_DEVICE_AUTH_URL"},
		{name: "plain http elsewhere", args: []string{"--auth-url", "http://auth.example.test/authorize"}, wantCode: exitUsage, want: "not loopback"},
		{name: "bad param", args: []string{"--param", "novalue"}, wantCode: exitUsage, want: "want key=value"},
		{name: "a live token stored", seed: true, wantCode: exitFailure, want: "refusing to replace the token stored in"},
		{name: "a live token stored, device", seed: true, args: []string{"--device"}, wantCode: exitFailure, want: "refusing to replace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := loginFixture(t, bearertest.Config{})
			for k, v := range tt.env {
				f.env[k] = v
			}
			f.open = func(u string) error {
				t.Errorf("opened %s, want nothing opened", u)
				return nil
			}
			if tt.seed {
				f.seed(t, f.srv.Issue())
			}
			r := f.run(t, "", append([]string{"login", "--store", f.store}, tt.args...)...)
			wantCode(t, r, tt.wantCode)
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, r.stderr)
			}
			if st := f.srv.Stats(); st.DeviceCodes != 0 || st.TokenRequests != 0 {
				t.Errorf("server: %d device codes, %d token requests; want none", st.DeviceCodes, st.TokenRequests)
			}
		})
	}
}

// The device grant, end to end: the command shows the code and opens the
// link that holds it; the person approves, denies, or lets it expire.
func TestLoginDevice(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		act      func(f *fixture) func(b *browser, u string)
		args     []string
		wantCode int
		want     string
	}{
		{
			name:     "approved",
			act:      func(*fixture) func(b *browser, u string) { return func(b *browser, u string) { b.get(u) } },
			wantCode: exitOK,
		},
		{
			name: "denied",
			act: func(*fixture) func(b *browser, u string) {
				return func(b *browser, u string) {
					pu, _ := url.Parse(u)
					form := url.Values{"user_code": {pu.Query().Get("user_code")}, "decision": {"deny"}}
					pu.RawQuery = ""
					resp, err := b.client.PostForm(pu.String(), form)
					if err != nil {
						b.t.Error(err)
						return
					}
					resp.Body.Close()
				}
			},
			wantCode: exitReauthorize, want: "the authorization was denied",
		},
		{
			name: "code expired",
			act: func(f *fixture) func(b *browser, u string) {
				return func(*browser, string) { f.clock.Advance(11 * time.Minute) }
			},
			wantCode: exitTimeout, want: "timed out: the code was not approved in time",
		},
		{
			name:     "timeout",
			act:      func(*fixture) func(b *browser, u string) { return func(*browser, string) {} },
			args:     []string{"--timeout", "300ms"},
			wantCode: exitTimeout, want: "timed out",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := loginFixture(t, bearertest.Config{DeviceInterval: time.Second})
			b := newBrowser(t, tt.act(f))
			f.open = b.open
			r := f.run(t, "", append([]string{"login", "--device", "--store", f.store}, tt.args...)...)
			b.wg.Wait()
			wantCode(t, r, tt.wantCode)
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, r.stderr)
			}
			if len(b.opened) != 1 || !strings.HasPrefix(b.opened[0], f.srv.URL+"/device/verify?user_code=") {
				t.Fatalf("opened %q, want the verification link once", b.opened)
			}
			code := strings.TrimPrefix(b.opened[0], f.srv.URL+"/device/verify?user_code=")
			if !strings.Contains(r.stderr, "visit "+f.srv.URL+"/device/verify and enter the code\n\n  "+code) {
				t.Errorf("stderr does not show the code %s and where to enter it:\n%s", code, r.stderr)
			}
			if tt.wantCode != exitOK {
				f.noStore(t)
				return
			}
			tok := f.stored(t)
			if !f.srv.Alive(tok.RefreshToken) {
				t.Error("the stored refresh token is not alive")
			}
			noSecrets(t, r, tok.AccessToken, tok.RefreshToken)
		})
	}
}

// --device --no-browser shows the code and where to enter it, and opens
// nothing: the person enters the code elsewhere.
func TestLoginDeviceNoBrowser(t *testing.T) {
	t.Parallel()
	f := loginFixture(t, bearertest.Config{DeviceInterval: time.Second})
	f.open = func(u string) error {
		t.Errorf("opened %s despite --no-browser", u)
		return nil
	}
	stderr, done := f.start(t, 0, "login", "--device", "--no-browser", "--store", f.store)
	stderr.waitFor("bearer: waiting up to")
	_, rest, _ := strings.Cut(stderr.String(), "/device/verify and enter the code\n\n  ")
	code, _, _ := strings.Cut(rest, "\n")
	b := newBrowser(t, func(b *browser, u string) { b.get(u) })
	b.open(f.srv.URL + "/device/verify?user_code=" + url.QueryEscape(code))
	if got := <-done; got != exitOK {
		t.Fatalf("exit status = %d, want 0\n%s", got, stderr)
	}
	if !f.srv.Alive(f.stored(t).RefreshToken) {
		t.Error("the stored refresh token is not alive")
	}
}
