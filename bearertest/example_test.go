package bearertest_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

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

// This example loses a refresh answer after the server has rotated the
// token, the failure that forces a user to authorize an app again.
func ExampleServer_InjectFault() {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	g := srv.Issue()

	refresh := func() (int, error) {
		form := url.Values{
			"grant_type":    {"refresh_token"},
			"refresh_token": {g.RefreshToken},
			"client_id":     {bearertest.DefaultClientID},
			"client_secret": {bearertest.DefaultClientSecret},
		}
		res, err := srv.Client().PostForm(srv.TokenURL(), form)
		if err != nil {
			return 0, err
		}
		defer res.Body.Close()
		_, err = io.ReadAll(res.Body)
		return res.StatusCode, err
	}

	// A gateway error before the request reaches the server: nothing lost.
	srv.InjectFault(bearertest.Fault{Status: http.StatusBadGateway, Body: "<html>Bad Gateway</html>"})
	status, _ := refresh()
	fmt.Println(status, "alive:", srv.Alive(g.RefreshToken))

	// The connection drops after the server rotated the token.
	srv.InjectFault(bearertest.Fault{Reset: true, Consume: true})
	_, err := refresh()
	fmt.Println(errors.Is(err, io.ErrUnexpectedEOF), "alive:", srv.Alive(g.RefreshToken))

	head, _ := srv.Head(g.Family)
	fmt.Println("server head differs:", head.RefreshToken != g.RefreshToken)
	// Output:
	// 502 alive: true
	// true alive: false
	// server head differs: true
}
