package bearer

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// Config describes an OAuth 2.0 client and how its tokens are refreshed.
// The zero value talks to OpenTicket with every default. A Config prints
// itself with the client secret redacted, where a [Token] does (see its
// doc for where that stops).
type Config struct {
	// TokenURL is the token endpoint; "" means [DefaultTokenURL]
	// (OpenTicket). It must be https unless the host is loopback or
	// AllowInsecureHTTP is set.
	TokenURL string
	// AuthURL is the authorization endpoint that [Config.AuthCodeURL]
	// sends a person to, with any extra parameters the server wants in its
	// query. It has no default: "" makes AuthCodeURL fail.
	AuthURL string
	// DeviceAuthURL is the device authorization endpoint (RFC 8628) of
	// [Config.DeviceAuth]. It has no default: "" makes DeviceAuth fail.
	DeviceAuthURL string
	// RevocationURL is the revocation endpoint (RFC 7009) that
	// [Source.Revoke] sends the refresh token to. It has no default: ""
	// makes Revoke fail and send nothing.
	RevocationURL string
	// ClientID identifies the client to the token endpoint. It is sent
	// as given, "" included; servers that require one refuse "" with an
	// invalid_client error.
	ClientID string
	// ClientSecret authenticates a confidential client. "" means a public
	// client: with AuthInBody no client_secret is sent, with AuthBasic the
	// password is empty. It never appears in fmt or slog output.
	ClientSecret string
	// Encoding is how request bodies are encoded; the zero value is JSON.
	Encoding Encoding
	// HTTPClient is used for the token endpoint only; nil means a client
	// with a 30 s timeout. Its transport, TLS settings and proxy are used
	// as they are; redirects are never followed.
	HTTPClient *http.Client

	// AuthStyle is how the client authenticates; zero sends the
	// credentials in the body.
	AuthStyle AuthStyle
	// AllowInsecureHTTP allows a plain http TokenURL on a host that is not
	// loopback. Credentials then cross the network in clear text.
	AllowInsecureHTTP bool

	// ClientCredentials makes the Source fetch tokens with the
	// client_credentials grant (machine to machine) instead of refreshing:
	// a new token is fetched when the old one expires. Scopes go with it.
	ClientCredentials bool
	// Scopes are sent as "scope" with the client_credentials grant and in
	// the authorization URL; nil sends none.
	Scopes []string

	// Leeway treats a token as expired this long before its Expiry, for
	// clock skew and request time. Zero means a tenth of the token's
	// lifetime, at most 10 s.
	Leeway time.Duration
	// RefreshAhead starts one background refresh this long before
	// Expiry, while callers keep getting the current token. Zero means a
	// quarter of the token's lifetime, at most 5 minutes; negative turns
	// refreshing ahead off.
	RefreshAhead time.Duration
	// RefreshTimeout bounds one refresh, retries and store access
	// included. It runs detached from callers' contexts. Zero means 30 s.
	RefreshTimeout time.Duration
	// MaxRetries is how often a refresh request is repeated after a
	// transport error, a 5xx or a 429. Zero means 3; negative means none.
	MaxRetries int
	// RetryBackoff is the first wait between attempts, doubling after
	// each and jittered. Zero means 250 ms. Retry-After overrides it.
	RetryBackoff time.Duration

	// Now is the clock; nil means time.Now. Tests inject a fake one.
	Now func() time.Time
	// Logger receives debug lines for refreshes and for each request to
	// the server as it happens (each attempt, its outcome, each wait
	// before a retry), and warnings for failures, never a secret; nil
	// means silent.
	Logger *slog.Logger
	// Hooks are called on the events of a Source; nil fields mean none.
	Hooks Hooks
}

// String describes c with the client secret redacted.
func (c Config) String() string {
	return fmt.Sprintf("bearer.Config{TokenURL:%q ClientID:%q ClientSecret:%s Encoding:%s AuthStyle:%d ClientCredentials:%t}",
		c.tokenURL(), c.ClientID, redact(c.ClientSecret), encodingName(c.Encoding), c.AuthStyle, c.ClientCredentials)
}

// Format makes every fmt verb print the redacted form.
func (c Config) Format(f fmt.State, verb rune) { f.Write([]byte(c.String())) }

// LogValue makes slog print c redacted.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("token_url", c.tokenURL()),
		slog.String("client_id", c.ClientID),
		slog.String("client_secret", redact(c.ClientSecret)),
	)
}

// Hooks are callbacks for observability. They run synchronously on the
// goroutine doing the work, so they must be quick and must not call back
// into the Source. A nil field means none.
//
// The ctx they get carries the values (not the cancellation) of the caller
// whose call started the work, so a trace span started from it is a child
// of the caller's span; work started in the background (refreshing ahead,
// retrying a save) gets context.Background().
type Hooks struct {
	// RefreshStarted is called before a token request is sent.
	RefreshStarted func(ctx context.Context)
	// RefreshFinished is called after it, with its duration and outcome,
	// once the new token is saved (or its save failed) and published.
	RefreshFinished func(ctx context.Context, d time.Duration, err error)
	// Adopted is called when a token saved by another process or replica
	// is taken from the store instead of refreshing.
	Adopted func(ctx context.Context)
	// TokenRejected is called when Refresh reports the current token
	// rejected, such as after a 401 (the Transport then retries).
	TokenRejected func(ctx context.Context)
	// SaveFailed is called when a new token could not be saved. The token
	// is used anyway and saving is retried in the background.
	SaveFailed func(ctx context.Context, err error)
	// Reauthorize is called when a refresh fails with ErrReauthorize.
	Reauthorize func(ctx context.Context, err error)
}

// Stats is a snapshot of a Source's counters, for metrics.
type Stats struct {
	Refreshes    int64 // successful token requests
	Failures     int64 // failed token requests, retries included in one
	Adopted      int64 // tokens taken from the store, saved by others
	Rejected     int64 // Refresh calls that found the current token rejected
	SaveFailures int64 // failed saves, retries included
	// Suppressed counts token requests not sent because the token
	// endpoint's answer is known already: a refresh token it rejected
	// (never sent again) or a refusal of the client (invalid_client,
	// unauthorized_client), repeated to callers for a minute.
	Suppressed  int64
	LastRefresh time.Time // when the last successful token request ended
}
