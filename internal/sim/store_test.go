package sim

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tokenkit/bearer"
)

// redisModel is a store with redisstore's semantics, in memory: a lease
// that lapses TTL after its holder stops renewing it, writes under a lease
// fenced (ErrLockLost once it lapsed), CompareAndSwap by refresh token
// (ErrConflict), and Begin's record of a refresh token being spent.
type redisModel struct {
	ttl, poll time.Duration

	mu         sync.Mutex    // guards the fields below
	val        *bearer.Token // a copy of the stored token; nil: none
	fp         string        // fingerprint of the stored token
	refreshing string        // fingerprint being spent (Begin's record)
	owner      uint64        // the lease's holder; 0: none
	expires    time.Time     // when the lease lapses
	owners     uint64
}

// fp names a token as redisstore's fingerprint does: by its refresh token,
// or its access token when it has none.
func fp(t *bearer.Token) string {
	if t.RefreshToken != "" {
		return "rt:" + t.RefreshToken
	}
	return "at:" + t.AccessToken
}

// holder returns the lease's holder now, 0 once it lapsed. m.mu is held.
func (m *redisModel) holder() uint64 {
	if m.owner != 0 && !time.Now().Before(m.expires) {
		m.owner = 0
	}
	return m.owner
}

// clone copies t, as a store that keeps every field returns it.
func clone(t *bearer.Token) *bearer.Token {
	c := *t
	c.Info = append([]byte(nil), t.Info...)
	if t.Info == nil {
		c.Info = nil
	}
	return &c
}

func (m *redisModel) load() (*bearer.Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.val == nil {
		return nil, fmt.Errorf("sim redis: %w", bearer.ErrNoToken)
	}
	return clone(m.val), nil
}

func (m *redisModel) save(t *bearer.Token) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.val, m.fp = clone(t), fp(t)
	if m.refreshing != m.fp {
		m.refreshing = ""
	}
	return nil
}

// redisClient is one process's connection to the model: a bearer.Store
// and bearer.Locker, as redisstore.Store is.
type redisClient struct {
	m *redisModel
	p *proc
}

func (c *redisClient) Load(ctx context.Context) (*bearer.Token, error) { return c.m.load() }
func (c *redisClient) Save(ctx context.Context, t *bearer.Token) error { return c.m.save(t) }

func (c *redisClient) Lock(ctx context.Context) (bearer.Lease, error) {
	m := c.m
	for {
		m.mu.Lock()
		if m.holder() == 0 || c.p.w.s.opts.mutant == "no-exclusion" {
			m.owners++
			m.owner, m.expires = m.owners, time.Now().Add(m.ttl)
			l := &redisLease{c: c, owner: m.owner, stop: make(chan struct{})}
			m.mu.Unlock()
			c.p.w.bg.Go(l.renew)
			return l, nil
		}
		m.mu.Unlock()
		if !sleepCtx(ctx, m.poll) {
			return nil, fmt.Errorf("sim redis: waiting for the lease: %w", context.Cause(ctx))
		}
	}
}

type redisLease struct {
	c     *redisClient
	owner uint64
	stop  chan struct{}
	once  sync.Once
}

// renew extends the lease every third of its TTL while its process lives
// and reaches the store, and tries a failed renewal again every
// min(TTL/10, 100 ms), as redisstore's lease does.
func (l *redisLease) renew() {
	m, p := l.c.m, l.c.p
	t := time.NewTimer(m.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-p.crashCh:
			return // a dead process renews nothing: the lease lapses
		case <-t.C:
		}
		if p.w.storeDown(p, opRenew) {
			t.Reset(min(m.ttl/10, 100*time.Millisecond))
			continue
		}
		t.Reset(m.ttl / 3)
		m.mu.Lock()
		if m.holder() != l.owner {
			m.mu.Unlock()
			return
		}
		m.expires = time.Now().Add(m.ttl)
		m.mu.Unlock()
	}
}

func (l *redisLease) abandon() { l.once.Do(func() { close(l.stop) }) }

func (l *redisLease) lost() error {
	return fmt.Errorf("sim redis: the lease lapsed: %w", bearer.ErrLockLost)
}

func (l *redisLease) Load(ctx context.Context) (*bearer.Token, error) { return l.c.m.load() }

func (l *redisLease) Begin(ctx context.Context, old *bearer.Token) (bool, error) {
	if old == nil {
		return false, errors.New("sim redis: Begin needs the token being refreshed")
	}
	m := l.c.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.holder() != l.owner {
		return false, l.lost()
	}
	interrupted := m.refreshing == fp(old)
	m.refreshing = fp(old)
	return interrupted, nil
}

func (l *redisLease) CompareAndSwap(ctx context.Context, old, new *bearer.Token) error {
	m := l.c.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.holder() != l.owner {
		return l.lost()
	}
	fromOld := m.val == nil
	if old != nil {
		fromOld = m.val != nil && m.fp == fp(old)
	}
	if !fromOld {
		if m.val != nil && m.fp == fp(new) {
			return nil // saved by an earlier try whose reply was lost
		}
		return fmt.Errorf("sim redis: %w", bearer.ErrConflict)
	}
	m.val, m.fp, m.refreshing = clone(new), fp(new), ""
	return nil
}

func (l *redisLease) Unlock(ctx context.Context) error {
	l.abandon()
	m := l.c.m
	m.mu.Lock()
	if m.holder() == l.owner {
		m.owner = 0
	}
	m.mu.Unlock()
	return nil
}

// opKind names a store operation.
type opKind int

const (
	opLoad opKind = iota
	opLock
	opBegin
	opWrite // Save or CompareAndSwap
	opUnlock
	opRenew
)

func (k opKind) String() string {
	return [...]string{"Load", "Lock", "Begin", "CompareAndSwap", "Unlock", "renew"}[k]
}

var (
	errStoreDown = errors.New("sim: the store is unavailable")
	errReplyLost = errors.New("sim: the store's reply was lost (the write landed)")
	errDead      = errors.New("sim: the process is dead")
)

// storeDown reports whether a store fault window stops op for p now.
func (w *world) storeDown(p *proc, op opKind) bool {
	d := w.elapsed()
	for _, win := range w.s.windows {
		if !win.covers(p.id, d) {
			continue
		}
		switch win.kind {
		case outage:
			return true
		case writesFail:
			if op == opWrite {
				return true
			}
		}
	}
	return false
}

func (w *world) storeSlow(p *proc) bool {
	d := w.elapsed()
	for _, win := range w.s.windows {
		if win.kind == slowStore && win.covers(p.id, d) {
			return true
		}
	}
	return false
}

// staleRead is the stale-read mutant: a Load that returns the token
// before the last write, when another process made that write.
func (w *world) staleRead(p *proc, fn func(context.Context) error) error {
	w.mu.Lock()
	prev, writer := w.prevTok, w.lastWriter
	w.mu.Unlock()
	if prev == nil || writer == p.id {
		return nil
	}
	w.logf("p%d store Load: MUTANT returns %s, the token before the last write", p.id, prev.RefreshToken)
	return &staleToken{prev}
}

// staleToken carries the stale-read mutant's token to simStore.Load.
type staleToken struct{ t *bearer.Token }

func (*staleToken) Error() string { return "stale" }

// simStore is a process's view of the shared store: the real store behind
// the process's faults (latency, failures, lost replies, its crash).
type simStore struct {
	p     *proc
	under bearer.Store
}

var (
	_ bearer.Store  = (*simStore)(nil)
	_ bearer.Locker = (*simStore)(nil)
)

func (s *simStore) Load(ctx context.Context) (*bearer.Token, error) {
	var t *bearer.Token
	err := s.p.op(ctx, opLoad, nil, func(ctx context.Context) (err error) {
		t, err = s.under.Load(ctx)
		return err
	})
	return stale(t, err)
}

func stale(t *bearer.Token, err error) (*bearer.Token, error) {
	if st, ok := err.(*staleToken); ok {
		c := *st.t
		return &c, nil
	}
	return t, err
}

func (s *simStore) Save(ctx context.Context, t *bearer.Token) error {
	return s.p.op(ctx, opWrite, t, func(ctx context.Context) error { return s.under.Save(ctx, t) })
}

func (s *simStore) Lock(ctx context.Context) (bearer.Lease, error) {
	p := s.p
	var l bearer.Lease
	err := p.op(ctx, opLock, nil, func(ctx context.Context) error {
		// A process that dies while it waits stops waiting.
		lctx, cancel := context.WithCancel(ctx)
		defer cancel()
		p.w.bg.Go(func() {
			select {
			case <-p.crashCh:
				cancel()
			case <-lctx.Done():
			}
		})
		var err error
		l, err = s.under.(bearer.Locker).Lock(lctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.crashed {
		p.mu.Unlock()
		p.osRelease(l)
		return nil, p.gate(ctx)
	}
	p.held = l
	p.mu.Unlock()
	if p.w.s.opts.mutant == "leak" {
		// A goroutine that outlives Close, as a leaked renewal would.
		p.w.leaks.Go(func() { <-p.w.leakDone })
	}
	return &simLease{p: p, under: l}, nil
}

type simLease struct {
	p     *proc
	under bearer.Lease
}

func (l *simLease) Load(ctx context.Context) (*bearer.Token, error) {
	var t *bearer.Token
	err := l.p.op(ctx, opLoad, nil, func(ctx context.Context) (err error) {
		t, err = l.under.Load(ctx)
		return err
	})
	return stale(t, err)
}

func (l *simLease) Begin(ctx context.Context, old *bearer.Token) (bool, error) {
	var interrupted bool
	err := l.p.op(ctx, opBegin, nil, func(ctx context.Context) (err error) {
		interrupted, err = l.under.Begin(ctx, old)
		return err
	})
	return interrupted, err
}

func (l *simLease) CompareAndSwap(ctx context.Context, old, new *bearer.Token) error {
	return l.p.op(ctx, opWrite, new, func(ctx context.Context) error {
		return l.under.CompareAndSwap(ctx, old, new)
	})
}

// Unlock releases the lock. A file lock or MemoryStore's lock is released
// by a system call that does not fail; a Redis release can fail in an
// outage, and the lease then lapses.
func (l *simLease) Unlock(ctx context.Context) error {
	p := l.p
	p.ioAfterClose("store Unlock")
	if err := p.gate(ctx); err != nil {
		return err
	}
	if !p.enter() {
		return p.gate(ctx)
	}
	defer p.exit()
	p.mu.Lock()
	if p.held == l.under {
		p.held = nil
	}
	p.mu.Unlock()
	if rl, ok := l.under.(*redisLease); ok {
		n := p.nextStoreOp(opUnlock)
		f := p.w.s.storeFault(p.id, n)
		if !sleepCtx(ctx, f.latency) {
			rl.abandon()
			return fmt.Errorf("sim: store Unlock: %w", context.Cause(ctx))
		}
		if p.w.storeDown(p, opUnlock) {
			rl.abandon()
			p.w.logf("p%d store Unlock: failed (outage); the lease will lapse", p.id)
			return errStoreDown
		}
	}
	return l.under.Unlock(ctx)
}

// op runs one store operation of p through p's faults.
func (p *proc) op(ctx context.Context, kind opKind, tok *bearer.Token, fn func(context.Context) error) error {
	w := p.w
	p.ioAfterClose("store " + kind.String())
	if err := p.gate(ctx); err != nil {
		return err
	}
	n := p.nextStoreOp(kind)
	f := w.s.storeFault(p.id, n)
	var save int
	if kind == opWrite {
		save = p.nextSave()
		if c := p.plan.crash; c.kind == crashBeforeSave && c.n == save {
			p.crash(fmt.Sprintf("before save #%d (%s)", save, tok.RefreshToken))
			return p.gate(ctx)
		}
	}
	latency := f.latency
	if w.storeSlow(p) {
		latency = f.slow
	}
	if !sleepCtx(ctx, latency) {
		return fmt.Errorf("sim: store %v: %w", kind, context.Cause(ctx))
	}
	if err := p.gate(ctx); err != nil {
		return err
	}
	if w.storeDown(p, kind) {
		w.logf("p%d store %v: failed (store fault)", p.id, kind)
		return fmt.Errorf("sim: store %v: %w", kind, errStoreDown)
	}
	if !p.enter() {
		return p.gate(ctx)
	}
	var err error
	switch mutant := w.s.opts.mutant; {
	case mutant == "lost-write" && kind == opWrite && f.replyLost:
		// The store says it saved, and did not.
		p.exit()
		w.logf("p%d store %v %s: MUTANT reports a write it lost", p.id, kind, tok.RefreshToken)
		return nil
	case mutant == "stale-read" && kind == opLoad && f.latency < time.Millisecond:
		err = fn(ctx)
		if err == nil {
			err = w.staleRead(p, fn)
		}
	default:
		err = fn(ctx)
	}
	p.exit()
	if kind == opWrite {
		if err == nil {
			w.wrote(p, tok)
		} else {
			w.logf("p%d store %v %s: %v", p.id, kind, tok.RefreshToken, err)
		}
		if c := p.plan.crash; c.kind == crashAfterSave && c.n == save {
			p.crash(fmt.Sprintf("after save #%d (%s)", save, tok.RefreshToken))
			return p.gate(ctx)
		}
		if err == nil && f.replyLost {
			w.logf("p%d store %v %s: landed, reply lost", p.id, kind, tok.RefreshToken)
			return errReplyLost
		}
	} else if err != nil && !errors.Is(err, bearer.ErrNoToken) {
		w.logf("p%d store %v: %v", p.id, kind, err)
	}
	if err == nil && kind == opBegin && f.replyLost {
		w.logf("p%d store Begin: landed, reply lost", p.id)
		return errReplyLost
	}
	return err
}
