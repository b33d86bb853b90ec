package bearertest_test

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/tokenkit/bearer/bearertest"
)

// This example refreshes a token with plain net/http and shows that the
// refresh token rotates: the old one is spent, and presenting it again
// revokes the whole family.
func Example() {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()

	g := srv.Issue() // as if a user had just authorized the app

	refresh := func(refreshToken string) (status int, resp map[string]any) {
		body, _ := json.Marshal(map[string]string{
			"grant_type":    "refresh_token",
			"refresh_token": refreshToken,
			"client_id":     bearertest.DefaultClientID,
			"client_secret": bearertest.DefaultClientSecret,
		})
		res, err := srv.Client().Post(srv.TokenURL(), "application/json", bytes.NewReader(body))
		if err != nil {
			panic(err)
		}
		defer res.Body.Close()
		json.NewDecoder(res.Body).Decode(&resp)
		return res.StatusCode, resp
	}

	status, next := refresh(g.RefreshToken)
	fmt.Println(status, next["token_type"], next["expires_in"], next["info"])
	fmt.Println("rotated:", next["refresh_token"] != g.RefreshToken)
	fmt.Println("old alive:", srv.Alive(g.RefreshToken))
	fmt.Println("new alive:", srv.Alive(next["refresh_token"].(string)))

	status, again := refresh(g.RefreshToken)
	fmt.Println(status, again["error"])
	fmt.Println("family alive:", srv.FamilyAlive(g.Family))
	st := srv.Stats()
	fmt.Println("refreshes:", st.Refreshes, "reuses:", st.ReuseAttempts, "revocations:", st.Revocations)
	// Output:
	// 200 Bearer 3600 map[family:f1]
	// rotated: true
	// old alive: false
	// new alive: true
	// 400 invalid_grant
	// family alive: false
	// refreshes: 1 reuses: 1 revocations: 1
}
