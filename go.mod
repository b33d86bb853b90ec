module github.com/tokenkit/bearer

go 1.25.0

require (
	github.com/jarcoal/httpmock v1.4.2
	go.uber.org/goleak v1.3.0
	golang.org/x/sync v0.22.0
)
