// Package bearer keeps an API client authenticated forever: it refreshes
// OAuth 2.0 access tokens before they expire, persists every rotated refresh
// token before anyone uses it, and retries a request once when the server
// rejects its token.
//
// It is built for servers such as OpenTicket whose refresh tokens are single
// use: every refresh returns a new refresh token and kills the old one, and
// presenting a spent one may revoke the whole authorization. Four failures
// that clients of such servers meet are prevented:
//
//  1. A rotated refresh token that lives only in memory is lost on restart:
//     a [Source] saves it to a [Store] before returning it.
//  2. Two goroutines, processes or replicas refresh at once and the second
//     spends a dead token: a Source collapses concurrent refreshes into one,
//     and a store that implements [Locker] ([FileStore], redisstore) extends
//     that across processes and hosts.
//  3. A cancelled caller aborts a refresh after the server rotated the token:
//     refreshes run detached from callers' contexts and are saved anyway.
//  4. An access token revoked early fails every request until it expires: a
//     [Transport] refreshes on a 401 and retries the request once.
//
// # Quick start
//
// Obtain the first token once (send a person to [Config.AuthCodeURL] and
// pass the code the redirect brings back to [Config.Exchange], or use
// [Config.DeviceAuth] on a machine without a browser; or run the bearer
// command's login), save it in a store, and let a Source keep it fresh:
//
//	cfg := bearer.Config{
//		ClientID:     os.Getenv("OAUTH_CLIENT_ID"),
//		ClientSecret: os.Getenv("OAUTH_CLIENT_SECRET"),
//	}
//	src := bearer.NewSource(cfg, bearer.NewFileStore("token.json"))
//	defer src.Close()
//	client := &http.Client{Transport: &bearer.Transport{Source: src}}
//
// The zero Config talks to OpenTicket ([DefaultTokenURL]) with JSON bodies.
// For an RFC 6749 server set TokenURL and Encoding: [Form], and AuthStyle:
// [AuthBasic] if it wants HTTP Basic client authentication. With
// ClientCredentials set, the Source fetches machine-to-machine tokens with
// the client_credentials grant and needs no stored token.
//
// # Stores
//
// [MemoryStore] is for tests and for a single process that can afford to lose
// its token. [FileStore] writes one JSON file crash-safe (temporary file,
// fsync, rename, fsync of the folder) with mode 0600, and locks a file beside
// it so that processes on one host take turns. The module
// github.com/tokenkit/bearer/redisstore shares one token between replicas on
// many hosts with a fenced lease. Both accept a [Codec], such as [NewAESGCM],
// to encrypt the token at rest.
//
// A store that implements [Locker] gives the Source a [Lease]: it re-reads the
// store under the lock, adopts a token another process saved instead of
// refreshing, records that a refresh token is about to be spent, and saves
// the result with a compare-and-swap that never overwrites a token it did not
// start from.
//
// # Timing
//
// A token is treated as expired [Config.Leeway] before its Expiry (by default
// a tenth of its lifetime, at most 10 s). [Config.RefreshAhead] before Expiry
// (by default a quarter of the lifetime, at most 5 minutes) Token starts one
// background refresh and keeps returning the current token; only callers
// holding no valid token wait. Both windows are fractions of the token's
// whole lifetime, which is kept at rest, and configured ones are clamped to
// it (leeway at most half, refresh-ahead at most three quarters), so a
// short token never looks stale the moment it arrives. Time comes from
// [Config.Now], so tests can use a fake clock.
//
// # Concurrency
//
// Source, Transport and the stores are safe for concurrent use. While a token
// is fresh, [Source.Token] is one atomic load and a clock read: no lock, no
// allocation. Concurrent refreshes collapse into one (golang.org/x/sync's
// singleflight); waiting callers select on their own context, while the
// refresh itself runs on a context detached from them with its own timeout
// ([Config.RefreshTimeout]) and is saved before anyone receives the token.
// All work a Source starts (refreshes, callers' abandoned ones included, and
// the retrying of a failed save) is owned by it and ends with it:
// [Source.Close] waits for it.
//
// # Errors
//
// Branch with errors.Is and errors.As. [ErrReauthorize] means a person must
// authorize the app again: the refresh token expired, was revoked or was
// already used. [ErrNoToken] means the store holds nothing yet. Token endpoint
// failures are a [*RetrieveError] with the status, the OAuth error code and
// description, and an excerpt of the body with every secret removed.
// [ErrInterrupted] names a refresh that an earlier process began and never
// finished.
//
// A Token records the token endpoint and client it was issued to, and keeps
// the record at rest. A Source configured for another endpoint or client
// (a forgotten TokenURL, say, which would mean [DefaultTokenURL]) refuses to
// refresh it with an error naming both, and sends nothing: not its refresh
// token, not the client secret. Tokens stored before the record was kept
// are refreshed as before, and their successors carry it.
//
// [Source.Revoke] ends a grant: it revokes the stored refresh token at
// [Config.RevocationURL] (RFC 7009) and clears the store.
//
// A refresh token is presented to the token endpoint at most once: the
// protocol that keeps that promise, and what a [Store] must guarantee for
// it, is in docs/refresh.md. A refresh token is sent a second time only
// when the first outcome is unknown (the request left and no answer was
// read, or a process died between sending and saving, which the next one
// learns from the store): on a server with a reuse grace period the
// second send recovers the rotation, and on a strict server the token is
// dead either way.
//
// Transport errors, 5xx and 429 answers (honouring Retry-After) are retried
// a few times with jittered backoff ([Config.MaxRetries]); other 4xx answers
// never are. A request whose outcome is unknown (sent, never answered) is
// retried with the same refresh token on purpose: servers with a reuse grace
// period answer the retry with the rotation they already made, so the token
// is recovered; on strict servers the spent token is dead whether or not it
// is sent again, and the retry only brings the invalid_grant sooner. No grant
// is sent twice for any other reason.
//
// Nothing storms. A token endpoint that refuses the client itself
// (invalid_client, unauthorized_client) is asked again only after a minute;
// until then callers get the same *RetrieveError at once. A refresh token
// rejected with invalid_grant is never sent again by that Source. A 401 for
// a token that itself replaced a rejected one less than a minute ago is
// returned as it is, without another refresh. [Stats] counts each request
// not sent (Suppressed).
//
// A refresh that a store with a [Locker] cannot record (a read-only or
// missing folder, a full disk) is not sent: nothing is spent, valid access
// tokens keep being served, and after expiry Token returns the store's
// error.
//
// If saving a new token fails, the token is used anyway (the old refresh
// token is already spent, so it is the only one that works), the failure is
// reported through [Hooks.SaveFailed], the Logger and [Stats], and the save
// is retried in the background until it succeeds or the Source is closed; a
// store with a [Locker] stays locked meanwhile, so that no other process
// spends the replaced refresh token. [Source.Close] tries once more and
// returns the error of a save that did not land.
//
// # Secrets
//
// [Token], [Config], [Source] and the stores print themselves redacted with
// every fmt verb and in slog output, and no error holds an access token,
// refresh token or client secret: a token endpoint's answer is quoted only
// with every credential of the request withheld, however the server echoed
// it. The Token doc says where redaction stops: encoding/json (and so slog's
// JSON handler for a Token nested in a slice, map or struct), and fmt in an
// unexported struct field or for %p of a Token value.
package bearer
