package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/tokenkit/bearer"
)

// slowWait is how long a command waits in silence before it says what it
// waits for: a token endpoint that never answers must not look like a hang.
const slowWait = 2 * time.Second

// waits tells the person at the terminal what a command waits for, once
// a wait has lasted slowWait (a.slow in tests): one line for each thing
// waited for that long. The Source's hooks say when a token request is
// out, and the command's base transport when its own request is. With -v it
// says nothing: the log tells it all as it happens.
type waits struct {
	out      io.Writer
	slow     time.Duration
	tokenURL string // redacted
	lock     string
	target   string // the command's own request, redacted

	mu      sync.Mutex // guards the fields below, and orders a line before stop's return
	gen     int        // counts waits, so that a stale timer says nothing
	timer   *time.Timer
	stopped bool
}

// newWaits returns the waits of a command whose Source uses cfg and the
// store file path, and installs its hooks in cfg. It starts with the wait
// for the store's lock, which comes first.
func (a *app) newWaits(cfg *bearer.Config, path string, verbose bool) *waits {
	w := &waits{out: a.stderr, slow: a.slow, lock: path + ".lock", stopped: verbose}
	if w.slow <= 0 {
		w.slow = slowWait
	}
	if verbose {
		return w
	}
	w.tokenURL = cfg.TokenURL
	if w.tokenURL == "" {
		w.tokenURL = bearer.DefaultTokenURL
	}
	if u, err := url.Parse(w.tokenURL); err == nil {
		w.tokenURL = u.Redacted()
	}
	cfg.Hooks.RefreshStarted = func(context.Context) {
		w.waitFor("the token endpoint at " + w.tokenURL + " to answer a refresh")
	}
	cfg.Hooks.RefreshFinished = func(context.Context, time.Duration, error) { w.waitFor("") }
	w.waitFor("the token store's lock (" + w.lock + "): another bearer process is refreshing the token")
	return w
}

// waitFor starts a wait for what; "" means nothing is waited for.
func (w *waits) waitFor(what string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	w.gen++
	if w.timer != nil {
		w.timer.Stop()
	}
	if what == "" {
		return
	}
	gen := w.gen
	w.timer = time.AfterFunc(w.slow, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if !w.stopped && w.gen == gen {
			fmt.Fprintf(w.out, "bearer: waiting for %s...\n", what)
		}
	})
}

// stop ends the waits; once it returns, nothing more is said.
func (w *waits) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	if w.timer != nil {
		w.timer.Stop()
	}
}

// base returns the transport to put under the command's bearer.Transport
// for req: http.DefaultTransport, watched.
func (w *waits) base(req *http.Request) http.RoundTripper {
	w.target = req.URL.Redacted()
	return watchedTransport{w}
}

type watchedTransport struct{ w *waits }

func (t watchedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.w.waitFor(t.w.target + " to answer")
	defer t.w.waitFor("")
	return http.DefaultTransport.RoundTrip(r)
}

// CloseIdleConnections lets bearer.Transport close what the request left.
func (t watchedTransport) CloseIdleConnections() {
	http.DefaultTransport.(interface{ CloseIdleConnections() }).CloseIdleConnections()
}
