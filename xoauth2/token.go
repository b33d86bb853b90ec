package xoauth2

import (
	"encoding/json"
	"errors"

	"github.com/tokenkit/bearer"
	"golang.org/x/oauth2"
)

// infoKey is the token response field that bearer keeps as Token.Info.
const infoKey = "info"

// toOAuth2 converts t into a new oauth2.Token without its refresh token:
// the bearer Source alone may spend that (x/oauth2 code handed the token
// could refresh with it, and a single-use token spent twice revokes the
// grant), and an oauth2.Token prints it in clear.
func toOAuth2(t *bearer.Token) *oauth2.Token {
	ot := &oauth2.Token{
		AccessToken: t.AccessToken,
		TokenType:   t.TokenType,
		Expiry:      t.Expiry,
	}
	if len(t.Info) == 0 {
		return ot
	}
	// Decoded as x/oauth2 decodes a JSON token response, so Extra("info")
	// has the same shape whichever library fetched the token.
	var info any
	if err := json.Unmarshal(t.Info, &info); err != nil {
		return ot
	}
	return ot.WithExtra(map[string]any{infoKey: info})
}

// fromOAuth2 converts t into a new bearer.Token.
func fromOAuth2(t *oauth2.Token) *bearer.Token {
	return &bearer.Token{
		AccessToken:  t.AccessToken,
		TokenType:    t.TokenType,
		RefreshToken: t.RefreshToken,
		Expiry:       t.Expiry,
		Info:         info(t.Extra(infoKey)),
	}
}

// info returns the "info" extra v of an oauth2.Token as raw JSON, or nil.
func info(v any) json.RawMessage {
	switch v := v.(type) {
	case nil:
		return nil
	case string:
		// A form-encoded response carries the object as a JSON string.
		if json.Valid([]byte(v)) {
			return json.RawMessage(v)
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}

// convertError makes an error of an x/oauth2 source read like bearer's own:
// a token endpoint's answer becomes a *bearer.RetrieveError, so that
// errors.Is(err, bearer.ErrReauthorize) reports an invalid_grant, and the
// answer's body, which x/oauth2's error prints, stays out of the message.
// The *oauth2.RetrieveError remains reachable with errors.As.
func convertError(err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return &sourceError{err}
	}
	be := &bearer.RetrieveError{
		ErrorCode:        re.ErrorCode,
		ErrorDescription: re.ErrorDescription,
		ErrorURI:         re.ErrorURI,
		Err:              hiddenError{re},
	}
	if re.Response != nil {
		be.StatusCode = re.Response.StatusCode
	}
	return be
}

// sourceError is a failure of an x/oauth2 source that is not an answer of
// the token endpoint, such as a transport error.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return "xoauth2: " + e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

// hiddenError wraps an *oauth2.RetrieveError without printing it: its
// message holds the raw response body.
type hiddenError struct{ err *oauth2.RetrieveError }

func (e hiddenError) Error() string { return "from golang.org/x/oauth2" }
func (e hiddenError) Unwrap() error { return e.err }
