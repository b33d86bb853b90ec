package bearertest

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"time"
)

// DefaultClientID and DefaultClientSecret are the client credentials a
// [Server] accepts when [Config] leaves them empty.
const (
	DefaultClientID     = "test-client"
	DefaultClientSecret = "test-secret"
)

// Config configures a [Server]. The zero Config is a strict server with
// default credentials and lifetimes, answering JSON without delay.
type Config struct {
	// ClientID and ClientSecret are the only client credentials accepted.
	// Empty means DefaultClientID and DefaultClientSecret.
	ClientID     string
	ClientSecret string

	// AccessLifetime is how long an access token lives. Zero means one hour.
	AccessLifetime time.Duration
	// RefreshLifetime is how long a refresh token lives. Zero means 24 hours.
	RefreshLifetime time.Duration

	// Latency is waited before every token endpoint request is processed.
	// A request whose client gives up during the wait is not processed.
	Latency time.Duration

	// Lenient stops the reuse of a spent refresh token from revoking its
	// family. The reuse is still answered with invalid_grant.
	Lenient bool
	// ReuseGrace, if positive, is how long after a rotation the spent
	// refresh token may be presented again and be answered with the very
	// pair that was already issued for it, provided that pair is still the
	// family's head. Zero means no grace.
	ReuseGrace time.Duration

	// DeviceInterval is the polling interval the device authorization
	// endpoint asks for (sent in whole seconds, at least one); polling
	// sooner is answered slow_down, which adds five seconds. Zero means
	// five seconds, the default of RFC 8628.
	DeviceInterval time.Duration

	// Consent makes the authorization endpoint answer a GET with a small
	// consent page, for a person at a browser; false approves every
	// well-formed request at once, as a test wants.
	Consent bool

	// FormResponses makes the token endpoint answer
	// application/x-www-form-urlencoded (with info as a JSON string)
	// instead of JSON.
	FormResponses bool

	// Now is the clock used for token lifetimes. Nil means time.Now.
	Now func() time.Time
}

// Server is an OAuth 2.0 token server and protected API listening on a
// loopback address. Create one with [NewServer] and stop it with
// [Server.Close].
//
// A Server is safe for concurrent use by multiple goroutines.
type Server struct {
	// URL is the base URL of the form http://127.0.0.1:port (https after
	// StartTLS), with no trailing slash; "" until the server is started.
	URL string

	cfg       Config
	handler   http.Handler
	hs        *httptest.Server // nil until started
	done      chan struct{}    // closed by Close; every wait selects on it
	closeOnce sync.Once

	// writers counts fault writers in progress; tests wait on it to see
	// that a writer stopped when its client went away.
	writers sync.WaitGroup

	mu       sync.Mutex // guards the fields below
	families map[string]*family
	refresh  map[string]*refreshToken
	access   map[string]*accessToken
	codes    map[string]*authCode
	devices  map[string]*deviceCode // by device code
	faults   []Fault                // pending, in injection order; Count is what remains
	stats    Stats
	nfam     int
}

// NewServer starts a Server on 127.0.0.1 configured by cfg. The caller must
// call [Server.Close] when done.
func NewServer(cfg Config) *Server {
	s := NewUnstartedServer(cfg)
	s.Start()
	return s
}

// NewUnstartedServer returns a Server that does not listen yet, as
// httptest.NewUnstartedServer does: call [Server.Start] or
// [Server.StartTLS], or serve its [Server.Handler] yourself. The caller
// must call [Server.Close] when done.
func NewUnstartedServer(cfg Config) *Server {
	if cfg.ClientID == "" {
		cfg.ClientID = DefaultClientID
	}
	if cfg.ClientSecret == "" {
		cfg.ClientSecret = DefaultClientSecret
	}
	if cfg.AccessLifetime <= 0 {
		cfg.AccessLifetime = time.Hour
	}
	if cfg.RefreshLifetime <= 0 {
		cfg.RefreshLifetime = 24 * time.Hour
	}
	if cfg.DeviceInterval <= 0 {
		cfg.DeviceInterval = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{
		cfg:      cfg,
		done:     make(chan struct{}),
		families: make(map[string]*family),
		refresh:  make(map[string]*refreshToken),
		access:   make(map[string]*accessToken),
		codes:    make(map[string]*authCode),
		devices:  make(map[string]*deviceCode),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/tokens", s.serveToken)
	mux.HandleFunc("/authorize", s.serveAuthorize)
	mux.HandleFunc("/device", s.serveDevice)
	mux.HandleFunc("/device/verify", s.serveVerify)
	mux.HandleFunc("/revoke", s.serveRevoke)
	mux.HandleFunc("/api/", s.serveAPI)
	s.handler = mux
	return s
}

// Handler returns the server's handler, for a mux of your own or a server
// you run: its paths are /tokens, /authorize, /device, /device/verify,
// /revoke and /api/, as the URL methods name them. The absolute URLs in its
// answers are built from each request's Host.
func (s *Server) Handler() http.Handler { return s.handler }

// Start starts the server on a free port of 127.0.0.1 and sets URL. It
// panics if the server was started already.
func (s *Server) Start() { s.start(false) }

// StartTLS starts the server with TLS, using httptest's certificate for
// 127.0.0.1, which [Server.Client] trusts, and sets URL to https.
func (s *Server) StartTLS() { s.start(true) }

func (s *Server) start(tls bool) {
	if s.hs != nil {
		panic("bearertest: Server started twice")
	}
	hs := httptest.NewUnstartedServer(s.handler)
	// Clients that hang up mid-fault make net/http log; tests want quiet.
	hs.Config.ErrorLog = log.New(io.Discard, "", 0)
	if tls {
		hs.StartTLS()
	} else {
		hs.Start()
	}
	s.hs = hs
	s.URL = hs.URL
}

// String describes s by its URL; the tokens it issued and the client
// secret are not shown.
func (s *Server) String() string { return "bearertest.Server{URL:" + strconv.Quote(s.URL) + "}" }

// GoString is String.
func (s *Server) GoString() string { return s.String() }

// Format makes every fmt verb print String.
func (s *Server) Format(f fmt.State, verb rune) { io.WriteString(f, s.String()) }

// LogValue makes slog print s as String does.
func (s *Server) LogValue() slog.Value { return slog.StringValue(s.String()) }

// String describes c with the client secret redacted.
func (c Config) String() string {
	secret := `""`
	if c.ClientSecret != "" {
		secret = "REDACTED"
	}
	return fmt.Sprintf("bearertest.Config{ClientID:%q ClientSecret:%s AccessLifetime:%v RefreshLifetime:%v Lenient:%t ReuseGrace:%v FormResponses:%t}",
		c.ClientID, secret, c.AccessLifetime, c.RefreshLifetime, c.Lenient, c.ReuseGrace, c.FormResponses)
}

// GoString is String.
func (c Config) GoString() string { return c.String() }

// Format makes every fmt verb print String.
func (c Config) Format(f fmt.State, verb rune) { io.WriteString(f, c.String()) }

// LogValue makes slog print c as String does.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// TokenURL returns the token endpoint, URL + "/tokens".
func (s *Server) TokenURL() string { return s.URL + "/tokens" }

// AuthURL returns the authorization endpoint, URL + "/authorize". It
// approves a well-formed request at once (see [Config.Consent]) by
// redirecting to its redirect_uri with a code and the state; a POST with
// decision=deny and the same parameters denies it (error=access_denied).
// Codes are single use and live ten minutes.
func (s *Server) AuthURL() string { return s.URL + "/authorize" }

// DeviceAuthURL returns the device authorization endpoint (RFC 8628),
// URL + "/device". Its verification URI is URL + "/device/verify", where a
// GET with the user_code approves the device at once (or shows the consent
// page with [Config.Consent]) and a POST with decision=deny denies it.
func (s *Server) DeviceAuthURL() string { return s.URL + "/device" }

// RevocationURL returns the revocation endpoint (RFC 7009), URL +
// "/revoke". Revoking a refresh or access token revokes its whole family.
func (s *Server) RevocationURL() string { return s.URL + "/revoke" }

// APIURL returns the root of the protected API, URL + "/api/". Any path
// below it answers 200 to a request carrying a live access token.
// The path /api/scope-required answers 401 with
// error="insufficient_scope" even then.
func (s *Server) APIURL() string { return s.URL + "/api/" }

// Client returns an HTTP client configured for the server (it trusts the
// certificate of StartTLS). Close closes its idle connections. An unstarted
// server's is http.DefaultClient.
func (s *Server) Client() *http.Client {
	if s.hs == nil {
		return http.DefaultClient
	}
	return s.hs.Client()
}

// Certificate returns the certificate of a server started with StartTLS,
// and nil otherwise.
func (s *Server) Certificate() *x509.Certificate {
	if s.hs == nil || s.hs.TLS == nil {
		return nil
	}
	return s.hs.Certificate()
}

// Close stops fault writers and delays in progress, closes all client
// connections and shuts the server down, blocking until every request
// handler has returned. Close may be called more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		if s.hs == nil {
			return
		}
		// Active connections are closed too, so that a handler blocked in
		// a write to a client that stopped reading cannot hold Close up.
		s.hs.CloseClientConnections()
		s.hs.Close()
	})
}

// Stats is a snapshot of a [Server]'s counters.
type Stats struct {
	TokenRequests     int // requests to the token endpoint, of any kind
	Refreshes         int // refresh_token grants that rotated a token
	Exchanges         int // successful authorization_code grants
	ClientCredentials int // successful client_credentials grants
	Authorizations    int // authorization requests and device codes approved
	Denials           int // authorization requests and device codes denied
	DeviceCodes       int // device codes issued by the device authorization endpoint
	DeviceGrants      int // device_code grants that issued a token
	SlowDowns         int // device_code grants answered slow_down
	ReuseAttempts     int // spent refresh tokens presented again
	GraceReuses       int // reuses answered within ReuseGrace with the already issued pair
	Revocations       int // families revoked, by reuse detection, RevokeFamily or the revocation endpoint
	RevokeRequests    int // requests to the revocation endpoint
	InvalidGrants     int // invalid_grant answers
	InvalidClients    int // invalid_client answers
	InvalidRequests   int // invalid_request and unsupported_grant_type answers
	Faults            int // token requests answered by an injected fault
	APIRequests       int // requests to the protected API
	APIRejected       int // protected API requests answered 401
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// sleep waits for d, reporting false if ctx ends or the server closes first.
func (s *Server) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.done:
		return false
	}
}

// newToken returns a random, URL-safe token with the given prefix.
func newToken(prefix string) string {
	return prefix + rand.Text()
}
