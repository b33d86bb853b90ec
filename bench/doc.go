// Package bench compares bearer's Transport with golang.org/x/oauth2's: the
// cost each adds to a request while the token is valid, and how long callers
// wait when it expires. It lives in its own module so that bearer itself
// never depends on x/oauth2. BENCHMARKS.md in the repository root lists the
// figures and the commands that reproduce them.
package bench
