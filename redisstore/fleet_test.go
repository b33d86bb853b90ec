package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/bearertest"
)

// The fleet tests run replicas, each with its own Redis client, Store and
// bearer.Source, sharing one key in front of a strict bearertest server: a
// refresh token presented twice revokes the whole grant. Token lifetimes
// follow a fake clock shared by the server and the Sources; leases follow
// Redis's real clock.

const (
	replicas       = 8
	callsPerRound  = 3 // concurrent Token calls per replica each round
	accessLifetime = 100 * time.Second
)

type fleet struct {
	t       *testing.T
	gate    *gate
	addr    string
	key     string
	clock   *bearertest.Clock
	srv     *bearertest.Server
	grant   bearertest.Grant
	stores  []*Store
	sources []*bearer.Source
}

// newFleet saves the first authorization at a fresh key of the server at
// addr and starts the replicas, each of which reads it.
func newFleet(t *testing.T, addr string, leaseTTL time.Duration) *fleet {
	t.Helper()
	f := &fleet{
		t:     t,
		addr:  addr,
		key:   testKey(t),
		clock: bearertest.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)),
	}
	f.srv = bearertest.NewServer(bearertest.Config{AccessLifetime: accessLifetime, Now: f.clock.Now})
	t.Cleanup(f.srv.Close)
	f.grant = f.srv.Issue()
	f.gate = newGate(t, f.srv.TokenURL())

	ctx := context.Background()
	first := &bearer.Token{
		AccessToken:   f.grant.AccessToken,
		TokenType:     "Bearer",
		RefreshToken:  f.grant.RefreshToken,
		Expiry:        f.grant.Expiry,
		RefreshExpiry: f.grant.RefreshExpiry,
	}
	if err := f.replicaStore(leaseTTL).Save(ctx, first); err != nil {
		t.Fatal(err)
	}
	for range replicas {
		s := f.replicaStore(leaseTTL)
		src := bearer.NewSource(bearer.Config{
			TokenURL:     f.gate.url,
			ClientID:     bearertest.DefaultClientID,
			ClientSecret: bearertest.DefaultClientSecret,
			HTTPClient:   f.srv.Client(),
			Now:          f.clock.Now,
			RetryBackoff: time.Millisecond,
		}, s)
		t.Cleanup(func() { src.Close() })
		if _, err := src.Token(ctx); err != nil {
			t.Fatalf("first Token() = %v", err)
		}
		f.stores = append(f.stores, s)
		f.sources = append(f.sources, src)
	}
	return f
}

// gate is a proxy in front of the token endpoint that passes requests
// through, except one it was asked to hold: the test acts while that
// refresh is in flight, then lets it go on.
type gate struct {
	url  string
	next atomic.Pointer[held]
	done chan struct{} // closed when the test ends, releasing any held request
}

type held struct {
	arrived  chan struct{} // closed when the request arrives
	release  chan struct{} // closed by the test to let it go on
	answered chan struct{} // closed when the answer was passed back
}

func newGate(t *testing.T, target string) *gate {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{done: make(chan struct{})}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := g.next.Swap(nil)
		if h != nil {
			close(h.arrived)
			select {
			case <-h.release:
			case <-g.done:
			}
		}
		proxy.ServeHTTP(w, r)
		if h != nil {
			close(h.answered)
		}
	}))
	t.Cleanup(hs.Close)
	t.Cleanup(func() { close(g.done) }) // runs before hs.Close
	g.url = hs.URL + u.Path
	return g
}

// hold makes the gate hold the next request.
func (g *gate) hold() *held {
	h := &held{arrived: make(chan struct{}), release: make(chan struct{}), answered: make(chan struct{})}
	g.next.Store(h)
	return h
}

// failedScript returns a channel closed when a script run by rdb first
// fails (after go-redis's own retries).
func failedScript(rdb redis.UniversalClient) <-chan struct{} {
	h := &scriptHook{failed: make(chan struct{})}
	rdb.AddHook(h)
	return h.failed
}

type scriptHook struct {
	once   sync.Once
	failed chan struct{}
}

func (h *scriptHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *scriptHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err != nil && (cmd.Name() == "evalsha" || cmd.Name() == "eval") {
			h.once.Do(func() { close(h.failed) })
		}
		return err
	}
}

func (h *scriptHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// replicaStore returns a Store on a client of its own, as a replica has.
func (f *fleet) replicaStore(leaseTTL time.Duration) *Store {
	s := New(newClient(f.t, f.addr), f.key)
	s.LeaseTTL = leaseTTL
	s.PollInterval = 2 * time.Millisecond
	return s
}

// round has every replica ask for a token from several goroutines at once,
// and returns the access tokens handed out and the errors.
func (f *fleet) round(ctx context.Context) (map[string]int, []error) {
	var (
		mu     sync.Mutex // guards tokens and errs
		tokens = make(map[string]int)
		errs   []error
		wg     sync.WaitGroup
	)
	for i, src := range f.sources {
		for range callsPerRound {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tok, err := src.Token(ctx)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, fmt.Errorf("replica %d: %w", i, err))
					return
				}
				tokens[tok.AccessToken]++
			}()
		}
	}
	wg.Wait()
	return tokens, errs
}

// expire moves past the current token's expiry and checks that the whole
// fleet gets one new token from it.
func (f *fleet) expire(ctx context.Context, round int) {
	f.t.Helper()
	before := f.srv.Stats().Refreshes
	f.clock.Advance(accessLifetime + time.Second)
	tokens, errs := f.round(ctx)
	for _, err := range errs {
		f.t.Errorf("round %d: %v", round, err)
	}
	if len(tokens) != 1 {
		f.t.Errorf("round %d: the fleet was handed %d different access tokens, want 1", round, len(tokens))
	}
	if got := f.srv.Stats().Refreshes - before; got != 1 {
		f.t.Errorf("round %d: %d refreshes for one expiry, want 1", round, got)
	}
}

// check verifies the invariants: one refresh per expiry, no refresh token
// spent twice, and the chain alive at the end, held by the store and by
// every replica.
func (f *fleet) check(expiries int) {
	f.t.Helper()
	st := f.srv.Stats()
	if st.Refreshes != expiries {
		f.t.Errorf("server refreshes = %d, want %d (one per expiry)", st.Refreshes, expiries)
	}
	if st.ReuseAttempts != 0 || st.Revocations != 0 {
		f.t.Errorf("server: %d refresh tokens spent twice, %d revocations; want 0, 0", st.ReuseAttempts, st.Revocations)
	}
	var sum int64
	for _, src := range f.sources {
		sum += src.Stats().Refreshes
	}
	if sum != int64(expiries) {
		f.t.Errorf("replicas refreshed %d times in all, want %d", sum, expiries)
	}
	ctx := context.Background()
	stored, err := f.stores[0].Load(ctx)
	if err != nil {
		f.t.Fatalf("Load() at the end = %v", err)
	}
	if !f.srv.Alive(stored.RefreshToken) || !f.srv.FamilyAlive(f.grant.Family) {
		f.t.Errorf("the chain is dead at the end: stored refresh token alive = %t, family alive = %t",
			f.srv.Alive(stored.RefreshToken), f.srv.FamilyAlive(f.grant.Family))
	}
	for i, src := range f.sources {
		tok, err := src.Token(ctx)
		if err != nil || tok.AccessToken != stored.AccessToken {
			f.t.Errorf("replica %d holds another token than the store (%v)", i, err)
		}
	}
}

// TestFleetOneRefreshPerExpiry: eight replicas cross six expiries together;
// each expiry costs exactly one refresh and no token is spent twice.
func TestFleetOneRefreshPerExpiry(t *testing.T) {
	f := newFleet(t, redisAddr(t), 0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const expiries = 6
	for round := range expiries {
		f.expire(ctx, round)
	}
	f.check(expiries)
}

// TestFleetRedisRestart: Redis goes away between expiries and comes back
// with its data (append-only file). While it is down the replicas keep
// serving the valid access token, fail closed once it expires (no refresh
// without the lease), and carry on after the restart.
func TestFleetRedisRestart(t *testing.T) {
	srv := ownServer(t, "--save", "", "--appendonly", "yes", "--appendfsync", "always")
	f := newFleet(t, srv.addr, 0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const before, after = 3, 3
	for round := range before {
		f.expire(ctx, round)
	}

	srv.stop()
	valid, errs := f.round(ctx)
	if len(errs) != 0 || len(valid) != 1 {
		t.Errorf("Redis down, token valid: %d tokens, errors %v; want 1 token, no error", len(valid), errs)
	}
	f.clock.Advance(accessLifetime + time.Second)
	tctx, tcancel := context.WithTimeout(ctx, 10*time.Second)
	_, err := f.sources[0].Token(tctx)
	tcancel()
	if err == nil {
		t.Error("Redis down, token expired: Token() = nil error, want it to fail closed")
	} else if errors.Is(err, bearer.ErrReauthorize) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Redis down, token expired: Token() = %v, want a quick Redis error", err)
	}
	if n := f.srv.Stats().Refreshes; n != before {
		t.Errorf("%d refreshes while Redis was down, want none", n-before)
	}

	srv.restart(t)
	// go-redis redials on its own; after a run of failed dials it probes
	// once a second, so a replica may need a moment to reconnect.
	for i, src := range f.sources {
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := src.Token(ctx)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %d after the restart: %v", i, err)
			}
			time.Sleep(50 * time.Millisecond) // waiting on go-redis's redial, not ordering goroutines
		}
	}
	if got := f.srv.Stats().Refreshes; got != before+1 {
		t.Errorf("the expiry during the outage cost %d refreshes, want 1", got-before)
	}
	for round := range after {
		f.expire(ctx, before+1+round)
	}
	f.check(before + 1 + after)
}

// TestFleetHolderDies: a replica takes the lease, records its refresh and
// dies before sending it. The others wait for the lease to lapse and then
// refresh once; the record makes no difference since the token was not
// spent.
func TestFleetHolderDies(t *testing.T) {
	const leaseTTL = 300 * time.Millisecond
	f := newFleet(t, redisAddr(t), leaseTTL)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const expiries = 5
	for round := range expiries {
		if round == 2 || round == 4 {
			dead := f.replicaStore(leaseTTL)
			l, err := dead.Lock(ctx)
			if err != nil {
				t.Fatal(err)
			}
			cur, err := l.Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := l.Begin(ctx, cur); err != nil {
				t.Fatal(err)
			}
			abandon(l) // never unlocked: the replica is gone
		}
		start := time.Now()
		f.expire(ctx, round)
		if round == 2 || round == 4 {
			if waited := time.Since(start); waited < leaseTTL/2 {
				t.Errorf("round %d: the fleet refreshed after %v, before the dead holder's lease lapsed", round, waited)
			}
		}
	}
	f.check(expiries)
}

// TestFleetRedisRestartDuringRefresh: Redis restarts while a replica's
// refresh request is in flight, between Begin and CompareAndSwap. The save
// reaches the restarted Redis (the lease and the token survive in the
// append-only file) and the others adopt the new token.
func TestFleetRedisRestartDuringRefresh(t *testing.T) {
	srv := ownServer(t, "--save", "", "--appendonly", "yes", "--appendfsync", "always")
	f := newFleet(t, srv.addr, 0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for round := range 2 {
		f.expire(ctx, round)
	}

	f.clock.Advance(accessLifetime + time.Second)
	h := f.gate.hold()
	got := make(chan error, 1)
	go func() {
		_, err := f.sources[0].Token(ctx)
		got <- err
	}()
	<-h.arrived
	srv.restart(t)
	close(h.release)
	if err := <-got; err != nil {
		t.Fatalf("replica 0: Token() across the restart = %v", err)
	}
	if st := f.srv.Stats(); st.Refreshes != 3 {
		t.Errorf("server refreshes = %d, want 3", st.Refreshes)
	}
	stored, err := f.replicaStore(0).Load(ctx)
	if err != nil || !f.srv.Alive(stored.RefreshToken) {
		t.Fatalf("after the restart the store does not hold the new token (%v)", err)
	}
	tokens, errs := f.round(ctx)
	if len(errs) != 0 || len(tokens) != 1 {
		t.Errorf("after the restart: %d tokens, errors %v; want 1 token, no error", len(tokens), errs)
	}
	for round := range 3 {
		f.expire(ctx, 3+round)
	}
	f.check(6)
}

// TestFleetSaveAfterRedisDown: Redis goes down while a replica's refresh
// request is in flight, so the new token cannot be saved when it arrives.
// The replica keeps its lease (persisted with the data) and retries the
// save; the others, started as soon as Redis is back, wait for that lease
// and adopt the saved token instead of sending the spent refresh token
// again.
func TestFleetSaveAfterRedisDown(t *testing.T) {
	srv := ownServer(t, "--save", "", "--appendonly", "yes", "--appendfsync", "always")
	f := newFleet(t, srv.addr, 0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for round := range 2 {
		f.expire(ctx, round)
	}

	f.clock.Advance(accessLifetime + time.Second)
	h := f.gate.hold()
	got := make(chan error, 1)
	go func() {
		_, err := f.sources[0].Token(ctx)
		got <- err
	}()
	failed := failedScript(f.stores[0].rdb)
	<-h.arrived
	srv.stop()
	close(h.release)
	<-failed // the server rotated the token; the save met a dead Redis
	srv.restart(t)

	tokens, errs := f.round(ctx)
	if err := <-got; err != nil {
		t.Fatalf("replica 0: Token() = %v", err)
	}
	if len(errs) != 0 || len(tokens) != 1 {
		t.Errorf("after the restart: %d tokens, errors %v; want 1 token, no error", len(tokens), errs)
	}
	if n := f.sources[0].Stats().SaveFailures; n != 0 {
		t.Errorf("replica 0: SaveFailures = %d, want the save to wait for Redis", n)
	}
	for round := range 3 {
		f.expire(ctx, 3+round)
	}
	f.check(6)
}

// TestFleetHolderDiesAfterSending: a replica takes the lease, records its
// refresh, sends it and dies before saving, so the stored refresh token is
// spent. The fleet cannot recover without a person; every replica reports
// an error that matches both ErrInterrupted and ErrReauthorize.
func TestFleetHolderDiesAfterSending(t *testing.T) {
	const leaseTTL = 300 * time.Millisecond
	f := newFleet(t, redisAddr(t), leaseTTL)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f.expire(ctx, 0)

	dead := f.replicaStore(leaseTTL)
	l, err := dead.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := l.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Begin(ctx, cur); err != nil {
		t.Fatal(err)
	}
	abandon(l)
	// The dead replica's request: a Source of its own, saving nowhere shared.
	lost := bearer.NewSource(bearer.Config{
		TokenURL:     f.gate.url, // the fleet's endpoint, which the token records
		ClientID:     bearertest.DefaultClientID,
		ClientSecret: bearertest.DefaultClientSecret,
		HTTPClient:   f.srv.Client(),
		Now:          f.clock.Now,
	}, bearer.NewMemoryStore(cur))
	defer lost.Close()
	f.clock.Advance(accessLifetime + time.Second)
	if _, err := lost.Token(ctx); err != nil {
		t.Fatal(err)
	}

	_, errs := f.round(ctx)
	if len(errs) != replicas*callsPerRound {
		t.Errorf("%d of %d calls failed, want all", len(errs), replicas*callsPerRound)
	}
	for _, err := range errs {
		if !errors.Is(err, bearer.ErrInterrupted) || !errors.Is(err, bearer.ErrReauthorize) {
			t.Errorf("Token() = %v, want ErrInterrupted and ErrReauthorize", err)
		}
	}
	if st := f.srv.Stats(); st.Refreshes != 2 {
		t.Errorf("server refreshes = %d, want 2 (the first expiry and the dead replica's)", st.Refreshes)
	}
}
