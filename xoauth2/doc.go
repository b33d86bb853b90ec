// Package xoauth2 converts between [bearer.TokenSource] and golang.org/x/oauth2's
// [oauth2.TokenSource], so that either library's clients and transports can use
// the other's tokens.
//
// It is a module of its own, so that the bearer module never depends on
// golang.org/x/oauth2.
//
// # From bearer to x/oauth2
//
// [TokenSource] hands the tokens of a [bearer.Source] (refreshed ahead of
// expiry, persisted before use, one refresh per expiry) to code written for
// x/oauth2, such as oauth2.NewClient or a Google API client option:
//
//	src := bearer.NewSource(cfg, bearer.NewFileStore("token.json"))
//	defer src.Close()
//	client := oauth2.NewClient(ctx, xoauth2.TokenSource(ctx, src))
//
// An [oauth2.Transport] does not refresh after a 401; a [bearer.Transport]
// over the same Source does.
//
// # From x/oauth2 to bearer
//
// [FromOAuth2] lets a [bearer.Transport] take its tokens from any x/oauth2
// source, such as a clientcredentials.Config or a Google credential, so that
// the request gets bearer's handling: the token kept to the origin of a
// redirect chain, no token over plain http, the request body closed on every
// path, and one retry after a 401 when the source has a newer token:
//
//	cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: tokenURL}
//	client := &http.Client{Transport: &bearer.Transport{Source: xoauth2.FromOAuth2(cc.TokenSource(ctx))}}
//
// Pass a source that caches its token until it expires, as those of
// oauth2.Config, clientcredentials.Config and oauth2.ReuseTokenSource do:
// a [bearer.Transport] asks its source for a token on every request.
//
// # Tokens
//
// AccessToken, TokenType and Expiry are copied both ways; RefreshToken only
// from x/oauth2 to bearer. The oauth2.Token that [TokenSource] returns has
// no refresh token: the bearer Source must stay the only one that spends
// it, since a single-use refresh token spent twice revokes the grant, and
// an oauth2.Token prints it in clear.
// A [bearer.Token]'s Info becomes the decoded "info" extra of the
// [oauth2.Token] ([oauth2.Token.Extra]("info")), and the "info" extra of an
// oauth2.Token, as x/oauth2 decodes it from a JSON or form-encoded token
// response, becomes Info. x/oauth2 keeps no expiry for the refresh token, so
// a converted token's RefreshExpiry is zero (unknown), and an
// [oauth2.Token]'s ExpiresIn is left zero: Expiry is what both libraries
// read.
package xoauth2
