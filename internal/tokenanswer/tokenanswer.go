// Package tokenanswer reads a token endpoint's successful answer into a
// bearer.Token with package bearer's own parser, for the bearer command's
// import, without making it part of bearer's API. Package bearer sets
// Parse when it is initialised.
package tokenanswer

import "time"

// Parse parses an answer as the authorization_code grant returns it into a
// *bearer.Token, with Expiry and RefreshExpiry computed from now. The body
// is JSON unless contentType says application/x-www-form-urlencoded. It
// applies the checks a refresh applies; an OAuth error answer is a
// *bearer.RetrieveError. Its errors quote no token.
var Parse func(body []byte, contentType string, now time.Time) (any, error)
