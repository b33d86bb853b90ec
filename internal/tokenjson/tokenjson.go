// Package tokenjson is the JSON form in which bearer's stores keep a
// bearer.Token at rest (FileStore's token field, redisstore's value). The
// sibling modules of this repo use it without it being part of bearer's
// API; package bearer sets the functions when it is initialised.
package tokenjson

// Marshal returns the JSON form of a *bearer.Token. It holds the secrets
// in clear: seal it with a bearer.Codec to keep them from anyone who can
// read the storage.
var Marshal func(t any) ([]byte, error)

// Unmarshal parses what Marshal produced into a *bearer.Token, with an
// error that quotes none of the input.
var Unmarshal func(b []byte) (any, error)
