package redisstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"reflect"
	"strconv"
	"time"

	"github.com/tokenkit/bearer/internal/tokenjson"

	"github.com/redis/go-redis/v9"
	"github.com/tokenkit/bearer"
)

const (
	// DefaultLeaseTTL is the lease lifetime used when [Store.LeaseTTL] is
	// zero. A held lease renews itself, so this is how long a replica that
	// cannot reach Redis (or died) keeps the others waiting, and how long
	// an outage a holder survives without being presumed dead.
	DefaultLeaseTTL = 75 * time.Second

	// MinLeaseTTL is the shortest LeaseTTL that Lock accepts: a lease
	// must be renewed, a third of LeaseTTL apart, across round trips to
	// Redis.
	MinLeaseTTL = 100 * time.Millisecond

	// DefaultPollInterval is the wait between attempts to take a held
	// lease used when [Store.PollInterval] is zero.
	DefaultPollInterval = 25 * time.Millisecond
)

// Store is a [bearer.Store] in Redis, shared by every replica that uses the
// same key. It implements [bearer.Locker] with a lease, so that a
// [bearer.Source] on each replica refreshes at most once per expiry.
//
// Create a Store with [New]; a zero Store has no client and its methods
// return an error. Set the fields before first use and do not change them
// after. A Store is safe for concurrent use by multiple goroutines. It prints
// without secrets: neither the client's options nor the Codec are shown.
type Store struct {
	// LeaseTTL is how long a lease taken by Lock lasts after its holder
	// stops renewing it, because it crashed or cannot reach Redis. A held
	// lease renews itself every third of LeaseTTL, so it outlives the work
	// under it however long that takes; a failed renewal is tried again
	// every 100 ms at most. It is the one timing contract between
	// replicas: a holder that cannot reach Redis for about two thirds of
	// LeaseTTL (the last renewal may have come a third of it before the
	// outage) is presumed dead, another replica may take over its refresh, and the
	// first holder's writes fail with [bearer.ErrLockLost]. Lock refuses
	// a LeaseTTL under [MinLeaseTTL]. If zero, [DefaultLeaseTTL] is used.
	LeaseTTL time.Duration

	// PollInterval is how often Lock tries again to take a held lease; each
	// wait is jittered by up to half of it either way. If zero,
	// [DefaultPollInterval] is used.
	PollInterval time.Duration

	// Codec seals the token before it is written and opens it after it is
	// read, for example [bearer.NewAESGCM]. If nil, the token is stored as
	// plain JSON.
	Codec bearer.Codec

	rdb redis.UniversalClient
	key string
}

var (
	_ bearer.Store  = (*Store)(nil)
	_ bearer.Locker = (*Store)(nil)
)

// New returns a Store that keeps the token in the hash at key, the lease at
// key+":lock" and the record of a refresh in flight at key+":refreshing".
// On Redis Cluster, put a hash tag in key, such as "{bearer}:token", so that
// all three share a slot.
//
// The Store does not close rdb. Its calls return when ctx ends; the command
// in flight then runs on until rdb's own timeouts end it, unless rdb was
// created with ContextTimeoutEnabled.
func New(rdb redis.UniversalClient, key string) *Store {
	return &Store{rdb: rdb, key: key}
}

// String describes s without the client's options or the Codec, either of
// which can hold secrets.
func (s Store) String() string {
	codec := "none"
	if s.Codec != nil {
		codec = "set"
	}
	return "redisstore.Store{Key:" + strconv.Quote(s.key) +
		" LeaseTTL:" + s.leaseTTL().String() +
		" PollInterval:" + s.pollInterval().String() +
		" Codec:" + codec + "}"
}

// Format makes every fmt verb print the String form.
func (s Store) Format(f fmt.State, verb rune) { fmt.Fprint(f, s.String()) }

// Load returns the stored token. It returns an error wrapping
// [bearer.ErrNoToken] when the key does not exist, and another error when
// the value cannot be read: not a token, sealed under another key
// (wrapping [bearer.ErrDecrypt]), or not written by a Store.
func (s *Store) Load(ctx context.Context) (*bearer.Token, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	var vals []any
	err := do(ctx, func(ctx context.Context) error {
		var err error
		vals, err = s.rdb.HMGet(ctx, s.key, fieldToken, fieldRT).Result()
		return err
	})
	if err != nil {
		return nil, s.errorf("loading the token", err)
	}
	if len(vals) != 2 {
		return nil, fmt.Errorf("bearer/redisstore: loading the token at %q: unexpected reply", s.key)
	}
	if vals[0] == nil && vals[1] == nil {
		return nil, fmt.Errorf("bearer/redisstore: key %q: %w", s.key, bearer.ErrNoToken)
	}
	sealed, ok1 := vals[0].(string)
	fp, ok2 := vals[1].(string)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("bearer/redisstore: key %q does not hold a token written by this package", s.key)
	}
	t, err := s.decode([]byte(sealed))
	if err != nil {
		return nil, err
	}
	// The fingerprint is what compare-and-swap checks; one that does not
	// match the token would make every swap conflict, or let a wrong one
	// through.
	if fingerprint(t) != fp {
		return nil, fmt.Errorf("bearer/redisstore: key %q: the stored fingerprint does not match the stored token", s.key)
	}
	return t, nil
}

// Save stores t, replacing whatever the key held, without taking the lease.
// The token and its fingerprint are written together; an empty Token
// deletes the key. A record of a refresh
// in flight is cleared unless it is about t's own refresh token.
//
// What Save writes, Load reads: a token that Load would refuse or read back
// changed (a control character in it, an Info that is not JSON, text that
// is not UTF-8, a Codec that cannot open what it sealed) is refused with an
// error wrapping [bearer.ErrUnstorable], and nothing is written. Load has no
// size limit of its own; Redis refuses a value longer than its
// proto-max-bulk-len (512 MB by default), and then nothing is written
// either.
func (s *Store) Save(ctx context.Context, t *bearer.Token) error {
	if err := s.check(); err != nil {
		return err
	}
	val, fp, err := s.encode(t)
	if err != nil {
		return err
	}
	err = do(ctx, func(ctx context.Context) error {
		return saveScript.Run(ctx, s.rdb, []string{s.key, s.refreshingKey()}, val, fp).Err()
	})
	if err != nil {
		return s.errorf("saving the token", err)
	}
	return nil
}

// Lock takes the lease at key+":lock", waiting while another holder has it
// until it is released or lapses, or until ctx ends; the error then wraps
// ctx's error. A Redis failure ends the wait at once with an error: a Source
// then keeps serving its access token while it is valid.
func (s *Store) Lock(ctx context.Context) (bearer.Lease, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	ttl := s.leaseTTL()
	if ttl < MinLeaseTTL {
		return nil, fmt.Errorf("bearer/redisstore: LeaseTTL %v is shorter than MinLeaseTTL (%v): the lease could not be renewed in time", ttl, MinLeaseTTL)
	}
	owner, err := newOwner()
	if err != nil {
		return nil, err
	}
	var p pauser
	defer p.stop()
	for {
		var ok bool
		err := do(ctx, func(ctx context.Context) error {
			var err error
			ok, err = lockScript.Run(ctx, s.rdb, []string{s.lockKey()}, owner, ttl.Milliseconds()).Bool()
			return err
		})
		if err != nil {
			// The SET may have landed: release it, or it blocks everyone for ttl.
			go func() {
				uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				defer cancel()
				unlockScript.Run(uctx, s.rdb, []string{s.lockKey()}, owner)
			}()
			if ctx.Err() != nil {
				return nil, ctxError("waiting for the lease", ctx)
			}
			return nil, s.errorf("taking the lease", err)
		}
		if ok {
			return newLease(s, owner), nil
		}
		if !p.pause(ctx, s.pollWait()) {
			return nil, ctxError("waiting for the lease", ctx)
		}
	}
}

// pauser waits between tries on one timer, made at the first pause.
type pauser struct{ t *time.Timer }

// pause waits d and reports true, or false if ctx ends first.
func (p *pauser) pause(ctx context.Context, d time.Duration) bool {
	if p.t == nil {
		p.t = time.NewTimer(d)
	} else {
		p.t.Reset(d)
	}
	select {
	case <-p.t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (p *pauser) stop() {
	if p.t != nil {
		p.t.Stop()
	}
}

// Hash fields of the token key.
const (
	fieldToken = "token" // the token's JSON (internal/tokenjson), sealed by the Codec if any
	fieldRT    = "rt"    // fingerprint of the refresh token
)

func (s *Store) lockKey() string       { return s.key + ":lock" }
func (s *Store) refreshingKey() string { return s.key + ":refreshing" }

func (s *Store) check() error {
	if s.rdb == nil {
		return errors.New("bearer/redisstore: Store has no Redis client; create it with New")
	}
	if s.key == "" {
		return errors.New("bearer/redisstore: Store has an empty key")
	}
	return nil
}

func (s *Store) leaseTTL() time.Duration {
	if s.LeaseTTL <= 0 {
		return DefaultLeaseTTL
	}
	return s.LeaseTTL
}

func (s *Store) pollInterval() time.Duration {
	if s.PollInterval <= 0 {
		return DefaultPollInterval
	}
	return s.PollInterval
}

// pollWait spreads the attempts of replicas that began waiting together.
func (s *Store) pollWait() time.Duration {
	p := s.pollInterval()
	return p/2 + mrand.N(p+1)
}

// encode returns what the key holds for t: its value and fingerprint,
// both empty for the zero Token, which clears the store
// (bearer.Source.Revoke saves one).
func (s *Store) encode(t *bearer.Token) (val, fp string, err error) {
	if t == nil {
		return "", "", errors.New("bearer/redisstore: cannot save a nil token")
	}
	if reflect.ValueOf(*t).IsZero() {
		return "", "", nil
	}
	b, err := tokenjson.Marshal(t)
	if err != nil {
		return "", "", fmt.Errorf("bearer/redisstore: encoding the token: %w", err)
	}
	if s.Codec != nil {
		if b, err = s.Codec.Seal(b); err != nil {
			return "", "", fmt.Errorf("bearer/redisstore: sealing the token: %w", err)
		}
	}
	if s.Codec != nil {
		// What Save writes, Load reads (tokenjson.Marshal made sure of it for
		// the JSON): a Codec that cannot open what it sealed would
		// strand the token.
		back, err := s.decode(b)
		if err == nil && !sameToken(back, t) {
			err = errors.New("the Codec opens it changed")
		}
		if err != nil {
			return "", "", fmt.Errorf("bearer/redisstore: key %q: %w: %w", s.key, bearer.ErrUnstorable, err)
		}
	}
	return string(b), fingerprint(t), nil
}

// sameToken reports whether a and b hold the same token, field by field.
func sameToken(a, b *bearer.Token) bool {
	return a.AccessToken == b.AccessToken && a.TokenType == b.TokenType && a.RefreshToken == b.RefreshToken &&
		a.Expiry.Equal(b.Expiry) && a.RefreshExpiry.Equal(b.RefreshExpiry) && a.Obtained.Equal(b.Obtained) &&
		bytes.Equal(a.Info, b.Info)
}

func (s *Store) decode(b []byte) (*bearer.Token, error) {
	if s.Codec != nil {
		var err error
		if b, err = s.Codec.Open(b); err != nil {
			return nil, fmt.Errorf("bearer/redisstore: key %q: opening the token: %w", s.key, err)
		}
	}
	v, err := tokenjson.Unmarshal(b)
	if err != nil {
		return nil, fmt.Errorf("bearer/redisstore: key %q: %w", s.key, err)
	}
	t := v.(*bearer.Token)
	return t, nil
}

// errorf wraps a Redis error. go-redis errors name the address and the
// failure, never a password or the values sent.
func (s *Store) errorf(doing string, err error) error {
	return fmt.Errorf("bearer/redisstore: %s at %q: %w", doing, s.key, err)
}

// do runs fn, returning when it does or when ctx ends. go-redis bounds a
// command by its own timeouts and ignores ctx's deadline unless the client
// has ContextTimeoutEnabled, so a stalled server would hold the caller past
// ctx. fn then runs on until those timeouts end it; its result is dropped,
// since the caller was already told that the outcome is unknown.
func do(ctx context.Context, fn func(context.Context) error) error {
	if ctx.Done() == nil {
		return fn(ctx)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ctxError reports that ctx ended, wrapping both its error and its cause.
func ctxError(doing string, ctx context.Context) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return fmt.Errorf("bearer/redisstore: %s: %w (%w)", doing, err, cause)
	}
	return fmt.Errorf("bearer/redisstore: %s: %w", doing, err)
}

// fingerprint names the refresh token t holds, so that scripts can compare
// tokens they cannot read (the value may be sealed) and records never hold
// the token itself. A token without a refresh token is named by its access
// token, as [bearer.MemoryStore] compares such tokens.
func fingerprint(t *bearer.Token) string {
	var in string
	if t.RefreshToken != "" {
		in = "refresh_token:" + t.RefreshToken
	} else {
		in = "access_token:" + t.AccessToken
	}
	sum := sha256.Sum256([]byte(in))
	return hex.EncodeToString(sum[:])
}

// newOwner returns a random lease owner, unique across replicas.
func newOwner() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("bearer/redisstore: lease owner: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

var lockScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then return 1 end
if v then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)
