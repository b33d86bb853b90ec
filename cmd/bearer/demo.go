package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/bearertest"
)

func (a *app) demo(ctx context.Context, args []string) int {
	fs := a.flagSet("demo", "[flags]")
	duration := fs.Duration("duration", 10*time.Second, "how long the workers send requests")
	workers := fs.Int("workers", 8, "number of concurrent workers")
	lifetime := fs.Duration("access-lifetime", 2*time.Second, "how long the demo server's access tokens live (at least 1s)")
	latency := fs.Duration("latency", 0, "delay of every token endpoint request")
	if code, ok := a.parseFlags(fs, args); !ok {
		return code
	}
	switch {
	case *duration <= 0:
		return a.usageError(fs, "-duration must be positive")
	case *workers < 1:
		return a.usageError(fs, "-workers must be at least 1")
	case *lifetime < time.Second:
		// expires_in counts whole seconds: less would read as "unknown".
		return a.usageError(fs, "-access-lifetime must be at least 1s")
	case *latency < 0:
		return a.usageError(fs, "-latency must not be negative")
	}
	d := &demoRun{
		duration: *duration,
		workers:  *workers,
		lifetime: *lifetime,
		latency:  *latency,
		stdout:   a.stdout,
		stderr:   a.stderr,
	}
	if err := d.run(ctx); err != nil {
		return a.fail(err, "the demo store")
	}
	if !d.ok() {
		return exitFailure
	}
	return exitOK
}

// demoRun is one run of the demo and what it measured.
type demoRun struct {
	duration, lifetime, latency time.Duration
	workers                     int
	stdout, stderr              io.Writer

	start     time.Time
	requests  atomic.Int64
	failures  atomic.Int64
	rejected  atomic.Int64 // Hooks.TokenRejected: a 401 the Transport retried
	revokedAt atomic.Int64 // time since start, 0 until the revocation

	mu      sync.Mutex // guards reasons
	reasons []string   // the first distinct failure reasons

	// Filled in at the end.
	elapsed     time.Duration
	server      bearertest.Stats
	source      bearer.Stats
	alive       bool
	storeIsHead bool
	latencies   []time.Duration
}

func (d *demoRun) run(ctx context.Context) error {
	srv := bearertest.NewServer(bearertest.Config{
		AccessLifetime: d.lifetime,
		Latency:        d.latency,
	})
	defer srv.Close()

	dir, err := os.MkdirTemp("", "bearer-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	store := bearer.NewFileStore(filepath.Join(dir, "token.json"))
	g := srv.Issue()
	err = store.Save(ctx, &bearer.Token{
		AccessToken:   g.AccessToken,
		TokenType:     "Bearer",
		RefreshToken:  g.RefreshToken,
		Expiry:        g.Expiry,
		RefreshExpiry: g.RefreshExpiry,
	})
	if err != nil {
		return err
	}

	src := bearer.NewSource(bearer.Config{
		TokenURL:     srv.TokenURL(),
		ClientID:     bearertest.DefaultClientID,
		ClientSecret: bearertest.DefaultClientSecret,
		Hooks: bearer.Hooks{
			TokenRejected: func(context.Context) { d.rejected.Add(1) },
		},
	}, store)
	defer src.Close()
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.MaxIdleConnsPerHost = d.workers // else most workers dial anew each time
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: &bearer.Transport{Source: src, Base: base}}

	fmt.Fprintf(d.stdout, "bearer demo: %d workers for %s against %s; access tokens live %s; token endpoint latency %s\n",
		d.workers, d.duration, srv.URL, d.lifetime, d.latency)

	runCtx, cancel := context.WithTimeout(ctx, d.duration)
	defer cancel()
	d.start = time.Now()

	var wg sync.WaitGroup
	lat := make([][]time.Duration, d.workers)
	for i := range d.workers {
		wg.Go(func() { lat[i] = d.work(runCtx, client, srv.APIURL()+fmt.Sprintf("demo/%d", i)) })
	}
	// One early revocation, well before the refresh ahead of expiry, so
	// that the Source still holds the revoked token and a 401 follows.
	revokeAt := min(d.lifetime*2/5, d.duration/4)
	wg.Go(func() {
		t := time.NewTimer(revokeAt)
		defer t.Stop()
		select {
		case <-runCtx.Done():
			return
		case <-t.C:
		}
		tok, err := src.Token(runCtx)
		if err != nil {
			d.fail(fmt.Errorf("getting the token to revoke: %w", err))
			return
		}
		srv.RevokeAccess(tok.AccessToken)
		d.revokedAt.Store(int64(time.Since(d.start)))
	})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		d.progress(runCtx, srv)
	}()

	wg.Wait()
	<-progressDone
	d.elapsed = time.Since(d.start)
	// Close waits for a refresh still running, so the store is final.
	if err := src.Close(); err != nil {
		d.fail(fmt.Errorf("saving the last token: %w", err))
	}

	d.server = srv.Stats()
	d.source = src.Stats()
	d.alive = srv.FamilyAlive(g.Family)
	head, _ := srv.Head(g.Family)
	if stored, err := store.Load(ctx); err != nil {
		d.fail(fmt.Errorf("reading the store: %w", err))
	} else {
		d.storeIsHead = stored.RefreshToken == head.RefreshToken
	}
	for _, l := range lat {
		d.latencies = append(d.latencies, l...)
	}
	slices.Sort(d.latencies)
	d.summary(d.stdout)
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

// work sends requests until ctx ends and returns their latencies.
func (d *demoRun) work(ctx context.Context, client *http.Client, url string) []time.Duration {
	var lat []time.Duration
	for ctx.Err() == nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			d.fail(err)
			return lat
		}
		t0 := time.Now()
		resp, err := client.Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if ctx.Err() != nil {
			break // cut off by the end of the run: not a result
		}
		lat = append(lat, time.Since(t0))
		d.requests.Add(1)
		switch {
		case err != nil:
			d.fail(err)
		case resp.StatusCode != http.StatusOK:
			d.fail(fmt.Errorf("%s", resp.Status))
		}
	}
	return lat
}

// fail counts a failure and keeps its reason if it is one of the first.
func (d *demoRun) fail(err error) {
	d.failures.Add(1)
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.reasons) < 5 && !slices.Contains(d.reasons, err.Error()) {
		d.reasons = append(d.reasons, err.Error())
	}
}

// progress reports while ctx lasts: one line redrawn four times a second
// on a terminal, a plain line a second otherwise.
func (d *demoRun) progress(ctx context.Context, srv *bearertest.Server) {
	tty := isTerminal(d.stderr)
	every := time.Second
	if tty {
		every = 250 * time.Millisecond
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprint(d.stderr, "\r\033[K")
			}
			return
		case <-tick.C:
		}
		line := fmt.Sprintf("%5.1fs  requests %d  failures %d  401s retried %d  refreshes %d",
			time.Since(d.start).Seconds(), d.requests.Load(), d.failures.Load(), d.rejected.Load(), srv.Stats().Refreshes)
		if tty {
			fmt.Fprintf(d.stderr, "\r\033[K%s", line)
		} else {
			fmt.Fprintln(d.stderr, line)
		}
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// ok reports whether every invariant held.
func (d *demoRun) ok() bool { return len(d.broken()) == 0 }

func (d *demoRun) broken() []string {
	var b []string
	if n := d.failures.Load(); n > 0 {
		b = append(b, fmt.Sprintf("%d failures", n))
	}
	if d.server.ReuseAttempts > 0 {
		b = append(b, fmt.Sprintf("%d refresh tokens spent twice", d.server.ReuseAttempts))
	}
	if !d.alive {
		b = append(b, "the refresh token chain is dead")
	} else if !d.storeIsHead {
		b = append(b, "the store lost the live refresh token")
	}
	return b
}

func (d *demoRun) summary(w io.Writer) {
	secs := d.elapsed.Seconds()
	n := d.requests.Load()
	fmt.Fprintf(w, "requests:       %d in %.1fs (%.0f/s)\n", n, secs, float64(n)/secs)
	fmt.Fprintf(w, "failures:       %d\n", d.failures.Load())
	for _, r := range d.reasons {
		fmt.Fprintf(w, "  %s\n", r)
	}
	revoked := "no revocation happened (the run was too short)"
	if at := time.Duration(d.revokedAt.Load()); at > 0 {
		revoked = fmt.Sprintf("the access token was revoked at %.1fs", at.Seconds())
	}
	fmt.Fprintf(w, "401s retried:   %d of %d answered by the API (%s)\n", d.rejected.Load(), d.server.APIRejected, revoked)
	fmt.Fprintf(w, "refreshes:      %d over %.1f access token lifetimes (client: %d token requests, %d failed)\n",
		d.server.Refreshes, d.elapsed.Seconds()/d.lifetime.Seconds(), d.source.Refreshes, d.source.Failures)
	fmt.Fprintf(w, "reuse:          %d refresh tokens spent twice\n", d.server.ReuseAttempts)
	chain := "dead"
	if d.alive {
		chain = "alive"
		if d.storeIsHead {
			chain += ", and the store holds its live refresh token"
		} else {
			chain += ", but the store does not hold its live refresh token"
		}
	}
	fmt.Fprintf(w, "chain:          %s\n", chain)
	if len(d.latencies) > 0 {
		l := d.latencies
		fmt.Fprintf(w, "latency:        p50 %s  p99 %s  max %s\n",
			fmtLatency(l[len(l)*50/100]), fmtLatency(l[len(l)*99/100]), fmtLatency(l[len(l)-1]))
	}
	if b := d.broken(); len(b) > 0 {
		fmt.Fprintf(w, "result:         FAILED: %s\n", strings.Join(b, "; "))
	} else {
		fmt.Fprintf(w, "result:         ok\n")
	}
}

func fmtLatency(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}
