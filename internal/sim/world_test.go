package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenkit/bearer"
)

// world is one schedule running: the server, the store, the processes and
// their callers, all inside one synctest bubble.
type world struct {
	t     *testing.T
	s     *schedule
	t0    time.Time
	srv   *server
	procs []*proc

	// under returns the store as a process reaches it, before faults.
	under    func(p *proc) bearer.Store
	loadBack func() (*bearer.Token, error) // the store's content, read directly
	path     string                        // the file store's path

	end     chan struct{}  // closed when dead processes are let go
	bg      sync.WaitGroup // the simulator's own goroutines
	calls   sync.WaitGroup // callers
	closers sync.WaitGroup // Close calls

	mu        sync.Mutex // guards the fields below
	trace     []event
	failures  []string
	apiReqs   map[int]int // per caller
	lastWrite int         // index of the refresh token written last
	st        stats

	// For mutants only.
	prevTok, curTok *bearer.Token // the tokens of the last two writes
	lastWriter      int
	leaks           sync.WaitGroup
	leakDone        chan struct{}
}

// event is a line of the trace, formatted only when printed: most
// schedules pass and are never printed.
type event struct {
	at     time.Duration
	format string
	args   []any
}

func (e event) text() string { return fmt.Sprintf(e.format, e.args...) }

// outcome is what a schedule leaves for the test to report.
type outcome struct {
	failures []string
	trace    []event
	st       stats
}

// runSchedule runs s in a bubble of its own.
func runSchedule(t *testing.T, s *schedule) *outcome {
	var out *outcome
	synctest.Test(t, func(t *testing.T) {
		w := &world{t: t, s: s, end: make(chan struct{}), apiReqs: map[int]int{}, leakDone: make(chan struct{})}
		w.st.schedules, w.st.byStore[s.store], w.st.resent = 1, 1, map[string]int{}
		w.run()
		w.mu.Lock()
		out = &outcome{failures: w.failures, trace: w.trace, st: w.st}
		w.mu.Unlock()
	})
	return out
}

func (w *world) elapsed() time.Duration { return time.Since(w.t0) }

func (w *world) logf(format string, args ...any) {
	e := event{w.elapsed(), format, args}
	w.mu.Lock()
	w.trace = append(w.trace, e)
	w.mu.Unlock()
}

// failf records a broken invariant; the schedule goes on.
func (w *world) failf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	e := event{w.elapsed(), "FAIL %s", []any{msg}}
	w.mu.Lock()
	w.failures = append(w.failures, fmt.Sprintf("at %v: %s", fmtDur(e.at), msg))
	w.trace = append(w.trace, e)
	w.mu.Unlock()
}

// dump prints the schedule and its trace so far, for a failure that may
// never let the bubble end (a call that never returns).
func (w *world) dump(why string) {
	w.mu.Lock()
	trace := slices.Clone(w.trace)
	w.mu.Unlock()
	fmt.Fprintf(os.Stderr, "sim: seed %d: %s\n%s%s", w.s.seed, why, w.s, formatTrace(trace))
}

func (w *world) run() {
	s := w.s
	w.t0 = time.Now()
	w.srv = newServer(w)
	first := w.srv.issue(w.t0.Add(-s.initialAge), nil)
	tok0 := &bearer.Token{
		AccessToken: first.at, TokenType: "Bearer", RefreshToken: first.rt,
		Expiry: first.expires(), Obtained: first.issuedAt,
	}
	w.setupStore(tok0)
	for i := range s.procs {
		w.procs = append(w.procs, newProc(w, &s.procs[i]))
	}

	for _, a := range w.timeline() {
		time.Sleep(time.Until(w.t0.Add(a.at)))
		a.do()
	}
	time.Sleep(time.Until(w.t0.Add(s.horizon)))
	w.calls.Wait()

	// Every living process closes, and then the store must hold the
	// newest rotation any of them read.
	for _, p := range w.procs {
		w.closers.Go(func() {
			time.Sleep(p.plan.endGap)
			w.close(p)
		})
	}
	w.closers.Wait()
	w.checkStore()

	// Dead processes are let go: their calls return errors now and touch
	// nothing. Close ends their goroutines.
	close(w.end)
	for _, p := range w.procs {
		if p.isCrashed() {
			w.closers.Go(func() { p.src.Close() })
		}
	}
	w.closers.Wait()
	w.bg.Wait()
	synctest.Wait()
	w.checkGoroutines()
	close(w.leakDone)
	w.leaks.Wait()
	w.checkServer()
}

func (w *world) setupStore(tok0 *bearer.Token) {
	ctx := context.Background()
	switch w.s.store {
	case memoryStore:
		m := bearer.NewMemoryStore(tok0)
		w.under = func(*proc) bearer.Store { return m }
		w.loadBack = func() (*bearer.Token, error) { return m.Load(ctx) }
	case fileStore:
		w.path = filepath.Join(w.t.TempDir(), "token.json")
		if err := bearer.NewFileStore(w.path).Save(ctx, tok0); err != nil {
			w.t.Fatal(err)
		}
		// Each process opens the file itself, as processes do.
		w.under = func(*proc) bearer.Store { return bearer.NewFileStore(w.path) }
		w.loadBack = func() (*bearer.Token, error) { return bearer.NewFileStore(w.path).Load(ctx) }
	case redisStore:
		m := &redisModel{ttl: w.s.ttl, poll: w.s.poll}
		if err := m.save(tok0); err != nil {
			w.t.Fatal(err)
		}
		w.under = func(p *proc) bearer.Store { return &redisClient{m: m, p: p} }
		w.loadBack = m.load
	}
}

// action is something the schedule makes happen at a moment.
type action struct {
	at time.Duration
	do func()
}

func (w *world) timeline() []action {
	s := w.s
	var as []action
	for i := range s.callers {
		c := &s.callers[i]
		as = append(as, action{c.start, func() {
			w.calls.Add(1)
			go w.call(c)
		}})
	}
	for _, p := range w.procs {
		if p.plan.closeAt > 0 {
			as = append(as, action{p.plan.closeAt, func() { w.closers.Go(func() { w.close(p) }) }})
		}
		if p.plan.crash.kind == crashAtTime {
			as = append(as, action{p.plan.crash.at, func() { p.crash("at a moment") }})
		}
		for _, c := range p.plan.clock {
			if c.at > 0 {
				as = append(as, action{c.at, func() { w.logf("p%d clock jumps to %+v", p.id, c.offset) }})
			}
		}
	}
	for _, win := range s.windows {
		as = append(as, action{win.from, func() { w.logf("store fault begins: %v (proc %d)", win.kind, win.proc) }})
		if win.to < s.horizon {
			as = append(as, action{win.to, func() { w.logf("store fault ends: %v (proc %d)", win.kind, win.proc) }})
		}
	}
	for _, at := range s.lockRemoval {
		as = append(as, action{at, func() {
			switch err := os.Remove(w.path + ".lock"); {
			case err == nil:
				w.logf("lock file removed")
			case errors.Is(err, fs.ErrNotExist):
				w.logf("lock file removed: there was none")
			default:
				w.failf("removing the lock file: %v", err)
			}
			w.mu.Lock()
			w.st.lockRemovals++
			w.mu.Unlock()
		}})
	}
	for _, at := range s.revocations {
		as = append(as, action{at, func() { w.logf("server revokes %s early", w.srv.revokeNewest()) }})
	}
	slices.SortStableFunc(as, func(a, b action) int { return int(a.at - b.at) })
	return as
}

// proc is one process: a Source with its Transport, its network and its
// view of the store. A crash stops its network and store forever; the OS
// releases its file lock (or MemoryStore's lock), a Redis lease lapses.
type proc struct {
	w       *world
	id      int
	plan    *procPlan
	src     *bearer.Source
	client  *http.Client // through a bearer.Transport
	crashCh chan struct{}

	mu        sync.Mutex // guards the fields below
	crashed   bool
	crashedAt time.Time
	inOp      int          // store calls under way
	held      bearer.Lease // the lock the Source holds, as the OS sees it
	tokenReqs int
	storeOps  int
	saves     int
	closing   bool
	closed    bool // Close returned
	closedAt  time.Time
	closeErr  error
}

func newProc(w *world, plan *procPlan) *proc {
	p := &proc{w: w, id: plan.id, plan: plan, crashCh: make(chan struct{})}
	nw := network{p}
	cfg := bearer.Config{
		TokenURL:       tokenURL,
		ClientID:       "sim-client",
		ClientSecret:   "sim-secret",
		HTTPClient:     &http.Client{Transport: nw},
		Leeway:         plan.leeway,
		RefreshAhead:   plan.ahead,
		RefreshTimeout: plan.refreshTimeout,
		MaxRetries:     plan.maxRetries,
		RetryBackoff:   time.Nanosecond,
		Now:            p.now,
		Hooks: bearer.Hooks{
			SaveFailed:  func(_ context.Context, err error) { p.logf("hook SaveFailed: %v", err) },
			Reauthorize: func(_ context.Context, err error) { p.logf("hook Reauthorize: %v", err) },
		},
	}
	p.src = bearer.NewSource(cfg, &simStore{p: p, under: w.under(p)})
	p.client = &http.Client{Transport: &bearer.Transport{Source: p.src, Base: nw}}
	return p
}

// now is the process's clock: the shared one plus its offset.
func (p *proc) now() time.Time {
	n := time.Now()
	return n.Add(p.plan.offset(n.Sub(p.w.t0)))
}

// logf logs for a living process; a dead one's goroutines, kept until
// the end, have nothing to say.
func (p *proc) logf(format string, args ...any) {
	if !p.isCrashed() {
		p.w.logf("p%d "+format, append([]any{p.id}, args...)...)
	}
}

func (p *proc) isCrashed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.crashed
}

// gate lets a dead process's calls through to nothing: they wait until
// their context ends, or the world does, and fail.
func (p *proc) gate(ctx context.Context) error {
	select {
	case <-p.crashCh:
	default:
		return nil
	}
	select {
	case <-ctx.Done():
	case <-p.w.end:
	}
	return errDead
}

// crash kills the process. Its locks are released as the OS releases a
// dead process's: at once, or when the store call under way (which takes
// no fake time) has returned.
func (p *proc) crash(why string) {
	p.mu.Lock()
	if p.crashed || p.closed {
		p.mu.Unlock()
		return
	}
	p.crashed, p.crashedAt = true, time.Now()
	close(p.crashCh)
	var l bearer.Lease
	if p.inOp == 0 {
		l, p.held = p.held, nil
	}
	p.mu.Unlock()
	p.w.logf("p%d CRASH %s", p.id, why)
	p.w.mu.Lock()
	p.w.st.crashes++
	p.w.mu.Unlock()
	p.osRelease(l)
}

// gone reports whether and when p ended without saving what it held: it
// crashed, or its Close returned an error.
func (p *proc) gone() (why string, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.crashed:
		return "the client crashed before saving", p.crashedAt
	case p.closed && p.closeErr != nil:
		return "the client's saves failed until Close", p.closedAt
	}
	return "", time.Time{}
}

func (p *proc) enter() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.crashed {
		return false
	}
	p.inOp++
	return true
}

func (p *proc) exit() {
	p.mu.Lock()
	p.inOp--
	var l bearer.Lease
	if p.crashed && p.inOp == 0 {
		l, p.held = p.held, nil
	}
	p.mu.Unlock()
	p.osRelease(l)
}

// osRelease releases a dead process's lock as its OS would. A Redis
// lease is not released: it lapses.
func (p *proc) osRelease(l bearer.Lease) {
	if l == nil || p.w.s.store == redisStore {
		return
	}
	if err := l.Unlock(context.Background()); err != nil {
		p.w.failf("p%d: releasing a dead process's lock: %v", p.id, err)
	}
}

// ioAfterClose flags token requests and store calls of a Source whose
// Close has returned: something it started outlived Close.
func (p *proc) ioAfterClose(what string) {
	p.mu.Lock()
	bad := p.closed && !p.crashed
	p.mu.Unlock()
	if bad {
		p.w.failf("(4) p%d: %s after Close returned", p.id, what)
	}
}

func (p *proc) nextTokenRequest() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tokenReqs++
	return p.tokenReqs
}

func (p *proc) nextStoreOp(opKind) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.storeOps++
	return p.storeOps
}

func (p *proc) nextSave() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.saves++
	return p.saves
}

func (w *world) nextAPIRequest(caller int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.apiReqs[caller]++
	return w.apiReqs[caller]
}

// close closes p, unless it is dead or closing, and checks that Close
// returns within its bound: flights before it (each at most twice
// RefreshTimeout and an unlock), then its own save and unlock.
func (w *world) close(p *proc) {
	p.mu.Lock()
	if p.crashed || p.closing {
		p.mu.Unlock()
		return
	}
	p.closing = true
	p.mu.Unlock()
	w.logf("p%d Close", p.id)
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- p.src.Close() }()
	bound := 3*p.plan.rt() + 11*time.Second
	var err error
	select {
	case err = <-done:
	case <-time.After(bound):
		w.failf("(4) p%d: Close has not returned after %v", p.id, bound)
		w.dump("Close does not return")
		err = <-done
	}
	took := time.Since(start)
	p.mu.Lock()
	p.closed, p.closedAt, p.closeErr = true, time.Now(), err
	crashed := p.crashed
	p.mu.Unlock()
	w.logf("p%d Close returned after %v: %v", p.id, fmtDur(took), err)
	w.mu.Lock()
	if !crashed {
		w.st.closes++
		w.st.maxClose = max(w.st.maxClose, took)
		if err != nil {
			w.st.closeErrors++
		}
	}
	w.mu.Unlock()
}

// call is one caller: a Token or Refresh call, or a request through the
// Transport, with its deadline and maybe a cancellation.
func (w *world) call(c *callerPlan) {
	defer w.calls.Done()
	p := w.procs[c.proc]
	if p.isCrashed() {
		return // a dead process calls nothing
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	limit := c.timeout
	if c.cancel > 0 {
		t := time.AfterFunc(c.cancel, cancel)
		defer t.Stop()
		limit = c.cancel
	}
	who := fmt.Sprintf("c%d p%d %v", c.id, p.id, c.kind)
	start := time.Now()
	var res string
	switch c.kind {
	case callToken:
		tok, err := p.src.Token(ctx)
		res = w.handout(p, who, tok, err)
	case callRefresh:
		tok, err := p.src.Token(ctx)
		res = w.handout(p, who, tok, err)
		if err == nil && sleepCtx(ctx, c.gap) {
			next, err := p.src.Refresh(ctx, tok)
			res += "; Refresh: " + w.handout(p, who+" (Refresh)", next, err)
			if err == nil && next.AccessToken == tok.AccessToken {
				w.failf("%s: Refresh returned the access token it was told was rejected (%s)", who, tok.AccessToken)
			}
		}
	case callGet, callPost:
		var body io.Reader
		method := http.MethodGet
		if c.kind == callPost {
			method, body = http.MethodPost, bytes.NewReader(postBody)
		}
		req, err := http.NewRequestWithContext(ctx, method, apiURL, body)
		if err != nil {
			w.failf("%s: %v", who, err)
			return
		}
		req.Header.Set("X-Sim-Caller", strconv.Itoa(c.id))
		resp, err := p.client.Do(req)
		if err != nil {
			res = "error: " + err.Error()
		} else {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			res = resp.Status
		}
	}
	took := time.Since(start)
	w.logf("%s: %s (after %v)", who, res, fmtDur(took))
	if took > limit {
		w.failf("%s returned after %v, past its deadline or cancellation (%v)", who, fmtDur(took), fmtDur(limit))
	}
}

// handout checks a token a Source handed to a caller and describes it.
func (w *world) handout(p *proc, who string, tok *bearer.Token, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	w.srv.mu.Lock()
	it := w.srv.byAT[tok.AccessToken]
	w.srv.mu.Unlock()
	if it == nil {
		w.failf("%s got access token %q, which the server never issued", who, tok.AccessToken)
		return "bad token"
	}
	w.checkHandout(p, who, it, tok.Expiry)
	return fmt.Sprintf("%s/%s", tok.AccessToken, tok.RefreshToken)
}

// formatTrace prints events in the order they happened.
func formatTrace(trace []event) string {
	var b strings.Builder
	for _, e := range trace {
		fmt.Fprintf(&b, "  %12s  %s\n", fmtDur(e.at), e.text())
	}
	return b.String()
}
