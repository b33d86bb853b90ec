package xoauth2

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"

	"github.com/tokenkit/bearer"
	"golang.org/x/oauth2"
)

// TokenSource returns an [oauth2.TokenSource] that takes its tokens from src,
// for code written for golang.org/x/oauth2 such as [oauth2.NewClient].
//
// Because [oauth2.TokenSource.Token] takes no context, ctx is kept and
// passed to every src.Token call, as [oauth2.Config.TokenSource] keeps its
// ctx: once ctx ends every Token call fails. Pass a context that lives as
// long as the returned source, such as context.Background(). The values of
// ctx reach src, and so [bearer.Hooks].
//
// Errors of src are returned wrapped, so errors.Is(err,
// [bearer.ErrReauthorize]) still works, also on the error of an
// [http.Client] whose [oauth2.Transport] called Token.
//
// The returned source does not cache tokens beyond what src does; with a
// [bearer.Source] none is needed, and its tokens need no
// [oauth2.ReuseTokenSource]. It converts each token of src once. It is safe
// for concurrent use by multiple goroutines if src is. The tokens it returns
// are shared and must not be modified. src must not be nil.
func TokenSource(ctx context.Context, src bearer.TokenSource) oauth2.TokenSource {
	return &toSource{ctx: ctx, src: src}
}

// toSource is the oauth2.TokenSource that TokenSource returns.
type toSource struct {
	ctx  context.Context
	src  bearer.TokenSource
	last atomic.Pointer[conversion[*bearer.Token, *oauth2.Token]]
}

// conversion is a token and its converted form. Sources return the same
// token pointer until they refresh, so one conversion serves every call
// until then, and the caller gets a stable pointer too (bearer.Transport
// caches its header by pointer).
type conversion[From, To any] struct {
	from From
	to   To
}

// Token implements [oauth2.TokenSource].
func (s *toSource) Token() (*oauth2.Token, error) {
	t, err := s.src.Token(s.ctx)
	if err != nil {
		return nil, &sourceError{err}
	}
	if c := s.last.Load(); c != nil && c.from == t {
		return c.to, nil
	}
	ot := toOAuth2(t)
	s.last.Store(&conversion[*bearer.Token, *oauth2.Token]{t, ot})
	return ot, nil
}

// String describes s without its source, whose fields hold the client
// secret and tokens.
func (s *toSource) String() string { return "xoauth2.TokenSource{" + fmt.Sprintf("%T", s.src) + "}" }

// Format makes every fmt verb print String.
func (s *toSource) Format(f fmt.State, verb rune) { io.WriteString(f, s.String()) }

// LogValue makes slog print s as String does.
func (s *toSource) LogValue() slog.Value { return slog.StringValue(s.String()) }

// FromOAuth2 returns a [bearer.TokenSource] that takes its tokens from ts,
// so that a [bearer.Transport] can use the tokens of any x/oauth2 source,
// such as a clientcredentials.Config's.
//
// A [bearer.Transport] calls its source once per request: ts should cache
// its token until expiry, as the sources of [oauth2.Config.TokenSource],
// clientcredentials.Config.TokenSource and [oauth2.ReuseTokenSource] do.
// A source that fetches on every call fetches on every request.
//
// [oauth2.TokenSource.Token] takes no context, so the ctx of Token and
// Refresh is checked only before ts is called; requests to the token
// endpoint run on the context ts was built with.
//
// The returned source has the Refresh method that bearer.Transport calls
// after a 401, but x/oauth2 sources cannot be told that a token was
// rejected: Refresh asks ts again, and only if ts has a newer token by then
// (because the rejected one expired, or another holder refreshed) does the
// Transport send the request again with it. Otherwise Refresh returns the
// rejected token, and the Transport returns the 401 answer unchanged.
//
// An error answer of the token endpoint is returned as a
// *[bearer.RetrieveError], so that errors.Is(err, [bearer.ErrReauthorize])
// reports an invalid_grant; the *[oauth2.RetrieveError] stays reachable with
// errors.As, but its response body is not printed. Other errors are
// wrapped.
//
// The returned source is safe for concurrent use by multiple goroutines if
// ts is, as x/oauth2's sources are. The tokens it returns are shared and
// must not be modified. ts must not be nil.
func FromOAuth2(ts oauth2.TokenSource) bearer.TokenSource {
	return &fromSource{ts: ts}
}

// fromSource is the bearer.TokenSource that FromOAuth2 returns.
type fromSource struct {
	ts   oauth2.TokenSource
	last atomic.Pointer[conversion[*oauth2.Token, *bearer.Token]]
}

// Token implements [bearer.TokenSource].
func (s *fromSource) Token(ctx context.Context) (*bearer.Token, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ot, err := s.ts.Token()
	if err != nil {
		return nil, convertError(err)
	}
	if c := s.last.Load(); c != nil && c.from == ot {
		return c.to, nil
	}
	t := fromOAuth2(ot)
	s.last.Store(&conversion[*oauth2.Token, *bearer.Token]{ot, t})
	return t, nil
}

// String describes s without its source, whose fields hold tokens.
func (s *fromSource) String() string { return "xoauth2.FromOAuth2{" + fmt.Sprintf("%T", s.ts) + "}" }

// Format makes every fmt verb print String.
func (s *fromSource) Format(f fmt.State, verb rune) { io.WriteString(f, s.String()) }

// LogValue makes slog print s as String does.
func (s *fromSource) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Refresh returns the token that ts holds now, which is rejected itself
// when ts has no newer one: x/oauth2 sources cannot be made to refresh.
// A bearer.Transport retries a request after a 401 only with a token whose
// AccessToken differs from the rejected one.
func (s *fromSource) Refresh(ctx context.Context, rejected *bearer.Token) (*bearer.Token, error) {
	return s.Token(ctx)
}
