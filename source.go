package bearer

import (
	"context"
	"log/slog"
	"net/http"
	"time"
)

// TokenSource supplies tokens. [Source] is the implementation that
// refreshes and persists; a [Transport] also accepts any other.
type TokenSource interface {
	Token(ctx context.Context) (*Token, error)
}

// Config describes an OAuth 2.0 client and how its tokens are refreshed.
type Config struct {
	TokenURL     string
	ClientID     string
	ClientSecret string
	Encoding     Encoding
	HTTPClient   *http.Client
	Now          func() time.Time
	Logger       *slog.Logger
}

// Source is an auto-refreshing TokenSource.
type Source struct {
	cfg   Config
	store Store
}

// NewSource returns a Source.
func NewSource(cfg Config, store Store) *Source { return &Source{cfg: cfg, store: store} }

// Token returns a valid token.
func (s *Source) Token(ctx context.Context) (*Token, error) { return nil, ErrNoToken }

// Refresh refreshes if rejected is still current.
func (s *Source) Refresh(ctx context.Context, rejected *Token) (*Token, error) {
	return nil, ErrNoToken
}
