// Command bearer keeps an OAuth 2.0 token pair for a script or a person:
// it gets the first token from a person (login), prints a valid access
// token on demand (refreshing and saving the rotated refresh token as
// needed), sends authenticated requests, and demonstrates the bearer
// package against an in-process OpenTicket server.
//
// Install it with
//
//	go install github.com/tokenkit/bearer/cmd/bearer@latest
//
// or try it without installing:
//
//	go run ./cmd/bearer demo
//
// # Usage
//
//	bearer serve     [--addr 127.0.0.1:9400] [--tls [--cert FILE]] [--consent] [--fault SPEC]... [server flags]
//	bearer demo      [-duration 10s] [-workers 8] [-access-lifetime 2s] [-latency 0]
//	bearer login     [--auth-url URL] [--port N] [--no-browser] [--timeout 5m] [--scope S]... [--param K=V]... [--force] [--store FILE] [client flags]
//	bearer login     --device [--device-url URL] [--no-browser] [--timeout 5m] [--scope S]... [--force] [--store FILE] [client flags]
//	bearer token     [--store FILE] [client flags]
//	bearer status    [--store FILE]
//	bearer import    [--store FILE] [--form] [--force] [--token-url URL] [--client-id ID] < response.json
//	bearer exchange  --code C --redirect-uri U [--verifier V] [--force] [--store FILE] [client flags]
//	bearer request   [-X METHOD] [-H 'K: V']... [-d BODY] [--store FILE] [client flags] URL
//	bearer logout    [--revocation-url URL] [--store FILE] [client flags]
//
// serve runs the fake OpenTicket of package bearertest until interrupted:
// token, authorization (approving at once, or with --consent a small
// consent page), device authorization and revocation endpoints, and a
// protected API under /api/. It prints its URLs, the client ID and the
// client secret it accepts (made up for the run, unless --client-secret
// gives one) and an export line for another terminal's environment. --tls
// serves https with a self-signed certificate made at start, printed or
// written to --cert (the export line then sets SSL_CERT_FILE). Its fault
// options are flags: each --fault queues misbehaviour for the next token
// requests, such as --fault status=503,count=3,retry-after=2s or --fault
// consume,reset (the token rotates and the answer is lost).
//
// demo runs concurrent workers through a [bearer.Transport] for a while,
// across several rotations and one revoked access token, and checks that no
// request failed, no refresh token was spent twice and the chain of refresh
// tokens is still alive.
//
// login gets the first token from a person. By default it follows RFC 8252
// for native apps: it listens on 127.0.0.1 (a free port, or --port for a
// server that registers a fixed redirect URI), opens the authorization URL
// (--auth-url or $OAUTH_AUTH_URL, which has no default) with state and a
// PKCE S256 challenge in the user's browser, or prints it with
// --no-browser, waits (--timeout) for the browser to come back to
// http://127.0.0.1:PORT/callback, checks the state, exchanges the code with
// its verifier and stores the token. With --device it uses the device
// authorization grant of RFC 8628 instead (--device-url or
// $OAUTH_DEVICE_AUTH_URL), for a machine without a browser: it shows a code
// and where to enter it, on any device, and polls until the person
// approves. Like import, it never replaces a live token without --force, and
// it checks that before the person is asked anything.
//
// token prints the access token and a newline, nothing else, for
// scripts:
//
//	curl -H "Authorization: Bearer $(bearer token)" https://api.example.com/
//
// status describes what the store holds (type, when it was obtained,
// expiries, whether info is present) without printing a secret. import
// reads the JSON answer of an authorization_code grant (token_type,
// expires_in, access_token, refresh_token, refresh_token_expires_in, info)
// from standard input and stores it, with expiries counted from now
// (--form reads the form-encoded variant); an answer without a refresh
// token is refused, since it could not be kept fresh. exchange performs
// that grant itself with an authorization code and stores the result.
//
// import and exchange never replace a stored token whose refresh token is
// still live (it may be the only way back into the grant; an import run
// again from shell history would put a spent refresh token in its place):
// they say what is stored, without its secrets, and exit with status 1,
// unless --force is given. exchange checks before it spends the code.
//
// request sends one authenticated request and copies the response body to
// standard output.
//
// logout revokes the stored refresh token at the server's revocation
// endpoint (RFC 7009; --revocation-url or $OAUTH_REVOCATION_URL, which has
// no default) and then clears the store. If the server cannot be reached
// the store is left as it was (exit status 4): run it again. With nothing
// stored it says so and exits with status 0.
//
// Every subcommand explains its flags with -h.
//
// # Store
//
// The token lives in one JSON file with mode 0600, written crash-safe by
// [bearer.FileStore], so the rotated refresh token survives a crash and
// processes sharing the file take turns to refresh. --store names it; the
// default is $XDG_CONFIG_HOME/bearer/token.json, or
// $HOME/.config/bearer/token.json when XDG_CONFIG_HOME is unset (on Windows,
// %AppData%\bearer\token.json). import and exchange create its folder
// (mode 0700); before that, every command says that no token is stored.
// The file holds the refresh token in clear: keep it private.
//
// # Client flags
//
// login, token, exchange, request and logout talk to the token endpoint:
//
//	--token-url URL        the token endpoint (default $OAUTH_TOKEN_URL, else OpenTicket's, bearer.DefaultTokenURL)
//	--client-id ID         the client ID (default $OAUTH_CLIENT_ID)
//	--client-secret SECRET the client secret (default $OAUTH_CLIENT_SECRET)
//	--form                 send form-encoded token requests instead of JSON
//	--basic                send the client credentials with HTTP Basic auth
//	-v                     log each request to the server as it happens: attempt, outcome,
//	                       each wait before a retry (standard error; never a secret)
//
// Prefer the environment for the secret: command lines are visible to other
// users of the machine.
//
// Without -v, token and request say nothing while they work, unless a wait
// lasts over two seconds: then one line on standard error says what they
// wait for (the token endpoint, another process holding the store's lock,
// or the request's own server).
//
// A stored token records the token endpoint and client it was issued to
// (import records the ones its --token-url and --client-id, or the
// environment, name). A command configured for another endpoint or client
// refuses to refresh it, names both, sends nothing, and exits with status 2.
//
// # Exit status
//
//	0  success
//	1  failure: the request failed or was answered with a non-2xx status,
//	   the demo found a broken invariant, the store could not be read or
//	   written, a live token is stored and --force was not given, login's
//	   redirect brought another state than the login's (a stale tab or a
//	   forged redirect: nothing is exchanged), or another error
//	2  usage error: unknown subcommand, bad flag or argument, or a
//	   configuration the library refuses (such as a token sent over plain
//	   http to a host that is not loopback, or a stored token issued to
//	   another token endpoint or client than the one configured)
//	3  reauthorization needed: no token is stored, or the refresh token
//	   expired, was revoked or was already used; or, for login and
//	   exchange, the person denied the authorization or the authorization
//	   code was rejected (expired, or used already); run bearer login
//	4  temporarily unavailable: the token endpoint (or, for logout, the
//	   revocation endpoint) could not be reached, timed out, or answered
//	   5xx or 429; trying again later may succeed, and the stored token is
//	   unchanged
//	5  login timed out: the browser did not come back, or the device code
//	   was not approved, in time; nothing was stored
//
// Errors go to standard error as a plain explanation. Nothing bearer prints
// holds the refresh token or the client secret, and only token prints the
// access token.
package main
