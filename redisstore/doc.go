// Package redisstore keeps a [bearer.Token] in Redis for a fleet of replicas
// that share one OAuth client, and serialises their refreshes with a lease.
//
// It is a module of its own, so that the bearer module needs no Redis
// client.
//
// # Quick start
//
//	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
//	defer rdb.Close()
//	store := redisstore.New(rdb, "{billing}:oauth")
//	codec, err := bearer.NewAESGCM(key) // optional: encrypt at rest
//	if err != nil {
//		return err
//	}
//	store.Codec = codec
//	src := bearer.NewSource(cfg, store)
//	defer src.Close()
//
// The first token, from the user's authorization, is put in place once with
// [Store.Save].
//
// # Guarantees
//
// One refresh per expiry across replicas. A [bearer.Source] takes the lease
// ([Store.Lock]), re-reads the token, and refreshes only if it still needs
// to; the replicas that waited find the new token and adopt it. A refresh
// token is therefore spent once, which single-use servers such as
// OpenTicket require: spending one twice revokes the whole grant.
//
// Fencing. A lease lapses after [Store.LeaseTTL], so a replica that dies
// holding it does not stop the others. A holder that merely stalled past
// its lease may still come back with a new token; its save is then refused
// with [bearer.ErrLockLost] and the newer token stays. Every write under a
// lease is a Lua script that checks the lease owner and, for the save, that
// the stored token is still the one the refresh started from
// ([bearer.ErrConflict] otherwise), and writes nothing if either check
// fails.
//
// Interrupted refreshes. Before its request leaves, the holder records a
// fingerprint of the refresh token it is about to spend; a successful save
// clears it. The next holder that finds the record for the same token knows
// the earlier refresh may have spent it ([bearer.ErrInterrupted]). While
// its own access token is valid and not rejected (a refresh ahead of
// expiry), a bearer.Source that finds such a
// record waits up to 10 s for the earlier holder's save, which may be
// retrying after an outage longer than its lease, before it spends the
// token itself.
//
// Fail closed. When Redis cannot be reached every method returns an error
// ("bearer/redisstore: ...", wrapping go-redis's) instead of guessing: no
// refresh happens without the lease, and the Source keeps serving its
// access token while it is valid. The one exception is the save after a
// refresh: the refresh token is spent by then, so CompareAndSwap keeps
// trying, under the lease it still holds, until ctx ends (the Source's
// refresh timeout). A Redis that comes back in time gets the new token
// before any other replica can take the lease and send the spent one.
// Calls return when their ctx ends; give the client ContextTimeoutEnabled
// so that go-redis also stops the command then rather than at its own
// ReadTimeout.
//
// Persistence. Run Redis with persistence (appendonly yes) or a replica
// that takes over: the stored token is the fleet's only record of which
// refresh token is current. If the key is lost, a replica falls back to the
// token it holds in memory, and one that had not caught up may spend a
// refresh token that another already spent.
//
// # LeaseTTL and the refresh timeout
//
// LeaseTTL (75s by default) must be longer than twice the Source's
// refresh timeout plus a margin: the lease is taken within one refresh
// timeout (30s by default, the request and its retries) and the save gets
// one of its own, so that a slow request cannot cost the new token. A refresh
// that outlives its lease lets another replica take the lease while the
// request is still in flight and send the same refresh token again, and a
// strict server then revokes the grant: fencing keeps the store consistent
// but cannot take back a request already sent. A shorter LeaseTTL only
// shortens the wait after a crash; a longer one costs nothing while
// holders unlock.
//
// # Data layout
//
// For a key K, the Store uses three Redis keys, which on Redis Cluster must
// share a slot (use a hash tag, as in "{billing}:oauth"):
//
//   - K, a hash: field "token" holds the token's JSON, sealed by
//     [Store.Codec] if set; field "rt" holds the fingerprint of its refresh
//     token, a hex SHA-256 that the scripts compare without reading the
//     (possibly sealed) token.
//   - K:lock, a string: the random owner of the lease, expiring after
//     LeaseTTL.
//   - K:refreshing, a string: the fingerprint of a refresh token being spent.
//
// No key holds a token in clear except K's "token" field without a Codec.
package redisstore
