package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/bearertest"
)

// gate is a proxy in front of a server that holds the first request until
// released. arrived is closed when that request has come in.
type gate struct {
	url     string // the target's URL, through the gate
	arrived chan struct{}
	release chan struct{}
}

func newGate(t *testing.T, target string) *gate {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{arrived: make(chan struct{}), release: make(chan struct{})}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})
	first := make(chan struct{}, 1)
	first <- struct{}{}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-first:
			close(g.arrived)
			<-g.release
		default:
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	g.url = hs.URL + u.Path
	return g
}

// start runs the command line in the background with stderr readable
// while it runs; the exit status comes on the channel.
func (f *fixture) start(t *testing.T, slow time.Duration, args ...string) (*notifyWriter, <-chan int) {
	stderr := &notifyWriter{changed: make(chan struct{}, 1)}
	a := &app{stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: stderr,
		env: func(k string) string { return f.env[k] }, now: f.clock.Now, open: f.open, slow: slow}
	done := make(chan int, 1)
	go func() { done <- a.run(t.Context(), args) }()
	return stderr, done
}

// A token endpoint that does not answer at once: after the silent time the
// command says, once, what it waits for, and goes on waiting.
func TestProgressTokenEndpoint(t *testing.T) {
	t.Parallel()
	for _, cmd := range []string{"token", "request"} {
		t.Run(cmd, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, bearertest.Config{})
			f.seed(t, f.srv.Issue())
			f.clock.Advance(2 * accessLife)
			g := newGate(t, f.srv.TokenURL())
			args := []string{cmd, "--store", f.store, "--token-url", g.url}
			if cmd == "request" {
				args = append(args, f.srv.APIURL())
			}
			stderr, done := f.start(t, 10*time.Millisecond, args...)
			<-g.arrived
			want := "bearer: waiting for the token endpoint at " + g.url + " to answer a refresh..."
			stderr.waitFor(want)
			close(g.release)
			if code := <-done; code != exitOK {
				t.Fatalf("exit status = %d, want 0\n%s", code, stderr)
			}
			if n := strings.Count(stderr.String(), want); n != 1 {
				t.Errorf("%d lines %q, want 1:\n%s", n, want, stderr)
			}
		})
	}
}

// Another process holds the store's lock (it is refreshing): the command
// says so.
func TestProgressLock(t *testing.T) {
	t.Parallel()
	f := newFixture(t, bearertest.Config{})
	f.seed(t, f.srv.Issue())
	f.clock.Advance(2 * accessLife)
	lease, err := bearer.NewFileStore(f.store).Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	stderr, done := f.start(t, 10*time.Millisecond, "token", "--store", f.store, "--token-url", f.srv.TokenURL())
	stderr.waitFor("bearer: waiting for the token store's lock (" + f.store + ".lock): another bearer process is refreshing the token...")
	lease.Unlock(t.Context())
	if code := <-done; code != exitOK {
		t.Fatalf("exit status = %d, want 0\n%s", code, stderr)
	}
	if got := f.srv.Stats().Refreshes; got != 1 {
		t.Errorf("server Refreshes = %d, want 1", got)
	}
}

// With -v the attempts are logged as they happen: the first is in the log
// while the server still holds it. A retry after a 503 and its wait are
// logged too, and no progress line is printed.
func TestProgressVerbose(t *testing.T) {
	t.Parallel()
	f := newFixture(t, bearertest.Config{})
	g0 := f.srv.Issue()
	f.seed(t, g0)
	f.clock.Advance(2 * accessLife)
	f.srv.InjectFault(bearertest.Fault{Status: http.StatusServiceUnavailable})
	g := newGate(t, f.srv.TokenURL())
	stderr, done := f.start(t, 10*time.Millisecond, "token", "-v", "--store", f.store, "--token-url", g.url)
	<-g.arrived
	stderr.waitFor("time=")
	if s := stderr.String(); !strings.Contains(s, `msg="bearer: sending"`) || !strings.Contains(s, "attempt=1") {
		t.Errorf("while the first attempt is out, the log = %q, want it to say so", s)
	}
	close(g.release)
	if code := <-done; code != exitOK {
		t.Fatalf("exit status = %d, want 0\n%s", code, stderr)
	}
	out := stderr.String()
	for _, want := range []string{"status 503", `msg="bearer: waiting before the next attempt"`, "attempt=2 outcome=ok", `request="token request (refresh_token)"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "bearer: waiting for") {
		t.Errorf("a progress line was printed with -v:\n%s", out)
	}
	head, _ := f.srv.Head(g0.Family)
	noSecrets(t, result{stderr: out}, g0.RefreshToken, head.RefreshToken, head.AccessToken)
}

// A slow API is named too: the wait is the command's own request.
func TestProgressAPI(t *testing.T) {
	t.Parallel()
	f := newFixture(t, bearertest.Config{})
	f.seed(t, f.srv.Issue())
	g := newGate(t, f.srv.APIURL())
	stderr, done := f.start(t, 10*time.Millisecond, "request", "--store", f.store, "--token-url", f.srv.TokenURL(), g.url+"items")
	<-g.arrived
	stderr.waitFor("bearer: waiting for " + g.url + "items to answer...")
	close(g.release)
	if code := <-done; code != exitOK {
		t.Fatalf("exit status = %d, want 0\n%s", code, stderr)
	}
}
