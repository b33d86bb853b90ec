package bearer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// Store keeps the current token where it survives the process: a new
// refresh token is saved before anyone uses it, so a restart never replays a
// spent one.
//
// Load returns an error wrapping [ErrNoToken] when nothing is stored, and
// any other error for a store it cannot read: a corrupt store is never
// mistaken for an empty one. Implementations must be safe for concurrent use.
// A Store may also implement [Locker], which the [Source] then uses to
// serialise refreshes across every process sharing the store.
//
// What a Store must guarantee, for the Source to present each refresh token
// once (docs/refresh.md):
//   - Read your writes: once Save (or a Lease's CompareAndSwap) returned
//     nil, Load returns that token or one saved after it, never an older
//     one. A store that loses a write it reported done can make a Source
//     spend a dead refresh token; a Source notices the one it spent last.
//   - Without [Locker], a Store serves one Source: nothing orders the
//     refreshes of two Sources sharing it, in one process or several.
//   - Keep every field of [Token], Obtained included (or the Source falls
//     back to the default refresh windows of a token of unknown lifetime).
//   - An empty Token (the zero value), which [Source.Revoke] saves through
//     Save or CompareAndSwap, clears the store: Load then reports
//     ErrNoToken, and a swap from nil lands.
type Store interface {
	Load(ctx context.Context) (*Token, error)
	Save(ctx context.Context, t *Token) error
}

// Locker is an optional interface of a [Store] shared by several processes
// or replicas. A [Source] that finds it takes the lock around "re-read,
// refresh if still needed, save", so that exactly one holder spends each
// refresh token and the others adopt its result.
//
// Lock waits until the caller holds the lock or ctx ends. While one lease is
// held no other is, in any process, and a holder that dies must not keep the
// lock forever: the OS releases a file lock, a Redis lease lapses. A lock
// that can lapse while its holder lives (a lease with a TTL) must renew
// itself while held, and make every write under it fail with [ErrLockLost]
// once it has lapsed. Under a held lease, Lease.Load returns what the last
// successful write left: no stale reads.
//
// A Source keeps the lease for as long as a new token is unsaved (its save
// failed and is being retried), so that no other process spends the refresh
// token that the unsaved one replaced.
type Locker interface {
	Lock(ctx context.Context) (Lease, error)
}

// Lease is a held [Locker] lock. Its methods are used by one goroutine at a
// time, and not after Unlock.
type Lease interface {
	// Load reads the stored token, as [Store.Load] does.
	Load(ctx context.Context) (*Token, error)

	// Begin records, before the refresh request leaves, that old's refresh
	// token is about to be spent. It reports whether such a record for the
	// same refresh token was already there: an earlier refresh was
	// interrupted (a crash, a lost answer), or another process's refresh
	// has not saved its result yet, and the token may be spent.
	Begin(ctx context.Context, old *Token) (interrupted bool, err error)

	// CompareAndSwap saves new only if the store still holds old's refresh
	// token (and, for a lease that can lapse, the lease is still held);
	// otherwise it writes nothing and returns an error wrapping [ErrConflict]
	// or [ErrLockLost]. It clears the record Begin made.
	CompareAndSwap(ctx context.Context, old, new *Token) error

	// Unlock releases the lock. Unlocking a lapsed lease is not an error.
	Unlock(ctx context.Context) error
}

// MemoryStore is a [Store] in memory, for one process: tests, and
// credentials that need no refresh token. It implements [Locker] for
// Sources in the same process that share it. Its zero value holds no
// token; it is safe for concurrent use. It prints without secrets, by value
// too: fmt cannot reach the token it holds.
type MemoryStore struct {
	// lock is a one-slot semaphore so that waiting can honour a context.
	lockOnce sync.Once
	lock     chan struct{}

	mu sync.Mutex // guards t's changes and spending
	// t is an atomic.Pointer, whose pointer fmt prints as an address
	// whatever the verb: a *Token would be followed, and its secrets
	// printed, by %s or %d on a MemoryStore held in an unexported field.
	t        atomic.Pointer[Token]
	spending string // fingerprint of the refresh token being spent
}

var _ Locker = (*MemoryStore)(nil)

// NewMemoryStore returns a MemoryStore holding t, which may be nil.
func NewMemoryStore(t *Token) *MemoryStore {
	m := &MemoryStore{}
	m.t.Store(cloneToken(t))
	return m
}

// Format prints m with its token redacted, with every fmt verb (slog's
// text handler too).
func (m *MemoryStore) Format(f fmt.State, verb rune) {
	if t := m.t.Load(); t != nil {
		fmt.Fprintf(f, "bearer.MemoryStore{%v}", t)
		return
	}
	io.WriteString(f, "bearer.MemoryStore{no token}")
}

// Load returns a copy of the stored token, or an error wrapping [ErrNoToken].
func (m *MemoryStore) Load(ctx context.Context) (*Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.t.Load()
	if t == nil {
		return nil, errorf("memory store: %w", ErrNoToken)
	}
	return cloneToken(t), nil
}

// Save stores a copy of t; an empty Token clears the store.
func (m *MemoryStore) Save(ctx context.Context, t *Token) error {
	if t == nil {
		return fmt.Errorf("bearer: memory store: cannot save a nil token")
	}
	m.mu.Lock()
	if cleared(t) {
		m.t.Store(nil)
	} else {
		m.t.Store(cloneToken(t))
	}
	m.mu.Unlock()
	return nil
}

// Lock takes the store's lock, waiting until it is free or ctx ends.
func (m *MemoryStore) Lock(ctx context.Context) (Lease, error) {
	m.lockOnce.Do(func() { m.lock = make(chan struct{}, 1) })
	select {
	case m.lock <- struct{}{}:
		return &memoryLease{m: m}, nil
	case <-ctx.Done():
		return nil, errorf("memory store: waiting for the lock: %w", context.Cause(ctx))
	}
}

type memoryLease struct {
	m        *MemoryStore
	unlocked sync.Once
}

func (l *memoryLease) Load(ctx context.Context) (*Token, error) { return l.m.Load(ctx) }

func (l *memoryLease) Begin(ctx context.Context, old *Token) (bool, error) {
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	fp := fingerprint(old.RefreshToken)
	interrupted := l.m.spending == fp
	l.m.spending = fp
	return interrupted, nil
}

func (l *memoryLease) CompareAndSwap(ctx context.Context, old, new *Token) error {
	if new == nil {
		return fmt.Errorf("bearer: memory store: cannot save a nil token")
	}
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	if !sameRefresh(l.m.t.Load(), old) {
		return errorf("memory store: %w", ErrConflict)
	}
	if cleared(new) {
		l.m.t.Store(nil)
	} else {
		l.m.t.Store(cloneToken(new))
	}
	l.m.spending = ""
	return nil
}

func (l *memoryLease) Unlock(ctx context.Context) error {
	l.unlocked.Do(func() { <-l.m.lock })
	return nil
}

// sameRefresh reports whether stored holds the same refresh token as old
// (both absent counts as the same, for tokens without refresh tokens).
func sameRefresh(stored, old *Token) bool {
	if stored == nil || old == nil {
		return stored == nil && old == nil
	}
	return stored.RefreshToken == old.RefreshToken && (old.RefreshToken != "" || stored.AccessToken == old.AccessToken)
}

// fingerprint names a refresh token in records without storing it again.
func fingerprint(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

func cloneToken(t *Token) *Token {
	if t == nil {
		return nil
	}
	c := *t
	if t.Info != nil {
		c.Info = append([]byte(nil), t.Info...)
	}
	return &c
}
