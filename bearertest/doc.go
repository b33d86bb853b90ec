// Package bearertest provides an in-process OAuth 2.0 token server for tests,
// in the manner of net/http/httptest.
//
// A [Server] listens on a loopback address and speaks the OpenTicket dialect
// of RFC 6749: POST {URL}/tokens with a JSON or form-encoded body, client
// credentials in the body or in HTTP Basic auth, and JSON token responses
// carrying token_type, expires_in, access_token, refresh_token,
// refresh_token_expires_in and info. Under {URL}/api/ it serves a protected
// API that accepts only live access tokens.
//
// It also plays the parts a person plays: an authorization endpoint
// ({URL}/authorize, [Server.AuthURL]) that approves a well-formed request at
// once, or shows a consent page ([Config.Consent]), and redirects with a
// single-use code bound to its PKCE challenge; a device authorization
// endpoint (RFC 8628, [Server.DeviceAuthURL]) with its verification page,
// polling interval and slow_down; and a revocation endpoint (RFC 7009,
// [Server.RevocationURL]) that kills the family of the token it is given.
// A test plays the browser with an http.Client that follows redirects.
//
// [NewUnstartedServer] and [Server.Handler] serve all of it from a mux or a
// server of your own, and [Server.StartTLS] over https; the bearer
// command's serve runs it outside tests.
//
// The package imports nothing but the standard library, so that any package,
// including the root bearer package's internal tests, can use it.
//
// # Quick start
//
//	srv := bearertest.NewServer(bearertest.Config{})
//	defer srv.Close()
//	g := srv.Issue() // as if a user had just authorized the app
//	// Configure the client under test with srv.TokenURL(),
//	// bearertest.DefaultClientID, bearertest.DefaultClientSecret and g.
//
// # Rotation and families
//
// Refresh tokens are single use: every successful refresh returns a new pair
// and spends the old refresh token. Each authorization ([Server.Issue] or an
// authorization_code exchange) starts a family; the refresh tokens descending
// from it form a chain whose live end is the family's head ([Server.Head]).
// Presenting a spent refresh token again is treated as theft: the server
// answers invalid_grant and, unless [Config.Lenient] is set, revokes the whole
// family, killing every access and refresh token in it. [Config.ReuseGrace]
// models servers that forgive a retry shortly after the rotation.
//
// # Faults
//
// [Server.InjectFault] queues misbehaviour for the next token requests:
// error statuses, slow or trickled answers, truncated or reset responses,
// huge bodies, and answers lost after the server has already rotated the
// token ([Fault.Consume]), which is how a client loses a refresh token in
// the field.
//
// # Time
//
// Token lifetimes are measured with [Config.Now], so tests can expire tokens
// with a fake clock. Latency, delays and trickling use real time.
//
// # Concurrency
//
// A Server is safe for concurrent use by multiple goroutines. [Server.Stats]
// counters let tests assert how many refreshes a client performed.
package bearertest
