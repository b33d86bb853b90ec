package redisstore

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tokenkit/bearer"
)

// lease is a held lock: key+":lock" holds owner until Unlock or LeaseTTL.
// Every write under it runs in a script that first checks the lock still
// holds owner, so a holder whose lease lapsed (a long GC pause, a slow
// refresh) cannot overwrite the work of the holder that came after it.
//
// While held, a lease renews itself every third of LeaseTTL, so that it
// outlives the work under it however long that takes (a slow token
// endpoint, a save retried until Redis answers); it lapses LeaseTTL after
// its holder stops reaching Redis, or dies.
type lease struct {
	s     *Store
	owner string

	stop     chan struct{} // closed to end the renewing
	renewed  chan struct{} // closed when the renewing has ended
	stopOnce sync.Once
}

// renewScript extends the lease if it still holds owner.
//
// KEYS: lock. ARGV: owner, ttl in milliseconds.
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

func newLease(s *Store, owner string) *lease {
	l := &lease{s: s, owner: owner, stop: make(chan struct{}), renewed: make(chan struct{})}
	go l.renew(s.leaseTTL())
	return l
}

// renew extends the lease every ttl/3 until it is stopped or found lost.
// A failed attempt (Redis unreachable) is tried again soon, every
// renewRetry, so that a holder survives any outage shorter than about
// LeaseTTL - ttl/3, not only those shorter than ttl/3.
func (l *lease) renew(ttl time.Duration) {
	defer close(l.renewed)
	t := time.NewTimer(ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), ttl/3)
		var ok bool
		err := do(ctx, func(ctx context.Context) error {
			var err error
			ok, err = renewScript.Run(ctx, l.s.rdb, []string{l.s.lockKey()}, l.owner, ttl.Milliseconds()).Bool()
			return err
		})
		cancel()
		switch {
		case err == nil && !ok:
			return // lapsed: writes under it fail with ErrLockLost
		case err != nil:
			t.Reset(min(ttl/10, renewRetry))
		default:
			t.Reset(ttl / 3)
		}
	}
}

// renewRetry is the longest wait before a failed renewal is tried again.
const renewRetry = 100 * time.Millisecond

// stopRenewing ends the renewing and waits until it has ended.
func (l *lease) stopRenewing() {
	if l.stop == nil {
		return // made by hand, never renewed
	}
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.renewed
}

var _ bearer.Lease = (*lease)(nil)

// Script replies, shared by Begin and CompareAndSwap.
const (
	replyOK       = 0
	replyLost     = 1
	replyConflict = 2
)

// saveScript writes the token and its fingerprint together (an empty value
// only deletes the key), and drops the refresh-in-flight record unless it
// names the token being saved.
//
// KEYS: token, refreshing. ARGV: value, fingerprint.
var saveScript = redis.NewScript(`
redis.call('DEL', KEYS[1])
if ARGV[1] ~= '' then
	redis.call('HSET', KEYS[1], 'token', ARGV[1], 'rt', ARGV[2])
end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then
	redis.call('DEL', KEYS[2])
end
return 0
`)

// beginScript records, under the lease, which refresh token is being spent.
// It returns {reply, interrupted}.
//
// KEYS: lock, refreshing. ARGV: owner, fingerprint.
var beginScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
	return {1, 0}
end
local interrupted = 0
if redis.call('GET', KEYS[2]) == ARGV[2] then
	interrupted = 1
end
redis.call('SET', KEYS[2], ARGV[2])
return {0, interrupted}
`)

// casScript saves a new token if the lease is still held and the stored
// fingerprint is the old one (an empty old fingerprint means "no token
// stored"), then clears the refresh-in-flight record; an empty value
// deletes the key (a cleared store). It writes nothing otherwise. A store
// that already holds the new token (or, clearing, none) counts as saved:
// the script is run again when its reply was lost.
//
// KEYS: token, lock, refreshing. ARGV: owner, old fingerprint, value,
// new fingerprint.
var casScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
	return 1
end
local cur = redis.call('HGET', KEYS[1], 'rt')
local fromOld
if ARGV[2] == '' then
	fromOld = redis.call('EXISTS', KEYS[1]) == 0
else
	fromOld = cur == ARGV[2]
end
if not fromOld then
	if cur == ARGV[4] or (ARGV[3] == '' and not cur) then
		return 0
	end
	return 2
end
redis.call('DEL', KEYS[1])
if ARGV[3] ~= '' then
	redis.call('HSET', KEYS[1], 'token', ARGV[3], 'rt', ARGV[4])
end
redis.call('DEL', KEYS[3])
return 0
`)

// unlockScript deletes the lock only if it still holds owner: a lapsed
// lease must not release the next holder's.
//
// KEYS: lock. ARGV: owner.
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('DEL', KEYS[1])
end
return 0
`)

// Load reads the stored token, as [Store.Load] does.
func (l *lease) Load(ctx context.Context) (*bearer.Token, error) {
	return l.s.Load(ctx)
}

// Begin records old's refresh token fingerprint at key+":refreshing" if the
// lease is still held, and reports whether that record was already there.
func (l *lease) Begin(ctx context.Context, old *bearer.Token) (bool, error) {
	if old == nil {
		return false, errors.New("bearer/redisstore: Begin needs the token being refreshed")
	}
	s := l.s
	var reply []any
	err := do(ctx, func(ctx context.Context) error {
		var err error
		reply, err = beginScript.Run(ctx, s.rdb,
			[]string{s.lockKey(), s.refreshingKey()},
			l.owner, fingerprint(old)).Slice()
		return err
	})
	if err != nil {
		return false, s.errorf("recording the refresh", err)
	}
	if len(reply) != 2 {
		return false, fmt.Errorf("bearer/redisstore: recording the refresh at %q: unexpected reply", s.key)
	}
	code, _ := reply[0].(int64)
	interrupted, _ := reply[1].(int64)
	if code == replyLost {
		return false, fmt.Errorf("bearer/redisstore: recording the refresh at %q: %w", s.key, bearer.ErrLockLost)
	}
	return interrupted == 1, nil
}

// CompareAndSwap saves new if the lease is still held and the store still
// holds old's refresh token, and clears Begin's record, all in one script.
//
// Unlike the other methods it does not give up when Redis cannot be
// reached: it tries again, with backoff, until ctx ends. It runs after
// old's refresh token was spent, and saving under the lease still held is
// what keeps the other replicas, blocked on that lease, from sending the
// spent token once Redis is back. A store found already holding new (the
// reply to an earlier try was lost) counts as saved.
func (l *lease) CompareAndSwap(ctx context.Context, old, new *bearer.Token) error {
	s := l.s
	val, newFP, err := s.encode(new)
	if err != nil {
		return err
	}
	oldFP := ""
	if old != nil {
		oldFP = fingerprint(old)
	}
	const doing = "saving the refreshed token"
	var lastErr error // of the previous try, for when ctx ends during one
	var p pauser
	defer p.stop()
	for backoff := casBackoff; ; backoff = min(2*backoff, casMaxBackoff) {
		var code int64
		err := do(ctx, func(ctx context.Context) error {
			var err error
			code, err = casScript.Run(ctx, s.rdb,
				[]string{s.key, s.lockKey(), s.refreshingKey()},
				l.owner, oldFP, val, newFP).Int64()
			return err
		})
		if err == nil {
			switch code {
			case replyOK:
				return nil
			case replyLost:
				return fmt.Errorf("bearer/redisstore: %s at %q: %w", doing, s.key, bearer.ErrLockLost)
			case replyConflict:
				return fmt.Errorf("bearer/redisstore: %s at %q: %w", doing, s.key, bearer.ErrConflict)
			}
			return fmt.Errorf("bearer/redisstore: %s at %q: unexpected reply %d", doing, s.key, code)
		}
		if ctx.Err() != nil && lastErr != nil {
			return fmt.Errorf("bearer/redisstore: %s at %q: %w (gave up: %w)", doing, s.key, lastErr, ctx.Err())
		}
		if ctx.Err() != nil || !transient(err) {
			return s.errorf(doing, err)
		}
		lastErr = err
		if !p.pause(ctx, backoff/2+mrand.N(backoff/2+1)) {
			return fmt.Errorf("bearer/redisstore: %s at %q: %w (gave up: %w)", doing, s.key, err, ctx.Err())
		}
	}
}

// Backoff of CompareAndSwap while Redis cannot be reached.
const (
	casBackoff    = 50 * time.Millisecond
	casMaxBackoff = time.Second
)

// transient reports whether a Redis call that failed with err, while its
// ctx had not ended, may succeed if tried again: the server could not be
// reached (a timeout included) or is not ready yet (loading its data,
// failing over). Error replies about the command or the data, and a closed
// client, are final.
func transient(err error) bool {
	if errors.Is(err, redis.ErrClosed) {
		return false
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		for _, p := range []string{"LOADING", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY", "BUSY "} {
			if redis.HasErrorPrefix(err, p) {
				return true
			}
		}
		return false
	}
	return true
}

// Unlock releases the lease if it is still ours. A lapsed lease, maybe
// already taken by another holder, is left alone, and that is not an error.
// A ctx that has ended leaves the lease to lapse after LeaseTTL: unlock with
// a context of its own.
func (l *lease) Unlock(ctx context.Context) error {
	l.stopRenewing()
	s := l.s
	err := do(ctx, func(ctx context.Context) error {
		return unlockScript.Run(ctx, s.rdb, []string{s.lockKey()}, l.owner).Err()
	})
	if err != nil {
		return s.errorf("releasing the lease", err)
	}
	return nil
}
