module github.com/tokenkit/bearer/xoauth2

go 1.25.0

require (
	github.com/tokenkit/bearer v0.1.0
	go.uber.org/goleak v1.3.0
	golang.org/x/oauth2 v0.36.0
)

require golang.org/x/sync v0.22.0 // indirect

replace github.com/tokenkit/bearer => ../
